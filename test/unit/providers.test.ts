// `launch --provider gcloud|aws` through the real `gcloud` and `aws` CLIs, pointed at a local
// recording endpoint (test/helpers/cloud-endpoint.ts) that answers enough of the Compute Engine
// and EC2 APIs: the assertions are on the API requests the CLIs send — instance count, spot
// model, labels, the startup script's mount, directory and command, sizes within the providers'
// limits, and that --delete removes exactly the job's instances. Slurm's sbatch/scancel are
// stand-ins here (test/cluster/slurm.test.ts runs a real cluster).
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { delimiter, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { PieceworkError, UsageError } from '../../src/core/errors.js';
import { launch, type LaunchOptions } from '../../src/remote/launch.js';
import { displayName, jobTag, type CreateOptions } from '../../src/remote/providers/common.js';
import * as slurm from '../../src/remote/providers/slurm.js';
import { runCleanups } from '../helpers/cleanup.js';
import { runPiecework } from '../helpers/cli.js';
import { lineJob } from '../helpers/job.js';
import { ec2UserDataLimit, gceMetadataValueLimit, startCloudEndpoint, type CloudEndpoint } from '../helpers/cloud-endpoint.js';
import { makeTempDir } from '../helpers/tmp.js';

const hasCli = (name: string) => spawnSync(name, ['--version'], { stdio: 'ignore' }).status === 0;
const noGcloud = hasCli('gcloud') ? false : 'gcloud is not installed (the Google Cloud CLI: apt-get install google-cloud-cli from packages.cloud.google.com)';
const noAws = hasCli('aws') ? false : 'aws is not installed (apt-get install awscli)';

const dir = makeTempDir('providers');
const share = join(dir, 'srv', 'share');
const localTool = join(dir, 'piecework.mjs');
const knownHosts = join(dir, 'known_hosts');
const keyFile = join(dir, 'mount_key');
const savedEnv = { ...process.env };
let endpoint: CloudEndpoint;

/** A job folder with a job.json of the given id, as split writes it. */
function makeJob(name: string, id: string): string {
  const job = join(share, 'jobs', name);
  mkdirSync(join(job, 'logs'), { recursive: true });
  writeFileSync(join(job, 'job.json'), JSON.stringify({ protocol: 2, tool: 'piecework', id, created: new Date().toISOString(), split: { mode: 'lines', size: 1, inputs: [], grouping: 'none' }, groups: [{ name: '', count: 1, width: 6 }], ext: '', chunkCount: 1, complete: true, staleSeconds: 60, retries: 2 }));
  writeFileSync(join(job, 'score.sh'), '#!/bin/sh\ncat\n');
  return job;
}

before(async () => {
  mkdirSync(share, { recursive: true });
  writeFileSync(localTool, '// bundled CLI stand-in\n');
  writeFileSync(knownHosts, '[head.example.org]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n');
  // An RSA-4096-sized key: the largest the user data has to carry.
  writeFileSync(keyFile, `-----BEGIN OPENSSH PRIVATE KEY-----\n${Buffer.from(Array.from({ length: 2500 }, (_, i) => (i * 7919) % 251)).toString('base64').replace(/(.{70})/g, '$1\n')}\n-----END OPENSSH PRIVATE KEY-----\n`);
  endpoint = await startCloudEndpoint();
});
after(async () => {
  process.env = savedEnv;
  await endpoint.close();
  await runCleanups();
});
beforeEach(() => {
  endpoint.clear();
  endpoint.gce.clear();
  endpoint.ec2.clear();
  endpoint.spotCapacity = Number.POSITIVE_INFINITY;
});
afterEach(() => {
  process.env = { ...savedEnv };
});

/** What a user types, as launch options: the job under the head's export, mounted at /mnt/share on the instances. */
function options(job: string, extra: Partial<LaunchOptions>): LaunchOptions {
  return {
    job,
    command: ['./score.sh', '--model', "it's a b"],
    localTool,
    knownHostsFiles: [knownHosts],
    launchDir: job,
    mount: { source: `me@head.example.org:${share}`, at: '/mnt/share', port: 2222, identity: keyFile },
    ...extra,
  };
}

/** The PW_* values a rendered script sets (as sh reads them), and those of the bootstrap inside it. */
function scriptValues(script: string): Record<string, string> {
  // The values block ends where the script's own `set -eu` starts (the last one: an embedded script has its own).
  const block = script.slice(0, script.lastIndexOf('\nset -eu\n'));
  const out = spawnSync('sh', ['-c', `set -a\n${block}\nenv -0`], { encoding: 'utf8', env: {} }).stdout;
  const values: Record<string, string> = {};
  for (const entry of out.split('\0')) {
    const at = entry.indexOf('=');
    if (entry.startsWith('PW_')) values[entry.slice(0, at)] = entry.slice(at + 1);
  }
  if (values['PW_BOOTSTRAP']) Object.assign(values, scriptValues(values['PW_BOOTSTRAP']), { PW_BOOTSTRAP: values['PW_BOOTSTRAP'] });
  return values;
}

/** Shell-quoted words (PW_COMMAND, PW_ENV…) back into argv, as the bootstrap reads them. */
function words(quoted: string | undefined): string[] {
  return spawnSync('sh', ['-c', 'eval "set -- $1"; printf "%s\\0" "$@"', 'sh', quoted ?? ''], { encoding: 'utf8' }).stdout.split('\0').slice(0, -1);
}

const startupScript = (body: unknown): string =>
  ((body as { metadata: { items: { key: string; value: string }[] } }).metadata.items.find((i) => i.key === 'startup-script')?.value ?? '');

test('job tags come from the job id, not its path; display names stay readable and short', () => {
  assert.equal(jobTag('0123456789abcdef'), 'pw-0123456789abcdef');
  assert.equal(displayName('0123456789abcdef', '/x/My Job_2024!!'), 'pw-my-job-2024-0123456789abcdef');
  assert.ok(displayName('0123456789abcdef', `/x/${'y'.repeat(200)}`).length <= 40);
  assert.throws(() => jobTag('!!'), /no letters or digits/);
});

void describe('gcloud, the real CLI against a recording Compute endpoint', { skip: noGcloud }, () => {
  beforeEach(() => Object.assign(process.env, endpoint.gcloudEnv()));

  test('create: N spot instances labelled with the job id; the startup script mounts, enters the folder, runs the command', async () => {
    const job = makeJob('score', 'a1b2c3d4e5f60718');
    const report = await launch(options(job, { provider: 'gcloud', count: 3, zone: 'europe-west1-b', lanes: 4, env: [['OMP_NUM_THREADS', '1']], workOptions: ['--warm'] }));
    assert.equal(report.kind, 'provider');
    const inserts = endpoint.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/instances'));
    assert.equal(inserts.length, 3, 'one insert per instance');
    for (const insert of inserts) {
      assert.match(insert.path, /\/projects\/pw-test-project\/zones\/europe-west1-b\/instances$/);
      const body = insert.body as { name: string; labels: Record<string, string>; scheduling: Record<string, unknown> };
      assert.match(body.name, /^pw-score-a1b2c3d4e5f60718-[0-9a-z]{1,6}-00[123]$/);
      assert.deepEqual(body.labels, { 'piecework-job': 'pw-a1b2c3d4e5f60718' });
      assert.equal(body.scheduling['provisioningModel'], 'SPOT');
      assert.equal(body.scheduling['instanceTerminationAction'], 'DELETE');
      const script = startupScript(body);
      assert.ok(Buffer.byteLength(script) < gceMetadataValueLimit / 4, `startup script ${Buffer.byteLength(script)} bytes`);
      assert.match(script, /^#!\/bin\/sh\n/);
      const values = scriptValues(script);
      assert.equal(values['PW_MOUNT_SOURCE'], `me@head.example.org:${share}`);
      assert.equal(values['PW_MOUNT_AT'], '/mnt/share');
      assert.equal(values['PW_JOB'], '/mnt/share/jobs/score');
      // The command runs from the folder launch ran in, as the instances see it.
      assert.equal(values['PW_CWD'], '/mnt/share/jobs/score');
      assert.deepEqual(words(values['PW_COMMAND']), ['./score.sh', '--model', "it's a b"]);
      assert.deepEqual(words(values['PW_ENV']), ['OMP_NUM_THREADS=1']);
      assert.deepEqual(words(values['PW_WORK_OPTIONS']), ['--warm']);
      assert.equal(values['PW_LANES'], '4');
      assert.equal(values['PW_WHEN_DONE'], 'delete-gce');
    }
    assert.equal(endpoint.gce.size, 3);
  });

  test('create: the expert flags reach the API (project, account, scopes, disk, network, no address, GPU, labels, max run duration, pass-through)', async () => {
    const job = makeJob('score', 'a1b2c3d4e5f60718');
    await launch(options(job, {
      provider: 'gcloud', count: 1, zone: 'us-east1-c', project: 'my-proj', machineType: 'g2-standard-4', image: 'my-image-v3',
      gcloud: { serviceAccount: 'pw@my-proj.iam.gserviceaccount.com', scopes: ['cloud-platform'], bootDiskSize: '50GB', bootDiskType: 'pd-ssd', network: 'lab', subnet: 'lab-eu', noAddress: true, accelerators: ['type=nvidia-l4,count=1'], labels: [['team', 'nlp']], maxRunDuration: '8h' },
      providerArgs: ['--min-cpu-platform=AMD Milan'],
    }));
    const insert = endpoint.requests.find((r) => r.method === 'POST' && r.path.endsWith('/instances'));
    assert.match(insert?.path ?? '', /\/projects\/my-proj\/zones\/us-east1-c\/instances$/);
    const body = insert?.body as Record<string, any>;
    assert.deepEqual(body['labels'], { 'piecework-job': 'pw-a1b2c3d4e5f60718', team: 'nlp' });
    assert.equal(body['serviceAccounts'][0].email, 'pw@my-proj.iam.gserviceaccount.com');
    assert.deepEqual(body['serviceAccounts'][0].scopes, ['https://www.googleapis.com/auth/cloud-platform']);
    assert.equal(body['disks'][0].initializeParams.diskSizeGb, '50');
    assert.match(body['disks'][0].initializeParams.diskType, /\/diskTypes\/pd-ssd$/);
    assert.match(body['disks'][0].initializeParams.sourceImage, /\/global\/images\/my-image-v3$/);
    assert.match(body['networkInterfaces'][0].network, /\/networks\/lab$/);
    assert.match(body['networkInterfaces'][0].subnetwork, /\/subnetworks\/lab-eu$/);
    assert.equal(body['networkInterfaces'][0].accessConfigs, undefined, 'no external IP');
    assert.match(body['guestAccelerators'][0].acceleratorType, /\/acceleratorTypes\/nvidia-l4$/);
    assert.equal(body['guestAccelerators'][0].acceleratorCount, 1);
    assert.equal(body['scheduling'].maxRunDuration.seconds, String(8 * 3600));
    assert.equal(body['scheduling'].onHostMaintenance, 'TERMINATE');
    assert.equal(body['minCpuPlatform'], 'AMD Milan');
    assert.match(body['machineType'], /\/machineTypes\/g2-standard-4$/);
  });

  test('--delete removes exactly the job\'s instances, whatever --mount/--at either was given, and not those of a new job at the same path', async () => {
    const job = makeJob('score', '1111111111111111');
    await launch(options(job, { provider: 'gcloud', count: 2, zone: 'europe-west1-b' }));
    // The job split again at the same path: a new id, its own instances.
    makeJob('score', '2222222222222222');
    await launch(options(job, { provider: 'gcloud', count: 1, zone: 'us-east1-c' }));
    const newer = [...endpoint.gce.values()].filter((i) => (i.body['labels'] as Record<string, string>)['piecework-job'] === 'pw-2222222222222222');
    assert.equal(newer.length, 1);
    // Back to the first job (its id given, as when its folder is not visible here), deleted as the help shows it: no --mount.
    endpoint.clear();
    const removed = await launch({ job, command: [], provider: 'gcloud', delete: true, jobId: '1111111111111111' });
    assert.equal(removed.kind === 'provider' ? removed.result?.ids.length : -1, 2);
    const deletes = endpoint.requests.filter((r) => r.method === 'DELETE');
    assert.equal(deletes.length, 2);
    assert.ok(deletes.every((r) => /\/instances\/pw-score-1111111111111111-/.test(r.path)));
    assert.deepEqual([...endpoint.gce.values()].map((i) => i.name), newer.map((i) => i.name), 'the other job\'s instance is left alone');
    // Nothing of the job left: nothing to delete, no delete call.
    endpoint.clear();
    await launch({ job, command: [], provider: 'gcloud', delete: true, jobId: '1111111111111111' });
    assert.equal(endpoint.requests.filter((r) => r.method === 'DELETE').length, 0);
  });
});

void describe('aws, the real CLI against a recording EC2 endpoint', { skip: noAws }, () => {
  beforeEach(() => Object.assign(process.env, endpoint.awsEnv()));

  test('create: takes what spot capacity there is, IMDSv2 only, gzip user data well under 16 KB that mounts, enters the folder, runs the command', async () => {
    const job = makeJob('score', 'a1b2c3d4e5f60718');
    endpoint.spotCapacity = 4;
    const report = await launch(options(job, { provider: 'aws', count: 10, region: 'eu-west-1', image: 'ami-0123456789abcdef0', env: [['MODEL', 'big one']] }));
    assert.equal(report.kind === 'provider' ? report.result?.commands[0]?.stdout.trim().split(/\s+/).length : 0, 4, 'the ids of the 4 it got');
    const [run, ...others] = endpoint.requests.filter((r) => (r.body as Record<string, string>)['Action'] === 'RunInstances');
    assert.equal(others.length, 0);
    const form = run?.body as Record<string, string>;
    assert.equal(form['MinCount'], '1');
    assert.equal(form['MaxCount'], '10');
    assert.equal(endpoint.ec2.size, 4);
    assert.equal(form['InstanceMarketOptions.MarketType'], 'spot');
    assert.equal(form['InstanceMarketOptions.SpotOptions.SpotInstanceType'], 'one-time');
    assert.equal(form['InstanceInitiatedShutdownBehavior'], 'terminate');
    assert.equal(form['MetadataOptions.HttpTokens'], 'required');
    assert.equal(form['TagSpecification.1.Tag.1.Key'], 'piecework-job');
    assert.equal(form['TagSpecification.1.Tag.1.Value'], 'pw-a1b2c3d4e5f60718');
    const raw = Buffer.from(form['UserData'] ?? '', 'base64');
    assert.deepEqual([...raw.subarray(0, 2)], [0x1f, 0x8b], 'gzip, which cloud-init inflates');
    assert.ok(raw.length <= ec2UserDataLimit * 0.6, `user data ${raw.length} bytes, with room under EC2's ${ec2UserDataLimit}`);
    const script = gunzipSync(raw).toString('utf8');
    assert.match(script, /cloud-init runs it as root/);
    const values = scriptValues(script);
    assert.equal(values['PW_MOUNT_AT'], '/mnt/share');
    assert.equal(values['PW_CWD'], '/mnt/share/jobs/score');
    assert.deepEqual(words(values['PW_COMMAND']), ['./score.sh', '--model', "it's a b"]);
    assert.deepEqual(words(values['PW_ENV']), ['MODEL=big one']);
    assert.equal(values['PW_MOUNT_KEY'], readFileSync(keyFile, 'utf8'));
    assert.equal(values['PW_WHEN_DONE'], 'poweroff');
  });

  test('create: the expert flags reach the API (subnet, security groups, instance profile, key, max price, tags, profile)', async () => {
    const job = makeJob('score', 'a1b2c3d4e5f60718');
    const config = join(dir, 'aws-config');
    // A named profile: credentials from the environment no longer count, so it brings its own.
    writeFileSync(config, '[profile lab]\nregion = eu-central-1\naws_access_key_id = AKIDLAB\naws_secret_access_key = lab-secret\n');
    process.env['AWS_CONFIG_FILE'] = config;
    await launch(options(job, {
      provider: 'aws', count: 2, image: 'ami-1', machineType: 'c7g.large',
      aws: { profile: 'lab', subnetId: 'subnet-1', securityGroupIds: ['sg-1', 'sg-2'], instanceProfile: 'pw-workers', keyName: 'me', maxPrice: '0.05', tags: [['team', 'nlp']] },
      providerArgs: ['--ebs-optimized'],
    }));
    const form = endpoint.requests.at(-1)?.body as Record<string, string>;
    assert.equal(form['Action'], 'RunInstances');
    assert.equal(form['InstanceType'], 'c7g.large');
    assert.equal(form['SubnetId'], 'subnet-1');
    assert.deepEqual([form['SecurityGroupId.1'], form['SecurityGroupId.2']], ['sg-1', 'sg-2']);
    assert.equal(form['IamInstanceProfile.Name'], 'pw-workers');
    assert.equal(form['KeyName'], 'me');
    assert.equal(form['InstanceMarketOptions.SpotOptions.MaxPrice'], '0.05');
    assert.equal(form['EbsOptimized'], 'true');
    assert.equal(form['TagSpecification.1.Tag.3.Key'], 'team');
    assert.equal(form['TagSpecification.1.Tag.3.Value'], 'nlp');
  });

  test('--delete terminates exactly the job\'s instances, whatever --mount/--at either was given', async () => {
    const job = makeJob('score', '3333333333333333');
    await launch(options(job, { provider: 'aws', count: 3, region: 'eu-west-1', image: 'ami-1' }));
    makeJob('score', '4444444444444444');
    await launch(options(job, { provider: 'aws', count: 2, region: 'eu-west-1', image: 'ami-1' }));
    // The folder now holds the second job: the first is named by its id.
    await launch({ job, command: [], provider: 'aws', region: 'eu-west-1', delete: true, jobId: '3333333333333333' });
    const states = [...endpoint.ec2.values()].map((i) => `${i.tags['piecework-job']} ${i.state}`).sort();
    assert.deepEqual(states, [
      'pw-3333333333333333 shutting-down', 'pw-3333333333333333 shutting-down', 'pw-3333333333333333 shutting-down',
      'pw-4444444444444444 pending', 'pw-4444444444444444 pending',
    ]);
    // The second job from its job.json, no flags but the region.
    await launch({ job, command: [], provider: 'aws', region: 'eu-west-1', delete: true });
    assert.ok([...endpoint.ec2.values()].every((i) => i.state === 'shutting-down'));
  });
});

void describe('working directory, job id and relative commands', () => {
  test('a relative command that cannot resolve is refused before anything runs', async () => {
    const job = makeJob('score', 'a1b2c3d4e5f60718');
    Object.assign(process.env, endpoint.gcloudEnv());
    const base = { provider: 'gcloud' as const, count: 1, zone: 'europe-west1-b' };
    // Launched from outside the share: the hosts have no such folder.
    await assert.rejects(launch(options(job, { ...base, launchDir: dir })), (e: unknown) => e instanceof UsageError && /\.\/score\.sh is a relative path, but launch runs from .* outside the shared folder/.test(e.message) && /--cwd DIR/.test(e.hint ?? ''));
    // Inside the share, but not there.
    await assert.rejects(launch(options(job, { ...base, launchDir: share })), (e: unknown) => e instanceof UsageError && /\.\/score\.sh does not exist in .*srv\/share/.test(e.message));
    // --cwd as the hosts see it: checked through the head's export.
    await assert.rejects(launch(options(job, { ...base, launchDir: dir, cwd: '/mnt/share/jobs' })), /\.\/score\.sh does not exist in .*srv\/share\/jobs \(the working directory, \/mnt\/share\/jobs on the hosts\)/);
    await assert.rejects(launch(options(job, { ...base, cwd: 'jobs/score' })), /--cwd jobs\/score: give the working directory's absolute path/);
    assert.equal(endpoint.requests.length, 0, 'nothing reached the cloud');
    const dry = await launch(options(job, { ...base, launchDir: dir, cwd: '/mnt/share/jobs/score', dryRun: true }));
    assert.match(dry.kind === 'provider' ? (dry.plan.files[0]?.content ?? '') : '', /PW_CWD=\/mnt\/share\/jobs\/score/);
    // A command looked up in PATH runs anywhere; from outside the share, in the job folder.
    const bare = await launch(options(job, { ...base, launchDir: dir, command: ['python3', '-c', 'pass'], dryRun: true }));
    assert.match(bare.kind === 'provider' ? (bare.plan.files[0]?.content ?? '') : '', /PW_CWD=\/mnt\/share\/jobs\/score/);
  });

  test('no job.json here: launch and --delete say the id is needed, and --job-id stands in for it', async () => {
    const missing = join(dir, 'elsewhere', 'score');
    for (const extra of [{ delete: true }, { count: 1, zone: 'z', dryRun: true }]) {
      await assert.rejects(
        launch({ job: missing, command: ['true'], provider: 'gcloud', ...extra }),
        (e: unknown) => e instanceof PieceworkError && /cannot read the job's id from .*elsewhere\/score\/job\.json on this machine/.test(e.message) && /--job-id ID/.test(e.hint ?? ''),
      );
    }
    const planned = await launch({ job: missing, command: [], provider: 'aws', delete: true, jobId: 'ABCDEF0123456789', dryRun: true });
    assert.match(planned.kind === 'provider' ? planned.plan.commands[0]?.argv.join(' ') ?? '' : '', /Name=tag:piecework-job,Values=pw-abcdef0123456789 /);
    await assert.rejects(launch({ job: missing, command: [], provider: 'aws', delete: true, jobId: 'a/b' }), /--job-id a\/b: expected the "id" of job.json/);
  });
});

void describe('slurm (stand-in sbatch/scancel)', () => {
  const bin = join(dir, 'bin');
  const record = join(dir, 'argv.ndjson');
  before(() => {
    mkdirSync(bin, { recursive: true });
    for (const name of ['sbatch', 'scancel']) {
      writeFileSync(join(bin, name), `#!${process.execPath}
const fs = require('node:fs');
const argv = process.argv.slice(2);
const script = argv.find((a) => a.endsWith('.sh'));
fs.appendFileSync(${JSON.stringify(record)}, JSON.stringify({ argv: [${JSON.stringify(name)}, ...argv], script: script ? fs.readFileSync(script, 'utf8') : '' }) + '\\n');
if (${JSON.stringify(name)} === 'sbatch') process.stdout.write('4242\\n');
`);
      chmodSync(join(bin, name), 0o755);
    }
  });
  beforeEach(() => {
    rmSync(record, { force: true });
    process.env['PATH'] = `${bin}${delimiter}${savedEnv['PATH'] ?? ''}`;
  });
  const recorded = () => (existsSync(record) ? readFileSync(record, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { argv: string[]; script: string }) : []);

  const create = (extra: Partial<CreateOptions> = {}): CreateOptions => ({
    job: '/home/me/jobs/score', jobId: 'a1b2c3d4e5f60718', command: ['./score.sh'], count: 50, tool: '/home/me/.piecework/pw.mjs', scriptDir: join(dir, `scripts-${Math.random().toString(36).slice(2)}`), ...extra,
  });

  test('one sbatch --array job named after the job id, with the expert flags, a throttle and the working directory', async () => {
    const options = create({ lanes: 4, partition: 'short', cwd: '/home/me/tools', env: [['A', '1']], workOptions: ['--warm', '--max-chunks-per-process', '20'], slurm: { time: '4:00:00', mem: '8G', account: 'lab', qos: 'low', gres: 'gpu:1', constraint: 'avx2', throttle: 5 }, providerArgs: ['--exclusive'] });
    await slurm.apply(await slurm.plan({ action: 'create', ...options }));
    const [call] = recorded();
    assert.deepEqual(call?.argv, [
      'sbatch', '--array=1-50%5', '--job-name=pw-a1b2c3d4e5f60718', '--output=/home/me/jobs/score/logs/slurm-%A_%a.log', '--cpus-per-task=4', '--partition=short',
      '--time=4:00:00', '--mem=8G', '--account=lab', '--qos=low', '--gres=gpu:1', '--constraint=avx2', '--exclusive', '--parsable', join(options.scriptDir as string, 'slurm-array.sh'),
    ]);
    assert.match(call?.script ?? '', /^#!\/bin\/sh\n#SBATCH --requeue\n/);
    const values = scriptValues(call?.script ?? '');
    assert.equal(values['PW_CWD'], '/home/me/tools');
    assert.deepEqual(words(values['PW_WORK_OPTIONS']), ['--warm', '--max-chunks-per-process', '20']);
    assert.deepEqual(words(values['PW_ENV']), ['A=1']);
    // Lanes come from SLURM_CPUS_PER_TASK in the task, not from the rendered bootstrap.
    assert.equal(values['PW_LANES'], undefined);
    rmSync(record);
    await slurm.apply(await slurm.plan({ action: 'delete', job: '/elsewhere/score', jobId: 'a1b2c3d4e5f60718' }));
    assert.deepEqual(recorded()[0]?.argv, ['scancel', '--name=pw-a1b2c3d4e5f60718', `--user=${userInfo().username}`]);
    await assert.rejects(slurm.plan({ action: 'create', ...create({ mount: { source: 'h:/x', at: '/y', strict: 'yes' } }) }), /--mount does not apply/);
  });
});

void describe('launch --wait, through the CLI', { skip: noGcloud }, () => {
  test('once the job is complete, --wait deletes the instances it made (a GCE instance that powered off would be kept, disk billed)', async () => {
    const root = makeTempDir('wait-share');
    const job = await lineJob(root, 'done', 3);
    assert.equal((await runPiecework(['work', job, '-j', '1', '--', 'cat'])).code, 0);
    // Another job's instance, which must stay.
    endpoint.gce.set('pw-test-project/europe-west1-b/other', { project: 'pw-test-project', zone: 'europe-west1-b', name: 'other', body: { labels: { 'piecework-job': 'pw-0000000000000000' } } });
    const run = await runPiecework(['launch', job, '--provider', 'gcloud', '--count', '2', '--zone', 'europe-west1-b', '--wait', '--', 'cat'], { env: { ...endpoint.gcloudEnv() }, cwd: root });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(endpoint.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/instances')).length, 2);
    assert.match(run.stderr, /launch: job complete: 3 chunks done/);
    assert.match(run.stderr, /launch: deleted 2 instances of the job \(pw-[0-9a-f]{16}\)/);
    assert.equal(endpoint.requests.filter((r) => r.method === 'DELETE').length, 2);
    assert.deepEqual([...endpoint.gce.keys()], ['pw-test-project/europe-west1-b/other']);
  });
});

void describe('--via sftp: instances and Slurm tasks reach the job on the head, nothing mounted (dry runs: what would be sent)', () => {
  const address = 'sftp://me@head.example.org:2222/srv/jobs/score';
  const sftpOptions = (job: string, extra: Partial<LaunchOptions>): LaunchOptions => ({
    job, command: ['python3', '/opt/score.py', "it's"], localTool, knownHostsFiles: [knownHosts], launchDir: dir, jobId: 'a1b2c3d4e5f60718',
    sftp: { address }, cwd: '/opt/work', dryRun: true, ...extra,
  });
  const keysDir = join(dir, `job-keys-${process.pid}`);
  beforeEach(() => {
    process.env['PIECEWORK_JOB_KEYS_DIR'] = keysDir;
  });
  const planned = async (options: LaunchOptions) => {
    const report = await launch(options);
    if (report.kind !== 'provider') throw new Error(`a provider report, not ${report.kind}`);
    return report;
  };
  /** What no --via sftp script may contain: an sshfs install or mount. */
  const assertNoMount = (values: Record<string, string>): void => {
    assert.equal(values['PW_MOUNT_SOURCE'], undefined, 'nothing to mount');
    assert.equal(values['PW_MOUNT_AT'], undefined);
    assert.notEqual(values['PW_NEEDS_SSHFS'], '1', 'no sshfs to install');
  };
  /** The SFTP worker's wiring: the job's address, the key file, the head's known_hosts, the CLI fetched from beside the job. */
  const assertSftpWorker = (values: Record<string, string>, identity: string | undefined): void => {
    assert.equal(values['PW_VIA'], 'sftp');
    assert.equal(values['PW_JOB'], address);
    assert.equal(values['PW_SFTP_IDENTITY'], identity);
    assert.equal(values['PW_SFTP_KNOWN_HOSTS_LINES'], readFileSync(knownHosts, 'utf8').trim());
    assert.equal(values['PW_TOOL_SFTP_LOGIN'], 'me@head.example.org');
    assert.equal(values['PW_TOOL_SFTP_PORT'], '2222');
    assert.match(values['PW_TOOL_SFTP_PATH'] ?? '', /^\/srv\/jobs\/\.piecework\/[^/]+\/piecework\.mjs$/);
    assert.equal(values['PW_CWD'], '/opt/work');
    assert.deepEqual(words(values['PW_COMMAND']), ['python3', '/opt/score.py', "it's"]);
  };

  test('gcloud and aws: the job key by default, run as `work sftp://…` with its key and the head\'s known_hosts; sizes far within the limits', async () => {
    const gce = await planned(sftpOptions(address, { provider: 'gcloud', count: 2, zone: 'europe-west1-b' }));
    const ec2 = await planned(sftpOptions(address, { provider: 'aws', count: 2, region: 'eu-west-1', image: 'ami-1' }));
    for (const [report, limit] of [[gce, gceMetadataValueLimit], [ec2, ec2UserDataLimit]] as const) {
      const [file] = report.plan.files;
      const values = scriptValues(file?.content ?? '');
      assertNoMount(values);
      assertSftpWorker(values, '/var/lib/piecework/mount_key');
      assert.equal(values['PW_NEEDS_SFTP'], '1', 'the OpenSSH client is installed if missing');
      assert.equal(values['PW_TOOL'], '/var/lib/piecework/piecework.mjs', 'the CLI is fetched into the state folder');
      // The job key (a dry run makes a throwaway one): SFTP only on the head, sent to the instances.
      assert.match(values['PW_MOUNT_KEY'] ?? '', /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
      assert.equal(report.jobKey?.comment, 'piecework-job-a1b2c3d4e5f60718');
      assert.match(report.jobKey?.line ?? '', /^restrict,command="internal-sftp" ssh-ed25519 /);
      assert.equal(report.jobKey?.head, 'me@head.example.org:2222');
      assert.equal(file?.mode, 0o600, 'the file carrying a key is private');
      const bytes = file?.bytes ?? Infinity;
      assert.ok(bytes < (file?.encoding === 'gzip' ? 12 * 1024 : 256 * 1024), `${bytes} bytes`);
      assert.ok(bytes < limit / 2, `${bytes} bytes, with room under ${limit}`);
    }
    assert.equal(ec2.plan.files[0]?.encoding, 'gzip');
    assert.equal(existsSync(keysDir), false, 'a dry run keeps no key');
  });

  test('gcloud and aws: --head-identity is a key file here, sent in place of a job key (an RSA-4096-sized one fits too)', async () => {
    for (const extra of [{ provider: 'gcloud' as const, count: 1, zone: 'z' }, { provider: 'aws' as const, count: 1, region: 'r', image: 'ami-1' }]) {
      const report = await planned(sftpOptions(address, { ...extra, sftp: { address, identity: keyFile } }));
      const values = scriptValues(report.plan.files[0]?.content ?? '');
      assert.equal(values['PW_MOUNT_KEY'], readFileSync(keyFile, 'utf8'));
      assertSftpWorker(values, '/var/lib/piecework/mount_key');
      assert.equal(report.jobKey, undefined, 'no job key');
      assert.ok((report.plan.files[0]?.bytes ?? Infinity) < (extra.provider === 'aws' ? 12 * 1024 : 256 * 1024));
    }
  });

  test('slurm: the tasks run `work sftp://…` with --head-identity as a path on the nodes, output in the state folder', async () => {
    const report = await planned(sftpOptions(address, { provider: 'slurm', count: 4, sftp: { address, identity: '/home/me/.ssh/id_lab' } }));
    const [file] = report.plan.files;
    const values = scriptValues(file?.content ?? '');
    assertNoMount(values);
    assertSftpWorker(values, '/home/me/.ssh/id_lab');
    assert.match(values['PW_TOOL'] ?? '', /^\.cache\/piecework\/[^/]+\/piecework\.mjs$/, "fetched into the nodes' home");
    assert.equal(values['PW_MOUNT_KEY'], undefined, 'no key in the script');
    const argv = report.plan.commands[0]?.argv ?? [];
    const output = argv.find((a) => a.startsWith('--output='));
    assert.match(output ?? '', /\/piecework\/logs\/pw-a1b2c3d4e5f60718-slurm-%A_%a\.log$/);
    assert.deepEqual(report.plan.folders, [output?.slice('--output='.length).replace(/\/[^/]+$/, '')]);
    // Without --head-identity: the nodes' own keys.
    const own = scriptValues((await planned(sftpOptions(address, { provider: 'slurm', count: 1 }))).plan.files[0]?.content ?? '');
    assert.equal(own['PW_SFTP_IDENTITY'], undefined);
  });

  test('bad combinations are usage errors that say what to do', async () => {
    const gce = { provider: 'gcloud' as const, count: 1, zone: 'z' };
    await assert.rejects(launch(sftpOptions(address, { ...gce, sftp: { address, identity: join(dir, 'no-such-key') } })), (e: unknown) => e instanceof UsageError && /--head-identity .*no-such-key: cannot read it here \(ENOENT\)/.test(e.message) && /a key file on this machine, sent to the instances/.test(e.hint ?? ''));
    await assert.rejects(launch(sftpOptions(address, { ...gce, jobKey: true, sftp: { address, identity: keyFile } })), (e: unknown) => e instanceof UsageError && /--job-key and --head-identity do not go together/.test(e.message));
    await assert.rejects(launch(sftpOptions(address, { provider: 'slurm', count: 1, jobKey: true })), (e: unknown) => e instanceof UsageError && /--job-key does not apply to --provider slurm/.test(e.message) && /--head-identity PATH \(a key file on the nodes\)/.test(e.hint ?? ''));
    await assert.rejects(launch(sftpOptions(address, { ...gce, cwd: undefined, command: ['./score.sh'] })), (e: unknown) => e instanceof UsageError && /\.\/score\.sh is a relative path, but with --via sftp the hosts have no shared folder/.test(e.message));
    await assert.rejects(launch(sftpOptions(address, { ...gce, mount: { source: 'me@head:/srv', at: '/mnt' } })), /--via sftp and --mount do not go together/);
    await assert.rejects(launch(sftpOptions(address, { ...gce, knownHostsFiles: [join(dir, 'empty-known-hosts')] })), (e: unknown) => e instanceof UsageError && /the head head\.example\.org:2222 is not in known_hosts here/.test(e.message));
  });
});
