// The SSH layer against a real OpenSSH server on loopback: host-key verdicts, authentication,
// retries after dropped connections, and launch() starting a detached stand-in worker that
// outlives the session. (The multi-host, sshfs and namespace tests live in test/cluster.)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { join } from 'node:path';
import { isAlive, killTree, mountPoints, registerCleanup, runCleanups, unmountSync } from '../helpers/cleanup.js';
import { startSshd, type Sshd } from '../helpers/sshd.js';
import { makeTempDir } from '../helpers/tmp.js';
import { BootstrapExit, parseBootstrapOutput, renderBootstrap } from '../../src/remote/bootstrap.js';
import { launch } from '../../src/remote/launch.js';
import { connectHost, loadCredentials, type ConnectOptions, type SshCredentials } from '../../src/remote/ssh.js';

let sshd: Sshd;
let dir: string;
let credentials: SshCredentials;
const workerPids: number[] = [];
const servers: Server[] = [];

before(async () => {
  sshd = await startSshd();
  dir = makeTempDir('remote-ssh');
  credentials = await loadCredentials({ identityFiles: [sshd.clientKeyPath], agent: false });
});
after(async () => {
  for (const pid of workerPids) if (isAlive(pid)) killTree(pid);
  for (const server of servers) server.close();
  await runCleanups();
});

const keyLine = (name: string) => `${name} ${sshd.hostPublicKey}`;
function knownHosts(name: string, lines: string[]): string {
  const path = join(dir, name);
  writeFileSync(path, lines.map((l) => `${l}\n`).join(''));
  return path;
}
function otherKey(): string {
  const path = join(dir, `other-${Math.random().toString(36).slice(2)}`);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path]);
  return readFileSync(`${path}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
}
function options(files: string[], extra: Partial<ConnectOptions> = {}): ConnectOptions {
  return { credentials, hostKeys: { knownHostsFiles: files, acceptNew: false }, readyTimeoutMs: 5000, retryBaseMs: 50, ...extra };
}
const target = () => ({ host: '127.0.0.1', port: sshd.port, user: 'root' });

test('a known host key connects, and the connection runs commands', async () => {
  const result = await connectHost(target(), options([sshd.knownHostsPath]));
  assert.equal(result.status, 'connected');
  if (result.status !== 'connected') return;
  assert.equal((await result.ssh.execCommand('echo hello')).stdout, 'hello');
  assert.equal(result.hostKey.keyType, 'ssh-ed25519');
  result.ssh.dispose();
});

test('an unknown host is refused without accept-new, and nothing is written', async () => {
  const file = join(dir, 'empty-known-hosts');
  const result = await connectHost(target(), options([file]));
  assert.equal(result.status, 'host-key-unknown');
  assert.match(result.message, /is not known \(ssh-ed25519 SHA256:/);
  assert.match(result.hint ?? '', /--accept-new-host-keys/);
  assert.equal(existsSync(file), false);
});

test('accept-new records the key hashed, once, and the next connect matches it', async () => {
  const file = join(dir, 'accept', 'known_hosts');
  const recorded: string[] = [];
  const first = await connectHost(target(), options([file], { hostKeys: { knownHostsFiles: [file], acceptNew: true }, onHostKeyRecorded: (i) => recorded.push(i.fingerprint) }));
  assert.equal(first.status, 'connected');
  if (first.status === 'connected') {
    assert.equal(first.hostKeyRecorded, true);
    first.ssh.dispose();
  }
  assert.equal(recorded.length, 1);
  assert.match(readFileSync(file, 'utf8'), /^\|1\|\S+ ssh-ed25519 \S+\n$/);
  // OpenSSH itself accepts what we recorded.
  assert.match(execFileSync('ssh-keygen', ['-F', `[127.0.0.1]:${sshd.port}`, '-f', file], { encoding: 'utf8' }), /found: line 1/);
  const second = await connectHost(target(), options([file]));
  assert.equal(second.status, 'connected');
  if (second.status === 'connected') {
    assert.equal(second.hostKeyRecorded, false);
    second.ssh.dispose();
  }
});

test('a changed host key is refused loudly, even with accept-new', async () => {
  const file = knownHosts('changed', ['# old entry', `[127.0.0.1]:${sshd.port} ${otherKey()}`]);
  const result = await connectHost(target(), options([file], { hostKeys: { knownHostsFiles: [file], acceptNew: true } }));
  assert.equal(result.status, 'host-key-changed');
  assert.match(result.message, /HOST KEY OF root@127\.0\.0\.1:\d+ HAS CHANGED/);
  assert.match(result.message, new RegExp(`known_hosts has ${file}:2 \\(ssh-ed25519\\)`));
  assert.match(result.hint ?? '', /ssh-keygen -R/);
  assert.equal(readFileSync(file, 'utf8').split('\n').length, 3, 'nothing appended');
});

test('a revoked host key is refused', async () => {
  const file = knownHosts('revoked', [keyLine(`[127.0.0.1]:${sshd.port}`), `@revoked * ${sshd.hostPublicKey}`]);
  assert.equal((await connectHost(target(), options([file]))).status, 'host-key-revoked');
});

test('a key the host does not authorize is "auth failed"; a closed port is "unreachable"', async () => {
  const strangerPath = join(dir, 'stranger');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', strangerPath]);
  const stranger = await loadCredentials({ identityFiles: [strangerPath], agent: false });
  const denied = await connectHost(target(), { ...options([sshd.knownHostsPath]), credentials: stranger });
  assert.equal(denied.status, 'auth-failed');
  assert.equal(denied.attempts, 1, 'authentication failures are not retried');

  const closed = await closedPort();
  const unreachable = await connectHost({ host: '127.0.0.1', port: closed }, options([sshd.knownHostsPath]));
  assert.equal(unreachable.status, 'unreachable');
  assert.match(unreachable.message, /connection refused/);
});

test('connections the server drops before the handshake (MaxStartups) are retried with back-off', async () => {
  // A proxy that slams the door on the first two connections, as a busy sshd does.
  let seen = 0;
  const proxy = createServer((socket) => {
    seen += 1;
    if (seen <= 2) return socket.destroy();
    const upstream = connect(sshd.port, '127.0.0.1');
    socket.pipe(upstream).pipe(socket);
    socket.on('error', () => upstream.destroy());
    upstream.on('error', () => socket.destroy());
  });
  servers.push(proxy);
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const port = (proxy.address() as { port: number }).port;
  const file = knownHosts('proxy', [keyLine(`[127.0.0.1]:${port}`)]);
  const retries: string[] = [];
  const result = await connectHost({ host: '127.0.0.1', port, user: 'root' }, options([file], { onRetry: (r) => retries.push(r.reason) }));
  assert.equal(result.status, 'connected', retries.join('; '));
  assert.equal(result.attempts, 3);
  assert.equal(retries.length, 2);
  if (result.status === 'connected') result.ssh.dispose();
});

test('launch starts a detached worker per host, reports every host, and re-uploads nothing the second time', async () => {
  const job = join(dir, 'job');
  mkdirSync(join(job, 'logs'), { recursive: true });
  writeFileSync(join(job, 'job.json'), '{}');
  const tool = join(dir, 'piecework.mjs');
  // Stand-in for dist/piecework.mjs: records its argv in the job, then idles like a worker.
  writeFileSync(tool, "import { writeFileSync } from 'node:fs';\nconst a = process.argv.slice(2);\nwriteFileSync(`${a[1]}/argv-${process.pid}.json`, JSON.stringify(a));\nsetTimeout(() => {}, 120_000);\n");
  const closed = await closedPort();
  const events: string[] = [];
  const common = {
    job,
    command: ['sh', '-c', 'echo "$1"', 'x', "it's $(not run)"],
    identityFiles: [sshd.clientKeyPath],
    agent: false as const,
    knownHostsFiles: [sshd.knownHostsPath],
    localTool: tool,
    graceSeconds: 1,
    connectTimeoutMs: 5000,
    onEvent: (e: { type: string }) => events.push(e.type),
  };
  const report = await launch({
    ...common,
    hostSpecs: [
      { user: 'root', host: '127.0.0.1', port: sshd.port, lanes: 3, source: 'test:1' },
      { user: 'root', host: '127.0.0.1', port: closed, source: 'test:2' },
      // Same server, but known_hosts has no entry for this name: refused, not silently accepted.
      { user: 'root', host: 'localhost', port: sshd.port, source: 'test:3' },
    ],
  });
  assert.equal(report.kind, 'ssh');
  if (report.kind !== 'ssh' || report.dryRun) return;
  assert.deepEqual(report.hosts.map((h) => h.status), ['started', 'unreachable', 'host-key-unknown']);
  assert.equal(report.started, 1);
  assert.equal(report.failed, 2);
  const started = report.hosts[0]!;
  workerPids.push(started.pid!);
  assert.equal(started.lanes, 3);
  assert.equal(started.toolUploaded, true);
  assert.match(started.log ?? '', new RegExp(`^${job}/logs/launch-`));
  assert.ok(events.includes('host:uploading'));

  // The session is over; the worker is still there, with the exact argv.
  assert.ok(isAlive(started.pid!), 'the worker survived the end of the SSH session');
  const argv = JSON.parse(readFileSync(join(job, `argv-${started.pid}.json`), 'utf8')) as string[];
  assert.deepEqual(argv, ['work', job, '-j', '3', '--', 'sh', '-c', 'echo "$1"', 'x', "it's $(not run)"]);
  // Uploaded into the version-keyed cache under the SFTP home (the test server's root).
  assert.ok(existsSync(join(sshd.root, '.cache', 'piecework', '0.1.0', 'piecework.mjs')));
  assert.deepEqual(readdirSync(join(sshd.root, '.cache', 'piecework', '0.1.0')), ['piecework.mjs'], 'no temporary file left');

  const again = await launch({ ...common, hostSpecs: [{ user: 'root', host: '127.0.0.1', port: sshd.port, lanes: 1, source: 'test:1' }] });
  if (again.kind !== 'ssh' || again.dryRun) return assert.fail('expected an ssh report');
  workerPids.push(again.hosts[0]!.pid!);
  assert.equal(again.hosts[0]?.status, 'started');
  assert.equal(again.hosts[0]?.toolUploaded, false);
});

test('launch reports a host without the job as "no-job", with a hint', async () => {
  const report = await launch({
    job: join(dir, 'no-such-job'),
    command: ['true'],
    identityFiles: [sshd.clientKeyPath],
    agent: false,
    knownHostsFiles: [sshd.knownHostsPath],
    localTool: join(dir, 'piecework.mjs'),
    hostSpecs: [{ user: 'root', host: '127.0.0.1', port: sshd.port, source: 'test:1' }],
  });
  if (report.kind !== 'ssh' || report.dryRun) return assert.fail('expected an ssh report');
  assert.equal(report.hosts[0]?.status, 'no-job');
  assert.match(report.hosts[0]?.message ?? '', /no piecework job at/);
  assert.match(report.hosts[0]?.hint ?? '', /--remote-job|--mount/);
});

test('the bootstrap mounts the share over sshfs with keep-alive options, idempotently, and remounts a dead mount', async () => {
  // The "head" is the test sshd; its served folder holds a job. The bootstrap runs here directly.
  mkdirSync(join(sshd.root, 'jobs', 'm'), { recursive: true });
  writeFileSync(join(sshd.root, 'jobs', 'm', 'job.json'), '{}');
  const at = join(dir, 'mnt share'); // a space, to exercise quoting and /proc/mounts escapes
  registerCleanup(() => {
    if (mountPoints().includes(at)) unmountSync(at);
  }, `unmount ${at}`);
  const script = await renderBootstrap({
    action: 'check',
    job: join(at, 'jobs', 'm'),
    mount: {
      source: `root@127.0.0.1:${sshd.root}`,
      at,
      port: sshd.port,
      identity: sshd.clientKeyPath,
      knownHostsLines: [keyLine(`[127.0.0.1]:${sshd.port}`)],
      strict: 'yes',
    },
  });
  const env = { ...process.env, XDG_CACHE_HOME: join(dir, 'cache') };
  const run = () => spawnSync('sh', ['-s'], { input: script, encoding: 'utf8', env, timeout: 60_000 });

  const first = run();
  assert.equal(first.status, 0, first.stderr);
  assert.equal(parseBootstrapOutput(first.stdout)['mount'], `new ${at}`);
  const line = readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === at.replace(/ /g, '\\040'));
  assert.match(line ?? '', /fuse\.sshfs/);
  assert.ok(existsSync(join(at, 'jobs', 'm', 'job.json')));

  const second = run();
  assert.equal(second.status, 0, second.stderr);
  assert.equal(parseBootstrapOutput(second.stdout)['mount'], `already ${at}`);
  assert.equal(mountPoints().filter((m) => m === at).length, 1, 'mounted once');

  // sshfs dies (host suspended, OOM): the mount stays listed but answers ENOTCONN.
  const sshfsPid = Number(execFileSync('pgrep', ['-f', `sshfs .*${at}`], { encoding: 'utf8' }).trim().split('\n')[0]);
  process.kill(sshfsPid, 'SIGKILL');
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.throws(() => readdirSync(at), /ENOTCONN/);
  const third = run();
  assert.equal(third.status, 0, third.stderr);
  assert.equal(parseBootstrapOutput(third.stdout)['mount'], `new ${at}`);
  assert.ok(existsSync(join(at, 'jobs', 'm', 'job.json')));

  // A head whose key does not match is refused (strict checking), and reported as a mount failure.
  unmountSync(at);
  const wrong = (await renderBootstrap({
    action: 'check',
    job: join(at, 'jobs', 'm'),
    mount: { source: `root@127.0.0.1:${sshd.root}`, at, port: sshd.port, identity: sshd.clientKeyPath, knownHostsLines: [`[127.0.0.1]:${sshd.port} ${otherKey()}`], strict: 'yes' },
  }));
  const started = Date.now();
  const refused = spawnSync('sh', ['-s'], { input: wrong, encoding: 'utf8', env, timeout: 90_000 });
  assert.equal(refused.status, BootstrapExit.mountFailed, refused.stderr);
  assert.match(refused.stderr, /could not mount .*: Host key verification failed/);
  assert.ok(Date.now() - started < 5000, 'a refused key is not retried');
});

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
