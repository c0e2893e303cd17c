// The cloud startup scripts, for real: `launch --provider gcloud|aws` runs against stand-in
// `gcloud` / `aws` executables that record their argv and keep the startup script / user data
// they were handed; `--dry-run` must show the same script. Then each script runs as root on a
// network-namespace "instance" that has nothing of the job yet — a private mount namespace with
// an empty /var/lib and /var/log, stand-ins for what would reach the internet or end the machine
// (apt-get, dnf, yum, curl, shutdown, poweroff, systemd-run, systemctl) — and it must mount the
// head's share over sshfs and start workers that complete the job, then "power off". Needs root.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { after, test } from 'node:test';
import { runCleanups } from '../helpers/cleanup.js';
import { runPiecework } from '../helpers/cli.js';
import { createHosts, type NsHost } from '../helpers/netns-hosts.js';
import { cleanHostState, makeSharedJob, mountArgs, pinBridgeAddress, sshfsOnHost, workersOnHost } from '../helpers/remote-job.js';
import { waitUntil } from '../helpers/sshd.js';
import { makeTempDir } from '../helpers/tmp.js';

after(() => runCleanups());

function writeScript(dir: string, name: string, body: string): void {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
}

/** Stand-in cloud CLIs: argv to $STUB_LOG; the script they are handed copied to $STUB_DIR. */
function cloudStubs(): { bin: string; log: string; dir: string } {
  const bin = makeTempDir('cloud-bin');
  const dir = makeTempDir('cloud-got');
  writeScript(bin, 'gcloud', [
    'printf "%s\\n" "gcloud $*" >>"$STUB_LOG"',
    'for a in "$@"; do',
    '  case $a in startup-script=*) cp "${a#startup-script=}" "$STUB_DIR/gcloud-startup.sh" ;; esac',
    'done',
    // `--format=value(name)`: the names it created, one a line.
    'for a in "$@"; do case $a in pw-*) printf "%s\\n" "$a" ;; esac; done',
  ].join('\n'));
  writeScript(bin, 'aws', [
    'printf "%s\\n" "aws $*" >>"$STUB_LOG"',
    'next=',
    'for a in "$@"; do',
    // User data goes gzip-compressed (fileb://); cloud-init inflates it on the instance.
    '  if [ "$next" = 1 ]; then gzip -dc "${a#fileb://}" >"$STUB_DIR/aws-user-data.sh"; fi',
    '  next=; [ "$a" = --user-data ] && next=1',
    'done',
    'printf "i-0123456789abcdef0\\n"',
  ].join('\n'));
  return { bin, log: join(dir, 'argv.log'), dir };
}

/** What an instance must not really do here: record the call instead. */
function instanceStubs(): string {
  const bin = makeTempDir('instance-bin');
  for (const name of ['apt-get', 'dnf', 'yum']) writeScript(bin, name, `printf '%s\\n' "${name} $*" >>"$STUB_RECORD"\nexit 1`);
  // GCE's metadata server and the Compute API, as a GCE instance deleting itself reaches them.
  writeScript(bin, 'curl', [
    'printf "%s\\n" "curl $*" >>"$STUB_RECORD"',
    'for a in "$@"; do url=$a; done',
    'case $url in',
    '  */instance/service-accounts/default/token) printf "{\\"access_token\\":\\"tok123\\",\\"expires_in\\":3599}" ;;',
    '  */project/project-id) printf proj-1 ;;',
    '  */instance/zone) printf projects/123/zones/europe-west1-b ;;',
    '  */instance/name) printf pw-inst-001 ;;',
    '  https://compute.googleapis.com/*) ;;',
    '  *) exit 1 ;;',
    'esac',
  ].join('\n'));
  for (const name of ['shutdown', 'poweroff']) writeScript(bin, name, `printf '%s\\n' "${name} $*" >>"$STUB_RECORD"`);
  writeScript(bin, 'systemctl', `printf '%s\\n' "systemctl $*" >>"$STUB_RECORD"\ncase $1 in is-active) exit 3 ;; esac`);
  // As systemd would: the command in a service of its own, detached from the startup unit.
  writeScript(bin, 'systemd-run', `printf '%s\\n' "systemd-run $*" >>"$STUB_RECORD"\nwhile [ $# -gt 0 ]; do case $1 in --*) shift ;; *) break ;; esac; done\nsetsid nohup "$@" >>"$STUB_RECORD.service.log" 2>&1 </dev/null &`);
  return bin;
}

/**
 * Run a startup script as root on a host as a fresh instance would: in a private mount namespace
 * of the host's (so the empty /var/lib and /var/log and the sshfs mount are the instance's own),
 * with the stand-ins first on PATH. Returns the script's output.
 */
async function boot(host: NsHost, script: string, stubs: string, record: string, options: { withoutFuse?: boolean } = {}): Promise<{ code: number | undefined; output: string }> {
  const path = join(makeTempDir('startup'), 'startup.sh');
  writeFileSync(path, script);
  // An instance with no FUSE and no sshfs: /dev/null bound over both, in its own mount namespace.
  const hide = options.withoutFuse ? 'for f in /dev/fuse "$(command -v sshfs)"; do [ -e "$f" ] && mount --bind /dev/null "$f"; done; ' : '';
  const r = await host.exec(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', `${hide}mount -t tmpfs instance /var/lib && mount -t tmpfs instance /var/log && exec sh "$0"`, path], {
    env: { PATH: `${stubs}:${process.env['PATH']}`, STUB_RECORD: record },
    reject: false,
    all: true,
    timeout: 60_000,
  });
  return { code: r.exitCode, output: r.all ?? '' };
}

/** When a job does not complete: its status and the instances' records and worker logs, for the failure message. */
async function whatTheInstancesSaid(job: string, records: string): Promise<string> {
  const parts = [`piecework status:\n${(await runPiecework(['status', job])).stdout}`];
  const stateLogs = join(process.env['XDG_STATE_HOME'] ?? join(homedir(), '.local', 'state'), 'piecework', 'logs');
  const name = basename(job);
  const files = [
    ...(existsSync(records) ? readdirSync(records).map((n) => join(records, n)) : []),
    ...(existsSync(stateLogs) ? readdirSync(stateLogs).filter((n) => n.startsWith(name)).map((n) => join(stateLogs, n)) : []),
  ];
  for (const file of files) parts.push(`${file}:\n${readFileSync(file, 'utf8').split('\n').slice(-15).join('\n')}`);
  return parts.join('\n');
}

void test('gcloud startup script and aws user data, rendered by launch, mount the share on an instance and run workers that complete the job', async (t) => {
  t.after(() => runCleanups());
  const at = join(makeTempDir('mnt'), 'share');
  cleanHostState();
  const cluster = await createHosts(2);
  pinBridgeAddress();
  const [gceHost, ec2Host] = cluster.hosts as [NsHost, NsHost];
  const { job, expected } = makeSharedJob(cluster.head.shareDir, 'cloud', 40);
  const stubs = cloudStubs();
  const env = { PATH: `${stubs.bin}:${process.env['PATH']}`, STUB_LOG: stubs.log, STUB_DIR: stubs.dir };
  const common = [...mountArgs(cluster, at), '--known-hosts', cluster.knownHostsPath, '-j', '2'];
  const command = ['--', 'sh', '-c', 'sleep 0.2; tr a-z A-Z'];
  const providers = {
    gcloud: ['--provider', 'gcloud', '--count', '2', '--zone', 'europe-west1-b'],
    aws: ['--provider', 'aws', '--count', '2', '--region', 'eu-west-1', '--image', 'ami-0123456789abcdef0'],
  };

  const scripts: Record<string, string> = {};
  for (const [name, flags] of Object.entries(providers)) {
    const dry = await runPiecework(['launch', job, ...flags, ...common, '--dry-run', '--json', ...command], { env });
    assert.equal(dry.code, 0, dry.stderr);
    const plan = (JSON.parse(dry.stdout) as { plan: { files: { content: string }[]; commands: { argv: string[] }[] } }).plan;
    const real = await runPiecework(['launch', job, ...flags, ...common, ...command], { env });
    assert.equal(real.code, 0, real.stderr);
    const file = join(stubs.dir, name === 'gcloud' ? 'gcloud-startup.sh' : 'aws-user-data.sh');
    assert.ok(existsSync(file), `${name} was handed its script`);
    scripts[name] = readFileSync(file, 'utf8');
    // The dry run shows the very script that is sent, the key excepted (it shows where it comes from).
    const unkeyed = (text: string): string => text.replace(/^PW_MOUNT_KEY='[^']*'$/m, 'PW_MOUNT_KEY=…');
    assert.equal(unkeyed(plan.files[0]!.content), unkeyed(scripts[name]));
    assert.match(plan.files[0]!.content, new RegExp(`PW_MOUNT_KEY='<contents of ${cluster.clientKeyPath}>'`));
    assert.ok(scripts[name].includes(readFileSync(cluster.clientKeyPath, 'utf8').trim()), 'the real script carries the sshfs key');
    assert.equal(plan.commands[0]!.argv[0], name);
  }
  const calls = readFileSync(stubs.log, 'utf8');
  assert.match(calls, /^gcloud compute instances create pw-[a-z0-9-]+-[0-9a-f]{16}-\w+-001 pw-[a-z0-9-]+-[0-9a-f]{16}-\w+-002 --zone=europe-west1-b .*--provisioning-model=SPOT --instance-termination-action=DELETE --metadata-from-file startup-script=\S+ --labels=piecework-job=pw-[0-9a-f]{16} /m);
  assert.match(calls, /^aws ec2 run-instances --region eu-west-1 --image-id ami-0123456789abcdef0 .*--count 1:2 --instance-market-options MarketType=spot,.* --instance-initiated-shutdown-behavior terminate --metadata-options HttpTokens=required,HttpEndpoint=enabled --user-data fileb:\/\/\S+/m);

  // Boot the two "instances".
  const records = makeTempDir('records');
  const instanceBin = instanceStubs();
  const t0 = Date.now();
  const booted = await Promise.all([
    boot(gceHost, scripts['gcloud']!, instanceBin, join(records, 'gce')),
    boot(ec2Host, scripts['aws']!, instanceBin, join(records, 'ec2')),
  ]);
  for (const b of booted) {
    assert.equal(b.code, 0, b.output);
    assert.match(b.output, /piecework-startup: worker started/);
    assert.doesNotMatch(b.output, /installing/, 'sshfs and node are there: nothing to install');
  }
  t.diagnostic(`startup scripts returned in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

  await waitUntil(async () => (await runPiecework(['verify', job])).code === 0, 60_000, 'the job to complete from the instances');
  t.diagnostic(`job complete ${((Date.now() - t0) / 1000).toFixed(1)} s after boot`);
  assert.equal((await runPiecework(['merge', job])).stdout, expected, 'merge equals the serial run');

  // Both instances worked (two workers, each with outputs) and powered themselves off once done.
  const beats = readdirSync(join(job, 'workers')).filter((n) => n.endsWith('.json'));
  assert.equal(beats.length, 2);
  for (const [host, record] of [[gceHost, 'gce'], [ec2Host, 'ec2']] as const) {
    await waitUntil(() => existsSync(join(records, record)) && readFileSync(join(records, record), 'utf8').includes('shutdown -h now'), 20_000, `${host.name} to power off`);
    const calls = readFileSync(join(records, record), 'utf8');
    assert.doesNotMatch(calls, /apt-get|dnf|yum/, 'nothing was installed');
    assert.doesNotMatch(calls.replace(/^curl .*(metadata\.google\.internal|compute\.googleapis\.com).*$/gm, ''), /curl/, 'nothing was downloaded');
    if (record === 'gce') {
      // A GCE instance that only powered off would be kept (TERMINATED, disk billed): it asks to be deleted first.
      assert.match(calls, /^curl -sf -X DELETE -H Authorization: Bearer tok123 https:\/\/compute\.googleapis\.com\/compute\/v1\/projects\/proj-1\/zones\/europe-west1-b\/instances\/pw-inst-001\nshutdown -h now$/m);
    } else {
      assert.doesNotMatch(calls, /curl/, 'an EC2 instance terminates by powering off');
    }
    assert.deepEqual(workersOnHost(host), []);
  }
  // Each instance's worker output is in the job's logs/, ending with its exit status.
  const launchLogs = readdirSync(join(job, 'logs')).filter((n) => n.startsWith('launch-'));
  assert.equal(launchLogs.length, 2);
  for (const name of launchLogs) assert.match(readFileSync(join(job, 'logs', name), 'utf8'), /work: job complete \(40 chunks\)[^]*piecework-worker: exit=0\n$/);
  const done = beats.map((n) => (JSON.parse(readFileSync(join(job, 'workers', n), 'utf8')) as { done: number; state: string }));
  t.diagnostic(`chunks per instance: ${done.map((d) => d.done).join(', ')}`);
  for (const d of done) assert.equal(d.state, 'exited');
  assert.equal(done.reduce((a, d) => a + d.done, 0), 40);
});

void test('--via sftp: the gcloud startup script and aws user data run workers on instances without FUSE or sshfs that fetch the CLI from the head and complete the job over SFTP with the job key; --delete revokes it', async (t) => {
  t.after(() => runCleanups());
  cleanHostState();
  const cluster = await createHosts(2);
  pinBridgeAddress();
  const [gceHost, ec2Host] = cluster.hosts as [NsHost, NsHost];
  const { job, expected } = makeSharedJob(cluster.head.shareDir, 'cloud-sftp', 40);
  const stubs = cloudStubs();
  const authorizedKeys = join(cluster.head.sshd.dir, 'authorized_keys');
  const env = {
    PATH: `${stubs.bin}:${process.env['PATH']}`, STUB_LOG: stubs.log, STUB_DIR: stubs.dir, SSH_AUTH_SOCK: '',
    PIECEWORK_JOB_KEYS_DIR: join(makeTempDir('job-keys'), 'keys'), PIECEWORK_HEAD_AUTHORIZED_KEYS: authorizedKeys,
  };
  const head = `root@${cluster.head.address}:${cluster.head.sshd.port}`;
  const common = ['--via', 'sftp', '--head', head, '--known-hosts', cluster.knownHostsPath, '--identity', cluster.clientKeyPath, '-j', '2'];
  const command = ['--', 'sh', '-c', 'sleep 0.2; tr a-z A-Z'];
  const providers = {
    gcloud: ['--provider', 'gcloud', '--count', '1', '--zone', 'europe-west1-b'],
    aws: ['--provider', 'aws', '--count', '1', '--region', 'eu-west-1', '--image', 'ami-0123456789abcdef0'],
  };
  const scripts: Record<string, string> = {};
  for (const [name, flags] of Object.entries(providers)) {
    const dry = await runPiecework(['launch', job, ...flags, ...common, '--dry-run', '--json', ...command], { env });
    assert.equal(dry.code, 0, dry.stderr);
    const plan = (JSON.parse(dry.stdout) as { plan: { files: { content: string }[] } }).plan;
    const real = await runPiecework(['launch', job, ...flags, ...common, ...command], { env });
    assert.equal(real.code, 0, real.stderr);
    scripts[name] = readFileSync(join(stubs.dir, name === 'gcloud' ? 'gcloud-startup.sh' : 'aws-user-data.sh'), 'utf8');
    const unkeyed = (text: string): string => text.replace(/^PW_MOUNT_KEY='[^']*'$/m, 'PW_MOUNT_KEY=…');
    assert.equal(unkeyed(plan.files[0]!.content), unkeyed(scripts[name]), 'the dry run shows the script that is sent');
    assert.match(plan.files[0]!.content, /^PW_MOUNT_KEY='<the job key piecework-job-[0-9a-f]{16}/m);
    assert.match(scripts[name], /^PW_NEEDS_SSHFS=0$/m);
    assert.match(scripts[name], /^PW_JOB=sftp:\/\/root@[\d.]+:\d+\/.*cloud-sftp-/m);
  }
  // One job key for the job, SFTP only, on the head; the CLI beside the job there.
  const jobLines = (): string[] => readFileSync(authorizedKeys, 'utf8').split('\n').filter((l) => / piecework-job-[0-9a-f]{16}$/.test(l));
  assert.equal(jobLines().length, 1);
  assert.match(jobLines()[0]!, /^restrict,command="internal-sftp" ssh-ed25519 /);
  assert.ok(readdirSync(join(cluster.head.shareDir, '.piecework')).length === 1, 'the CLI was copied beside the job on the head');

  const records = makeTempDir('records');
  const instanceBin = instanceStubs();
  const t0 = Date.now();
  const booted = await Promise.all([
    boot(gceHost, scripts['gcloud']!, instanceBin, join(records, 'gce'), { withoutFuse: true }),
    boot(ec2Host, scripts['aws']!, instanceBin, join(records, 'ec2'), { withoutFuse: true }),
  ]);
  for (const b of booted) {
    assert.equal(b.code, 0, b.output);
    assert.match(b.output, /piecework-startup: worker started/);
    assert.doesNotMatch(b.output, /installing/, 'node and the OpenSSH client are there: nothing to install');
  }
  await waitUntil(async () => (await runPiecework(['verify', job])).code === 0, 90_000, 'the job to complete from the instances').catch(async (error: Error) => {
    throw new Error(`${error.message}\n${await whatTheInstancesSaid(job, records)}`);
  });
  t.diagnostic(`job complete over SFTP ${((Date.now() - t0) / 1000).toFixed(1)} s after boot`);
  assert.equal((await runPiecework(['merge', job])).stdout, expected, 'merge equals the serial run');
  // Each instance's /var/lib was empty: its worker ran the CLI the bootstrap fetched from the head.
  const beats = readdirSync(join(job, 'workers')).filter((n) => n.endsWith('.json'));
  assert.equal(beats.length, 2, 'a worker on each instance');
  for (const [host, record] of [[gceHost, 'gce'], [ec2Host, 'ec2']] as const) {
    await waitUntil(() => existsSync(join(records, record)) && readFileSync(join(records, record), 'utf8').includes('shutdown -h now'), 20_000, `${host.name} to power off`);
    assert.doesNotMatch(readFileSync(join(records, record), 'utf8'), /apt-get|dnf|yum/, 'nothing was installed');
    assert.deepEqual(sshfsOnHost(host), [], `no sshfs on ${host.name}`);
    assert.deepEqual(workersOnHost(host), []);
  }
  for (const n of beats) assert.equal((JSON.parse(readFileSync(join(job, 'workers', n), 'utf8')) as { state: string }).state, 'exited');

  // --delete (no --via needed): nothing left to delete here (stand-in CLIs), the job key revoked on the head.
  const deleted = await runPiecework(['launch', job, '--provider', 'gcloud', '--delete', '--known-hosts', cluster.knownHostsPath, '--identity', cluster.clientKeyPath], { env });
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.match(deleted.stderr, /job key piecework-job-[0-9a-f]{16} revoked on root@/);
  assert.deepEqual(jobLines(), []);
});
