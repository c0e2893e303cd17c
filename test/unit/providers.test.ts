import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { delimiter, join } from 'node:path';
import { PieceworkError, UsageError } from '../../src/core/errors.js';
import { launch } from '../../src/remote/launch.js';
import * as aws from '../../src/remote/providers/aws.js';
import { jobTag, type CreateOptions } from '../../src/remote/providers/common.js';
import * as gcloud from '../../src/remote/providers/gcloud.js';
import * as slurm from '../../src/remote/providers/slurm.js';

const dir = join(tmpdir(), `pw${process.pid}-providers-test`);
const bin = join(dir, 'bin');
const record = join(dir, 'argv.ndjson');
const job = '/mnt/share/jobs/score';
const tag = jobTag(job);
const originalPath = process.env['PATH'];

interface Recorded {
  argv: string[];
  /** Scripts the command was pointed at, read while it ran (apply removes them afterwards). */
  scripts: Record<string, string>;
}

/**
 * Stand-ins for gcloud, aws, sbatch and scancel: each appends its argv (and the content of any
 * script file it names) to argv.ndjson and prints what the real one would for our lookups.
 */
function installStandIns(): void {
  mkdirSync(bin, { recursive: true });
  const source = (name: string) => `#!${process.execPath}
const fs = require('node:fs');
const argv = process.argv.slice(2);
const scripts = {};
for (const arg of argv) {
  const m = /^(?:startup-script=|file:\\/\\/)(.*)$/.exec(arg) || (arg.endsWith('.sh') ? [arg, arg] : null);
  if (m) scripts[m[1]] = fs.readFileSync(m[1], 'utf8');
}
fs.appendFileSync(${JSON.stringify(record)}, JSON.stringify({ argv: [${JSON.stringify(name)}, ...argv], scripts }) + '\\n');
const out = process.env.STAND_IN_OUTPUT || '';
if (argv.includes('list') || argv.includes('describe-instances')) process.stdout.write(out);
else if (${JSON.stringify(name)} === 'sbatch') process.stdout.write('4242\\n');
process.exit(Number(process.env.STAND_IN_EXIT || 0));
`;
  for (const name of ['gcloud', 'aws', 'sbatch', 'scancel']) {
    writeFileSync(join(bin, name), source(name));
    chmodSync(join(bin, name), 0o755);
  }
}

function recorded(): Recorded[] {
  if (!existsSync(record)) return [];
  return readFileSync(record, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Recorded);
}

before(() => {
  installStandIns();
  process.env['PATH'] = `${bin}${delimiter}${originalPath ?? ''}`;
});
beforeEach(() => {
  rmSync(record, { force: true });
  delete process.env['STAND_IN_OUTPUT'];
  delete process.env['STAND_IN_EXIT'];
});
after(() => {
  process.env['PATH'] = originalPath;
  rmSync(dir, { recursive: true, force: true });
});

const create = (extra: Partial<CreateOptions> = {}): CreateOptions => ({
  job,
  command: ['python3', 'score.py', '--model', 'a b'],
  count: 3,
  tool: '/mnt/share/.piecework/0.1.0/piecework.mjs',
  scriptDir: join(dir, `scripts-${Math.random().toString(36).slice(2)}`),
  ...extra,
});

test('job tags are label-safe, short, and differ for jobs of the same name', () => {
  assert.match(tag, /^pw-score-[0-9a-f]{6}$/);
  assert.notEqual(jobTag('/other/jobs/score'), tag);
  assert.match(jobTag('/x/My Job_2024!!'), /^pw-my-job-2024-[0-9a-f]{6}$/);
  assert.ok(jobTag(`/x/${'y'.repeat(200)}`).length <= 40);
});

test('gcloud: spot instances named after the job, with the startup script and a job label', async () => {
  const options = create({ zone: 'europe-west1-b', lanes: 4 });
  const plan = await gcloud.plan({ action: 'create', ...options });
  const result = await gcloud.apply(plan);
  const [call] = recorded();
  assert.ok(call);
  const scriptPath = join(options.scriptDir as string, 'gcloud-startup.sh');
  const names = call.argv.slice(4, 7);
  for (const [i, name] of names.entries()) assert.match(name, new RegExp(`^${tag}-[0-9a-z]{1,6}-00${i + 1}$`));
  assert.deepEqual(call.argv, [
    'gcloud', 'compute', 'instances', 'create', ...names,
    '--zone=europe-west1-b',
    '--machine-type=e2-standard-2',
    '--image-project=debian-cloud', '--image-family=debian-13',
    '--provisioning-model=SPOT', '--instance-termination-action=DELETE',
    '--metadata-from-file', `startup-script=${scriptPath}`,
    `--labels=piecework-job=${tag}`,
    '--format=value(name)',
  ]);
  // The script existed while gcloud ran, and is gone afterwards.
  const script = call.scripts[scriptPath] ?? '';
  assert.match(script, /^#!\/bin\/sh\n/);
  assert.match(script, /PW_BOOTSTRAP='#!\/bin\/sh/);
  assert.match(script, /PW_JOB=\/mnt\/share\/jobs\/score/);
  assert.match(script, /PW_LANES=4/);
  assert.match(script, /PW_SHUTDOWN_WHEN_DONE=1/);
  assert.equal(existsSync(scriptPath), false);
  assert.equal(result.commands[0]?.exitCode, 0);
});

test('gcloud: --preemptible, another image and machine type; a zone is required', async () => {
  const plan = await gcloud.plan({ action: 'create', ...create({ zone: 'us-east1-c', spotModel: 'preemptible', image: 'my-image-v3', machineType: 'n2-highcpu-8', count: 1 }) });
  const argv = plan.commands[0]?.argv ?? [];
  assert.ok(argv.includes('--preemptible'));
  assert.ok(!argv.some((a) => a.startsWith('--provisioning-model')));
  assert.ok(argv.includes('--image=my-image-v3'));
  assert.ok(argv.includes('--machine-type=n2-highcpu-8'));
  await assert.rejects(gcloud.plan({ action: 'create', ...create() }), (e: unknown) => e instanceof UsageError && /--zone is required/.test(e.message));
});

test('gcloud --delete lists the job\'s instances by label and deletes them by URI', async () => {
  const uris = ['https://www.googleapis.com/compute/v1/projects/p/zones/europe-west1-b/instances/a', 'https://www.googleapis.com/compute/v1/projects/p/zones/us-east1-c/instances/b'];
  process.env['STAND_IN_OUTPUT'] = `${uris.join('\n')}\n`;
  const result = await gcloud.apply(await gcloud.plan({ action: 'delete', job }));
  assert.deepEqual(recorded().map((r) => r.argv), [
    ['gcloud', 'compute', 'instances', 'list', `--filter=labels.piecework-job=${tag}`, '--format=value(selfLink)'],
    ['gcloud', 'compute', 'instances', 'delete', '--quiet', ...uris],
  ]);
  assert.deepEqual(result.ids, uris);

  // Nothing found: nothing deleted.
  rmSync(record);
  process.env['STAND_IN_OUTPUT'] = '';
  const none = await gcloud.apply(await gcloud.plan({ action: 'delete', job, zone: 'europe-west1-b' }));
  assert.deepEqual(recorded().map((r) => r.argv[3]), ['list']);
  assert.ok(recorded()[0]?.argv.includes('--zones=europe-west1-b'));
  assert.equal(none.commands[1]?.skipped, true);
});

test('aws: one-time spot instances with user data, tags, and terminate on shutdown', async () => {
  const options = create({ region: 'eu-west-1', image: 'ami-0123456789abcdef0' });
  await aws.apply(await aws.plan({ action: 'create', ...options }));
  const [call] = recorded();
  const scriptPath = join(options.scriptDir as string, 'aws-user-data.sh');
  assert.deepEqual(call?.argv, [
    'aws', 'ec2', 'run-instances', '--region', 'eu-west-1',
    '--image-id', 'ami-0123456789abcdef0',
    '--instance-type', 't3.medium',
    '--count', '3',
    '--instance-market-options', 'MarketType=spot,SpotOptions={SpotInstanceType=one-time,InstanceInterruptionBehavior=terminate}',
    '--instance-initiated-shutdown-behavior', 'terminate',
    '--user-data', `file://${scriptPath}`,
    '--tag-specifications', `ResourceType=instance,Tags=[{Key=piecework-job,Value=${tag}},{Key=Name,Value=${tag}}]`,
    '--query', 'Instances[].InstanceId',
    '--output', 'text',
  ]);
  assert.match(call?.scripts[scriptPath] ?? '', /cloud-init runs it as root/);
  await assert.rejects(aws.plan({ action: 'create', ...create() }), /--image \(an AMI id\) is required/);
});

test('aws --delete finds instances by tag, then terminates exactly those', async () => {
  process.env['STAND_IN_OUTPUT'] = 'i-0aaa\ti-0bbb\n';
  await aws.apply(await aws.plan({ action: 'delete', job, region: 'eu-west-1' }));
  assert.deepEqual(recorded().map((r) => r.argv), [
    ['aws', 'ec2', 'describe-instances', '--region', 'eu-west-1', '--filters', `Name=tag:piecework-job,Values=${tag}`, 'Name=instance-state-name,Values=pending,running,stopping,stopped', '--query', 'Reservations[].Instances[].InstanceId', '--output', 'text'],
    ['aws', 'ec2', 'terminate-instances', '--region', 'eu-west-1', '--output', 'text', '--instance-ids', 'i-0aaa', 'i-0bbb'],
  ]);
});

test('slurm: one sbatch --array job with --requeue, logs in the job, and scancel by name', async () => {
  const options = create({ job: '/home/me/jobs/score', count: 50, lanes: 4, partition: 'short' });
  await slurm.apply(await slurm.plan({ action: 'create', ...options }));
  const scriptPath = join(options.scriptDir as string, 'slurm-array.sh');
  const slurmTag = jobTag('/home/me/jobs/score');
  const [call] = recorded();
  assert.deepEqual(call?.argv, ['sbatch', '--array=1-50', `--job-name=${slurmTag}`, '--output=/home/me/jobs/score/logs/slurm-%A_%a.log', '--cpus-per-task=4', '--partition=short', '--parsable', scriptPath]);
  const script = call?.scripts[scriptPath] ?? '';
  assert.match(script, /^#!\/bin\/sh\n#SBATCH --requeue\n/);
  // Lanes come from SLURM_CPUS_PER_TASK in the task, not from the rendered bootstrap.
  assert.doesNotMatch(script, /PW_LANES=4/);
  rmSync(record);
  await slurm.apply(await slurm.plan({ action: 'delete', job: '/home/me/jobs/score' }));
  assert.deepEqual(recorded()[0]?.argv, ['scancel', `--name=${slurmTag}`, `--user=${userInfo().username}`]);
  await assert.rejects(slurm.plan({ action: 'create', ...create({ mount: { source: 'h:/x', at: '/y', strict: 'yes' } }) }), /--mount does not apply/);
});

test('a failing or missing CLI is an error that says which command and why', async () => {
  process.env['STAND_IN_EXIT'] = '1';
  await assert.rejects(gcloud.apply(await gcloud.plan({ action: 'delete', job })), (e: unknown) => e instanceof PieceworkError && /gcloud failed \(exit 1\)/.test(e.message));
  delete process.env['STAND_IN_EXIT'];
  const saved = process.env['PATH'];
  process.env['PATH'] = join(dir, 'empty-path');
  try {
    await assert.rejects(aws.apply(await aws.plan({ action: 'delete', job })), (e: unknown) => e instanceof PieceworkError && /aws is not installed/.test(e.message) && /aws configure/.test(e.hint ?? ''));
  } finally {
    process.env['PATH'] = saved;
  }
});

test('launch --provider: a dry run plans without running; a real one copies the CLI onto the share first', async () => {
  const share = join(dir, 'share');
  mkdirSync(join(share, 'jobs', 'score'), { recursive: true });
  writeFileSync(join(share, 'jobs', 'score', 'job.json'), '{}');
  const localTool = join(dir, 'piecework.mjs');
  writeFileSync(localTool, '// bundled CLI stand-in\n');
  const knownHosts = join(dir, 'known_hosts');
  writeFileSync(knownHosts, '[head.example.org]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n');
  const keyFile = join(dir, 'mount_key');
  writeFileSync(keyFile, 'PRIVATE KEY TEXT');
  const base = {
    job: join(share, 'jobs', 'score'),
    command: ['./score.sh'],
    provider: 'gcloud' as const,
    count: 2,
    zone: 'europe-west1-b',
    localTool,
    knownHostsFiles: [knownHosts],
    mount: { source: `me@head.example.org:${share}`, at: '/mnt/share', port: 2222, identity: keyFile },
  };
  const dry = await launch({ ...base, dryRun: true });
  assert.equal(dry.kind, 'provider');
  assert.equal(recorded().length, 0);
  assert.equal(existsSync(join(share, '.piecework')), false, 'a dry run copies nothing');
  if (dry.kind !== 'provider') return;
  const script = dry.plan.files[0]?.content ?? '';
  // The job and the tool are named as the instances see them; the head is checked strictly.
  assert.match(script, /PW_JOB=\/mnt\/share\/jobs\/score/);
  assert.match(script, /PW_TOOL=\/mnt\/share\/\.piecework\/0\.1\.0\/piecework\.mjs/);
  assert.match(script, /PW_MOUNT_STRICT=yes/);
  assert.match(script, /PW_MOUNT_KNOWN_HOSTS_LINES=/);
  assert.match(script, /PW_MOUNT_IDENTITY=\/var\/lib\/piecework\/mount_key/);
  assert.match(script, /PW_MOUNT_KEY='PRIVATE KEY TEXT'/);
  assert.equal(dry.plan.files[0]?.mode, 0o600, 'a script holding a key is written 0600');

  // The share not visible here: nothing is copied into what may be a bare mount point.
  await assert.rejects(launch({ ...base, job: join(dir, 'unmounted', 'jobs', 'score') }), /cannot copy piecework onto the share/);
  assert.equal(existsSync(join(dir, 'unmounted')), false);

  const real = await launch(base);
  assert.equal(real.kind, 'provider');
  assert.equal(readFileSync(join(share, '.piecework', '0.1.0', 'piecework.mjs'), 'utf8'), '// bundled CLI stand-in\n');
  assert.equal(recorded()[0]?.argv[3], 'create');

  // The head not in known_hosts: refused unless new keys may be accepted.
  await assert.rejects(launch({ ...base, knownHostsFiles: [join(dir, 'none')], dryRun: true }), /not in known_hosts/);
  const accepting = await launch({ ...base, knownHostsFiles: [join(dir, 'none')], acceptNewHostKeys: true, dryRun: true });
  assert.match(accepting.kind === 'provider' ? (accepting.plan.files[0]?.content ?? '') : '', /PW_MOUNT_STRICT=accept-new/);
});
