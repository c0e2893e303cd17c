// Per-job keys (issue 12), for real: `launch --provider aws --mount …` (the real aws CLI against
// the recording EC2 endpoint) makes a key for the job, installs it in the head's authorized_keys —
// the head is a real sshd, its authorized_keys a test file (PIECEWORK_HEAD_AUTHORIZED_KEYS), the
// kept keys in a test folder (PIECEWORK_JOB_KEYS_DIR) — and sends it in the user data. With that
// key the real `sftp` works and the real `ssh head true` is refused; `launch --delete` terminates
// the instances and removes exactly the job's line, and the key here.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { execa } from 'execa';
import { PieceworkError } from '../../src/core/errors.js';
import { launch, type LaunchEvent, type LaunchOptions, type ProviderLaunchReport } from '../../src/remote/launch.js';
import { runCleanups } from '../helpers/cleanup.js';
import { runPiecework } from '../helpers/cli.js';
import { startCloudEndpoint, type CloudEndpoint } from '../helpers/cloud-endpoint.js';
import { freePort, startSshd, type Sshd } from '../helpers/sshd.js';
import { makeTempDir } from '../helpers/tmp.js';

const noAws = spawnSync('aws', ['--version'], { stdio: 'ignore' }).status === 0 ? false : 'aws is not installed (apt-get install awscli)';

// Job ids carry this run's pid, as every name a test makes.
const pid = process.pid.toString(16).padStart(8, '0');
const ids = { one: `${pid}00000001`, two: `${pid}00000002`, three: `${pid}00000003`, four: `${pid}00000004` };
const others = ['# lines of other people, which must never change', 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl colleague@laptop', ''];

let sshd: Sshd;
let endpoint: CloudEndpoint;
let share: string;
let keysDir: string;
let authorizedKeys: string;
let localTool: string;
const savedEnv = { ...process.env };

before(async () => {
  sshd = await startSshd();
  if (!noAws) endpoint = await startCloudEndpoint();
  const dir = makeTempDir('job-key');
  share = join(dir, 'srv', 'share');
  keysDir = join(dir, 'launcher-config', 'job-keys');
  localTool = join(dir, 'piecework.mjs');
  writeFileSync(localTool, '// bundled CLI stand-in\n');
  // The head's authorized_keys (sshd reads this file): the launcher's own key, then other people's.
  authorizedKeys = join(sshd.dir, 'authorized_keys');
  writeFileSync(authorizedKeys, `${readFileSync(authorizedKeys, 'utf8').trimEnd()}\n${others.join('\n')}`);
});
after(async () => {
  process.env = savedEnv;
  await endpoint?.close();
  await runCleanups();
});
beforeEach(() => {
  Object.assign(process.env, endpoint?.awsEnv(), { PIECEWORK_JOB_KEYS_DIR: keysDir, PIECEWORK_HEAD_AUTHORIZED_KEYS: authorizedKeys });
  delete process.env['SSH_AUTH_SOCK'];
});
afterEach(() => {
  process.env = { ...savedEnv };
});

function makeJob(name: string, id: string): string {
  const job = join(share, 'jobs', name);
  mkdirSync(join(job, 'logs'), { recursive: true });
  writeFileSync(join(job, 'job.json'), JSON.stringify({ protocol: 2, tool: 'piecework', id, created: new Date().toISOString(), split: { mode: 'lines', size: 1, inputs: [], grouping: 'none' }, groups: [{ name: '', count: 1, width: 6 }], ext: '', chunkCount: 1, complete: true, staleSeconds: 60, retries: 2 }));
  return job;
}

/** `launch JOB --provider aws --count 2 … --mount root@head:SHARE --at /mnt/share -- cat`, as the launching user (the test's client key). */
function options(job: string, extra: Partial<LaunchOptions> = {}): LaunchOptions {
  return {
    job,
    command: ['cat'],
    localTool,
    launchDir: job,
    knownHostsFiles: [sshd.knownHostsPath],
    identityFiles: [sshd.clientKeyPath],
    agent: false,
    connectTimeoutMs: 5000,
    mount: { source: `root@127.0.0.1:${share}`, at: '/mnt/share', port: sshd.port },
    provider: 'aws',
    count: 2,
    region: 'eu-west-1',
    image: 'ami-1',
    ...extra,
  };
}

/** The CLI's environment: the cloud endpoint, the test's key folder and authorized_keys, no agent. */
function cliEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['SSH_AUTH_SOCK'];
  return env;
}

const jobLines = (id: string): string[] => readFileSync(authorizedKeys, 'utf8').split('\n').filter((l) => l.endsWith(` piecework-job-${id}`));

/** The PW_MOUNT_KEY an instance of the job got in its user data. */
function mountKeyOfInstances(id: string): string[] {
  return [...endpoint.ec2.values()]
    .filter((i) => i.tags['piecework-job'] === `pw-${id}`)
    // The values block ends where the script's own `set -eu` starts.
    .map((i) => spawnSync('sh', ['-c', `${i.userData.slice(0, i.userData.lastIndexOf('\nset -eu\n'))}\nprintf %s "$PW_MOUNT_KEY"`], { encoding: 'utf8', env: {} }).stdout);
}

/** OpenSSH's own client with only the given key, the head's key checked. */
function clientOptions(key: string): string[] {
  return ['-F', 'none', '-o', `IdentityFile=${key}`, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${sshd.knownHostsPath}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5'];
}
const sftpWith = (key: string, batch: string) => execa('sftp', [...clientOptions(key), '-P', String(sshd.port), '-b', '-', 'root@127.0.0.1'], { input: batch, reject: false, all: true, timeout: 20_000 });
const sshWith = (key: string, command: string) => execa('ssh', [...clientOptions(key), '-p', String(sshd.port), 'root@127.0.0.1', command], { reject: false, all: true, timeout: 20_000 });

void describe('a per-job key for cloud launches (aws CLI, recording endpoint, a real sshd as the head)', { skip: noAws }, () => {
  test('launch makes one SFTP-only key for the job, installs it once, sends it in the user data; --delete revokes exactly it', async () => {
    const job = makeJob('score', ids.one);
    const before = readFileSync(authorizedKeys, 'utf8');
    const events: LaunchEvent[] = [];
    const report = (await launch({ ...options(job), onEvent: (e) => events.push(e) })) as ProviderLaunchReport;

    // The head's authorized_keys: exactly one new line, restricted to SFTP, every other line as it was.
    const [line, ...more] = jobLines(ids.one);
    assert.equal(more.length, 0);
    assert.match(line ?? '', new RegExp(`^restrict,command="internal-sftp" ssh-ed25519 AAAA[A-Za-z0-9+/=]+ piecework-job-${ids.one}$`));
    assert.equal(readFileSync(authorizedKeys, 'utf8'), `${before.endsWith('\n') ? before : `${before}\n`}${line}\n`);
    assert.equal(statSync(authorizedKeys).mode & 0o777, 0o600);
    assert.deepEqual(report.jobKey && { result: report.jobKey.result, line: report.jobKey.line, authorizedKeys: report.jobKey.authorizedKeys }, { result: 'added', line, authorizedKeys });
    assert.deepEqual(events.filter((e) => e.type.startsWith('job-key:')).map((e) => e.type), ['job-key:created', 'job-key:installed']);

    // The private key: kept here (0600, folder 0700), not in the job folder; it is what the instances got.
    const keyFile = join(keysDir, ids.one);
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    assert.equal(statSync(keysDir).mode & 0o777, 0o700);
    assert.equal(spawnSync('grep', ['-rl', 'OPENSSH PRIVATE KEY', job]).stdout.toString(), '', 'no key in the job folder');
    const sent = mountKeyOfInstances(ids.one);
    assert.equal(sent.length, 2);
    for (const key of sent) assert.equal(key, readFileSync(keyFile, 'utf8'));
    const publicKey = spawnSync('ssh-keygen', ['-y', '-f', keyFile], { encoding: 'utf8' }).stdout.trim();
    assert.equal(line, `restrict,command="internal-sftp" ${publicKey}`);
    const form = endpoint.requests.find((r) => (r.body as Record<string, string>)['Action'] === 'RunInstances')?.body as Record<string, string>;
    assert.equal(form['MetadataOptions.HttpTokens'], 'required');
    assert.ok(gunzipSync(Buffer.from(form['UserData'] ?? '', 'base64')).toString().includes(readFileSync(keyFile, 'utf8').trim()));

    // With the job key: SFTP serves the share, a shell command is refused.
    const sftp = await sftpWith(keyFile, `ls ${share}/jobs\n`);
    assert.equal(sftp.exitCode, 0, sftp.all);
    assert.match(sftp.all ?? '', /score/);
    const shell = await sshWith(keyFile, 'echo SHELL-RAN');
    assert.notEqual(shell.exitCode, 0);
    assert.doesNotMatch(shell.all ?? '', /SHELL-RAN/);
    assert.match(shell.all ?? '', /sftp connections only/);

    // A rerun for the same job reuses the key: still one line, the same key.
    const again = (await launch(options(job))) as ProviderLaunchReport;
    assert.equal(again.jobKey?.result, 'present');
    assert.deepEqual(jobLines(ids.one), [line]);
    assert.deepEqual(mountKeyOfInstances(ids.one), [...sent, ...sent]);

    // --delete: instances first, then the job's line (and nothing else), then the key here.
    const removed = (await launch({ job, command: [], provider: 'aws', region: 'eu-west-1', delete: true, knownHostsFiles: [sshd.knownHostsPath], identityFiles: [sshd.clientKeyPath], agent: false })) as ProviderLaunchReport;
    assert.equal(removed.result?.ids.length, 4);
    assert.ok([...endpoint.ec2.values()].filter((i) => i.tags['piecework-job'] === `pw-${ids.one}`).every((i) => i.state === 'shutting-down'));
    assert.deepEqual(removed.jobKey?.revoked, [{ head: `root@127.0.0.1:${sshd.port}`, file: authorizedKeys, result: 'removed', lines: 1 }]);
    assert.deepEqual(jobLines(ids.one), []);
    assert.equal(readFileSync(authorizedKeys, 'utf8'), before.endsWith('\n') ? before : `${before}\n`);
    assert.equal(existsSync(keyFile), false);
    assert.equal(existsSync(`${keyFile}.json`), false);
    // The revoked key opens nothing any more (a copy of it, as an instance would have kept).
    const copy = join(makeTempDir('revoked'), 'key');
    writeFileSync(copy, sent[0]!, { mode: 0o600 });
    assert.notEqual((await sftpWith(copy, `ls ${share}\n`)).exitCode, 0);

    // Again: nothing to revoke, no error.
    const twice = (await launch({ job, command: [], provider: 'aws', region: 'eu-west-1', delete: true, knownHostsFiles: [sshd.knownHostsPath], identityFiles: [sshd.clientKeyPath], agent: false })) as ProviderLaunchReport;
    assert.equal(twice.jobKey, undefined);
  });

  test('two jobs get two keys; a dry run shows the line and touches neither the head nor the keys here', async () => {
    const first = makeJob('first', ids.two);
    const second = makeJob('second', ids.three);
    const beforeAny = readFileSync(authorizedKeys, 'utf8');

    // Dry run of a job with no key yet: no key file, no head edit, no instance.
    endpoint.clear();
    const dry = (await launch(options(second, { dryRun: true }))) as ProviderLaunchReport;
    assert.equal(dry.jobKey?.result, 'would-add');
    assert.equal(dry.jobKey?.line, `restrict,command="internal-sftp" ssh-ed25519 <a new key> piecework-job-${ids.three}`);
    assert.equal(existsSync(join(keysDir, ids.three)), false);
    assert.equal(readFileSync(authorizedKeys, 'utf8'), beforeAny);
    assert.equal(endpoint.requests.length, 0);

    await launch(options(first));
    await launch(options(second));
    const [a] = jobLines(ids.two);
    const [b] = jobLines(ids.three);
    assert.ok(a && b);
    assert.notEqual(a.split(' ')[2], b.split(' ')[2], 'two different keys');
    assert.notEqual(readFileSync(join(keysDir, ids.two), 'utf8'), readFileSync(join(keysDir, ids.three), 'utf8'));

    // Dry run of a job with its key: the very line it has; nothing changes.
    const snapshot = readFileSync(authorizedKeys, 'utf8');
    const keyBefore = readFileSync(join(keysDir, ids.two), 'utf8');
    const dryAgain = (await launch(options(first, { dryRun: true }))) as ProviderLaunchReport;
    assert.equal(dryAgain.jobKey?.line, a);
    const dryDelete = (await launch({ job: first, command: [], provider: 'aws', region: 'eu-west-1', delete: true, dryRun: true })) as ProviderLaunchReport;
    assert.deepEqual(dryDelete.jobKey?.wouldRevoke, [`root@127.0.0.1:${sshd.port}`]);
    assert.equal(readFileSync(authorizedKeys, 'utf8'), snapshot);
    assert.equal(readFileSync(join(keysDir, ids.two), 'utf8'), keyBefore);

    // Revoking one job leaves the other's line.
    await launch({ job: first, command: [], provider: 'aws', region: 'eu-west-1', delete: true, knownHostsFiles: [sshd.knownHostsPath], identityFiles: [sshd.clientKeyPath], agent: false });
    assert.deepEqual(jobLines(ids.two), []);
    assert.deepEqual(jobLines(ids.three), [b]);
  });

  test('through the CLI: --dry-run prints the line the head would get and no key; launch and --delete say what they did', async () => {
    const job = makeJob('cli', `${pid}00000007`);
    const flags = ['--provider', 'aws', '--count', '1', '--region', 'eu-west-1', '--image', 'ami-1', '--mount', `root@127.0.0.1:${share}`, '--mount-port', String(sshd.port), '--at', '/mnt/share', '--identity', sshd.clientKeyPath, '--known-hosts', sshd.knownHostsPath];
    const snapshot = readFileSync(authorizedKeys, 'utf8');
    const dry = await runPiecework(['launch', job, ...flags, '--dry-run', '--', 'cat'], { env: cliEnv(), cwd: job });
    assert.equal(dry.code, 0, dry.stderr);
    assert.ok(dry.stdout.includes(`# ---- the job key: this line would be added to ${authorizedKeys} on root@127.0.0.1:${sshd.port} (over SSH, as you) ----\nrestrict,command="internal-sftp" ssh-ed25519 <a new key> piecework-job-${pid}00000007\n`), dry.stdout);
    assert.match(dry.stdout, new RegExp(`PW_MOUNT_KEY='<the job key piecework-job-${pid}00000007, made when launch runs>'`));
    assert.doesNotMatch(dry.stdout, /PRIVATE KEY/);
    assert.equal(readFileSync(authorizedKeys, 'utf8'), snapshot);
    assert.equal(existsSync(join(keysDir, `${pid}00000007`)), false);

    const real = await runPiecework(['launch', job, ...flags, '--', 'cat'], { env: cliEnv(), cwd: job });
    assert.equal(real.code, 0, real.stderr);
    assert.match(real.stderr, new RegExp(`launch: new job key piecework-job-${pid}00000007 in ${keysDir}/${pid}00000007`));
    assert.match(real.stderr, new RegExp(`launch: job key piecework-job-${pid}00000007 added to ${authorizedKeys} on root@127\\.0\\.0\\.1:${sshd.port} \\(SFTP only\\)`));
    const removed = await runPiecework(['launch', job, '--provider', 'aws', '--region', 'eu-west-1', '--delete', '--identity', sshd.clientKeyPath, '--known-hosts', sshd.knownHostsPath], { env: cliEnv() });
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stderr, new RegExp(`launch: job key piecework-job-${pid}00000007 revoked on root@127\\.0\\.0\\.1:${sshd.port} \\(1 line removed from ${authorizedKeys}\\)`));
    assert.match(removed.stderr, new RegExp(`launch: job key piecework-job-${pid}00000007 deleted here`));
    assert.equal(readFileSync(authorizedKeys, 'utf8'), snapshot);
  });

  test('a head out of reach: launch refuses before any instance; --delete still terminates them, then fails saying the key is live', async () => {
    // A head of its own, which this test stops.
    const head = await startSshd({ clientKeyPath: sshd.clientKeyPath });
    process.env['PIECEWORK_HEAD_AUTHORIZED_KEYS'] = join(head.dir, 'authorized_keys');
    const job = makeJob('going', ids.four);
    await launch(options(job, { knownHostsFiles: [head.knownHostsPath], mount: { source: `root@127.0.0.1:${share}`, at: '/mnt/share', port: head.port } }));
    assert.equal(readFileSync(join(head.dir, 'authorized_keys'), 'utf8').split('\n').filter((l) => l.endsWith(`piecework-job-${ids.four}`)).length, 1);

    // A port nobody listens on: the install fails before RunInstances.
    endpoint.clear();
    const dead = await freePort();
    const knownDead = join(makeTempDir('known-dead'), 'known_hosts');
    writeFileSync(knownDead, `[127.0.0.1]:${dead} ${sshd.hostPublicKey}\n`);
    const refused = launch(options(makeJob('unreachable', `${pid}00000008`), { mount: { source: `root@127.0.0.1:${share}`, at: '/mnt/share', port: dead }, knownHostsFiles: [knownDead] }));
    await assert.rejects(refused, (e: unknown) => e instanceof PieceworkError && /cannot add the job key on the head root@127\.0\.0\.1:\d+: connection refused/.test(e.message) && e.exitStatus === 1 && /ssh -p \d+ root@127\.0\.0\.1 true/.test(e.hint ?? ''));
    assert.equal(endpoint.requests.filter((r) => (r.body as Record<string, string>)['Action'] === 'RunInstances').length, 0);

    // The head goes away: --delete (the CLI, as a person runs it) terminates the instances, then
    // fails: one line and a hint, no stack, exit 1.
    head.stop();
    const deleting = await runPiecework(['launch', job, '--provider', 'aws', '--region', 'eu-west-1', '--delete', '--identity', sshd.clientKeyPath, '--known-hosts', head.knownHostsPath, '--connect-timeout', '3'], { env: cliEnv() });
    assert.equal(deleting.code, 1, deleting.stderr);
    assert.match(deleting.stderr, new RegExp(`^piecework: deleted 2 instance\\(s\\) of pw-${ids.four}, but could not revoke the job key piecework-job-${ids.four} on root@127\\.0\\.0\\.1:${head.port}: connection refused`, 'm'));
    assert.match(deleting.stderr, /^ {2}launch logs in to the head as you .*run this --delete again once the head is reachable/m);
    assert.doesNotMatch(deleting.stderr, /^\s+at /m, 'no stack without --verbose');
    assert.ok([...endpoint.ec2.values()].filter((i) => i.tags['piecework-job'] === `pw-${ids.four}`).every((i) => i.state === 'shutting-down'));
    assert.ok(existsSync(join(keysDir, ids.four)), 'the key is kept for another --delete');
  });
});

void describe('--hosts --via sftp --job-key (a real sshd as both the host and the head)', () => {
  test('the key goes to the head SFTP-only and to the host for its workers (PIECEWORK_SSH_IDENTITY); launch JOB --delete revokes it', async () => {
    const id = `${pid}00000005`;
    const job = makeJob('via-sftp', id);
    const dir = makeTempDir('via-sftp');
    const seen = join(dir, 'worker.json');
    // Stand-in for dist/piecework.mjs: records its argv and the key it was given, then exits 0 (nothing left to do).
    const tool = join(dir, 'piecework.mjs');
    writeFileSync(tool, `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(seen)}, JSON.stringify({ argv: process.argv.slice(2), identity: process.env.PIECEWORK_SSH_IDENTITY }));\n`);
    const common = { identityFiles: [sshd.clientKeyPath], agent: false as const, knownHostsFiles: [sshd.knownHostsPath], connectTimeoutMs: 5000 };
    const host = { user: 'root', host: '127.0.0.1', port: sshd.port, source: 'test:1' };
    const address = `sftp://root@127.0.0.1:${sshd.port}${job}`;

    const dry = await launch({ ...common, job, command: ['cat'], hostSpecs: [host], sftp: { address }, jobKey: true, localTool: tool, dryRun: true });
    assert.equal(dry.kind === 'ssh' && dry.dryRun ? dry.jobKey?.result : undefined, 'would-add');
    assert.deepEqual(jobLines(id), []);
    assert.equal(existsSync(join(keysDir, id)), false);

    const report = await launch({ ...common, job, command: ['cat'], hostSpecs: [host], sftp: { address }, jobKey: true, localTool: tool, graceSeconds: 1 });
    if (report.kind !== 'ssh' || report.dryRun) return assert.fail('expected an ssh report');
    assert.equal(report.hosts[0]?.status, 'started', report.hosts[0]?.message);
    const [line, ...more] = jobLines(id);
    assert.equal(more.length, 0);
    assert.equal(line, `restrict,command="internal-sftp" ${spawnSync('ssh-keygen', ['-y', '-f', join(keysDir, id)], { encoding: 'utf8' }).stdout.trim()}`);
    // On the host: the key in its state folder (the test sshd's sessions have XDG_STATE_HOME in its folder), 0600; the worker was pointed at it.
    const onHost = join(sshd.dir, 'state', 'piecework', 'job-keys', id);
    assert.equal(readFileSync(onHost, 'utf8'), readFileSync(join(keysDir, id), 'utf8'));
    assert.equal(statSync(onHost).mode & 0o777, 0o600);
    await waitFor(() => existsSync(seen));
    const worker = JSON.parse(readFileSync(seen, 'utf8')) as { argv: string[]; identity: string };
    assert.equal(worker.identity, onHost);
    assert.equal(worker.argv[1], address);
    assert.equal((await sftpWith(onHost, `ls ${job}\n`)).exitCode, 0);
    assert.notEqual((await sshWith(onHost, 'true')).exitCode, 0);

    // No provider, no instances: --delete revokes the key on the head and forgets it here.
    const revoked = await launch({ ...common, job, command: [], delete: true });
    assert.equal(revoked.kind, 'job-key');
    assert.deepEqual(revoked.kind === 'job-key' ? revoked.jobKey?.revoked : undefined, [{ head: `root@127.0.0.1:${sshd.port}`, file: authorizedKeys, result: 'removed', lines: 1 }]);
    assert.deepEqual(jobLines(id), []);
    assert.equal(existsSync(join(keysDir, id)), false);
    assert.notEqual((await sftpWith(onHost, `ls ${job}\n`)).exitCode, 0, 'the copy on the host opens nothing any more');
  });

  test('--job-key with a key of the user\'s, or with nothing to reach a head with, is a usage error', async () => {
    const job = makeJob('usage', `${pid}00000006`);
    const base = { job, command: ['cat'], hostSpecs: [{ host: 'h', port: 22, source: 't' }], jobKey: true, dryRun: true, localTool };
    await assert.rejects(launch({ ...base, sftp: { address: `sftp://h${job}`, identity: '/k' } }), /--job-key and --head-identity do not go together/);
    await assert.rejects(launch(base), /--job-key needs --mount \(or --via sftp\)/);
    await assert.rejects(launch({ ...base, hostSpecs: [], provider: 'slurm', count: 1 }), /--job-key does not apply to --provider slurm/);
  });
});

async function waitFor(check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}
