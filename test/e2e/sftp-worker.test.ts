/**
 * Workers over SFTP (no mount) against a real OpenSSH server on loopback: a job end to end with
 * merge over sftp:// equal to the serial run; a reset link and a silent link (sshd stopped with
 * SIGSTOP) end the worker with a clear message within the documented bound, leaving no process;
 * a link that comes back in time lets the worker carry on; SIGTERM ends an SFTP worker within its
 * grace period, even on a silent link; a SIGKILLed SFTP worker's chunks are taken over by another
 * once its claims are stale, or at once by a rerun on the same host.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { collect, killGroup, piecework, runPiecework, startPiecework, type RunResult } from '../helpers/cli.js';
import { isAlive, listProcesses, markerEnv, processTree, registerCleanup, runCleanups } from '../helpers/cleanup.js';
import { startDelayProxy, type DelayProxy } from '../helpers/delay-proxy.js';
import { filesUnder } from '../helpers/job.js';
import { startSshd, type Sshd } from '../helpers/sshd.js';
import { makeTempDir } from '../helpers/tmp.js';
import { waitUntil } from '../helpers/wait.js';

/** The documented bounds (README, "The job folder"): a reset link at once, a silent one ~20 s. */
const RESET_BOUND_MS = 10_000;
const SILENT_BOUND_MS = 30_000;
/** A worker's grace period after SIGTERM (stop --now's default --grace is 10 s). */
const GRACE_MS = 10_000;

let sshd: Sshd;
let knownHosts: string;
let jobsDir: string;

before(async () => {
  sshd = await startSshd();
  jobsDir = makeTempDir('sftp-jobs');
  knownHosts = path.join(makeTempDir('sftp-kh'), 'known_hosts');
  writeFileSync(knownHosts, `[127.0.0.1]:${sshd.port} ${sshd.hostPublicKey}\n`);
});
after(() => runCleanups());

function env(): NodeJS.ProcessEnv {
  return { ...markerEnv, PIECEWORK_SSH_IDENTITY: sshd.clientKeyPath, PIECEWORK_KNOWN_HOSTS: knownHosts, SSH_AUTH_SOCK: '' };
}

/** Known under the server's host key at this port (a proxy's, or another server's). */
function knowPort(port: number, server: Sshd = sshd): void {
  appendFileSync(knownHosts, `[127.0.0.1]:${port} ${server.hostPublicKey}\n`);
}

function address(job: string, port = sshd.port): string {
  return `sftp://root@127.0.0.1:${port}${job}`;
}

/** A job of `count` one-line chunks; its local path and the serial run of `tr a-z A-Z`. */
function makeJob(name: string, count: number, stale = 60): { job: string; expected: string } {
  const input = path.join(makeTempDir(`${name}-in`), 'input.txt');
  const lines = Array.from({ length: count }, (_, i) => `line ${i} of ${name}\n`).join('');
  writeFileSync(input, lines);
  const job = path.join(jobsDir, name);
  execFileSync(process.execPath, [piecework, 'split', input, '--into', job, '--lines', '1', '--stale', String(stale), '--quiet']);
  return { job, expected: lines.toUpperCase() };
}

/** Start a worker (own process group, marked); killed with its group by the cleanups. */
function startWorker(args: string[]): { child: ChildProcess; result: Promise<RunResult>; stderr: () => string } {
  const child = startPiecework(['work', ...args], { env: env() });
  const pid = child.pid!;
  registerCleanup(() => killGroup(child), `kill worker group ${pid}`);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return { child, result: collect(child), stderr: () => stderr };
}

/** The worker's end, or a failure (with what it said so far) once `ms` have passed. */
async function exitWithin(worker: ReturnType<typeof startWorker>, ms: number): Promise<RunResult> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      worker.result,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the worker did not exit within ${ms} ms; its stderr:\n${worker.stderr()}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Processes left in a worker's process group (its commands), zombies aside. */
function groupLeft(pid: number): number[] {
  return listProcesses().filter((p) => p.pgid === pid && isAlive(p.pid)).map((p) => p.pid);
}

const lockFolders = (job: string) => {
  try {
    return execFileSync('find', [path.join(job, 'locks'), '-mindepth', '1', '-type', 'd'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  } catch {
    return [];
  }
};

function signalTree(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone
    }
  }
}

/** Freeze a server: the link goes silent (no reset, no answer). Thawed by the returned function and the cleanups. */
function freeze(server: Sshd): () => void {
  // sshd and every process below it (each connection has its own session), for SIGSTOP/SIGCONT.
  const pids = processTree(server.pid);
  signalTree(pids, 'SIGSTOP');
  const handle = registerCleanup(() => signalTree(pids, 'SIGCONT'), `SIGCONT sshd ${server.pid}`);
  return () => handle.run();
}

function assertClearMessage(result: RunResult, pattern: RegExp): void {
  assert.match(result.stderr, pattern, result.stderr);
  assert.match(result.stderr, /^piecework: .*\n {2}\S/m, 'one line, then a hint');
  assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
}

void test('a worker over SFTP runs a job end to end; status, verify and merge over sftp:// equal the serial run', async () => {
  const proxy: DelayProxy = await startDelayProxy({ targetPort: sshd.port, delayMs: 2 });
  registerCleanup(() => void proxy.close(), 'close proxy');
  knowPort(proxy.port);
  const { job, expected } = makeJob('e2e', 40);
  const remote = address(job, proxy.port);
  const { result } = startWorker([remote, '-j', '2', '--quiet', '--', 'tr', 'a-z', 'A-Z']);
  const worked = await result;
  assert.equal(worked.code, 0, worked.stderr);
  assert.equal(filesUnder(path.join(job, 'out')).length, 40);
  assert.deepEqual(filesUnder(path.join(job, 'locks')), [], 'claims released');
  assert.deepEqual(filesUnder(path.join(job, '.tmp')).filter((n) => !path.basename(n).startsWith('.')), [], 'no temp output left');
  const verify = await runPiecework(['verify', remote], { env: env() });
  assert.equal(verify.code, 0, verify.stderr);
  const merged = await runPiecework(['merge', remote], { env: env() });
  assert.equal(merged.code, 0, merged.stderr);
  assert.equal(merged.stdout, expected, 'merge over sftp:// equals the serial run');
  assert.equal((await runPiecework(['merge', job])).stdout, expected, 'and so does a local merge');
  const status = await runPiecework(['status', remote, '--json'], { env: env() });
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /"done":\s*40/);
  // A worker refused by a STOP file measured its clock while it read the job: no probe is left.
  writeFileSync(path.join(job, 'STOP'), '{}\n');
  const refused = await runPiecework(['work', remote, '--', 'cat'], { env: env() });
  assert.equal(refused.code, 3, refused.stderr);
  assert.match(refused.stderr, /STOP file/);
  assert.deepEqual(filesUnder(job).filter((name) => path.basename(name).startsWith('.clock-')), [], 'clock probes removed');
  await proxy.close();
});

void test('over SFTP, out/ removed by hand is named itself; a missing TMPDIR is named as the local temp folder; nothing is committed', async () => {
  const { job } = makeJob('removed-out', 3);
  rmSync(path.join(job, 'out'), { recursive: true });
  const work = await runPiecework(['work', address(job), '-q', '--', 'cat'], { env: env() });
  assert.equal(work.code, 1, work.stderr);
  // Before: the output being renamed, out/000001, as if a file were missing.
  assert.ok(work.stderr.includes(`part of the job folder is missing (${path.join(job, 'out')}):`), work.stderr);
  assert.doesNotMatch(work.stderr, /\n\s+at |this is a bug/);
  const { job: other } = makeJob('no-tmpdir', 2);
  const tmp = await runPiecework(['work', address(other), '-q', '--', 'cat'], { env: { ...env(), TMPDIR: path.join(jobsDir, 'no-such-tmp') } });
  assert.equal(tmp.code, 1, tmp.stderr);
  assert.match(tmp.stderr, /cannot make the staging folder for outputs in the local temp folder .*no-such-tmp \(ENOENT\)/);
  assert.deepEqual(filesUnder(path.join(other, 'out')), []);
  assert.deepEqual(filesUnder(path.join(other, 'locks')), []);
});

void test('merge over sftp:// reads the next outputs while it writes one (not one output\'s round trips after another), in order, with a large output among small ones', async () => {
  const { job, expected } = makeJob('read-ahead', 120);
  // Outputs as a worker would commit them; one of 3 MiB (more than a read's piece, read ahead only in part).
  const big = 'x'.repeat(3 * 1024 * 1024 - 1) + '\n';
  const outputs = expected.split(/(?<=\n)/);
  outputs[57] = big;
  outputs.forEach((text, i) => writeFileSync(path.join(job, 'out', String(i).padStart(6, '0')), text));
  const merged = await runPiecework(['merge', address(job), '-o', path.join(makeTempDir('read-ahead-out'), 'merged')], { env: { ...env(), PIECEWORK_SFTP_TRACE: '1' } });
  assert.equal(merged.code, 0, merged.stderr);
  // The trace: "sftp-trace SENT ANSWERED open PATH" per request; how many output opens were out at once.
  const opens = merged.stderr.split('\n').map((line) => line.split(' ')).filter((f) => f[0] === 'sftp-trace' && f[3] === 'open' && f[4]?.includes('/out/')).map((f) => [Number(f[1]), Number(f[2])] as const);
  assert.equal(opens.length, 120, 'each output opened once');
  const mostAtOnce = Math.max(...opens.map(([sent]) => opens.filter(([s, answered]) => s <= sent && answered > sent).length));
  assert.ok(mostAtOnce > 1, `opens in flight at once: ${mostAtOnce}`);
  const stdout = await runPiecework(['merge', address(job)], { env: env() });
  assert.equal(stdout.code, 0, stdout.stderr);
  assert.equal(stdout.stdout, outputs.join(''), 'every output once, in chunk order, the large one whole');
});

void test('a reset link (the proxy killed): the worker exits 4 with a clear message at once and leaves no process', async (t) => {
  const proxy = await startDelayProxy({ targetPort: sshd.port, delayMs: 0 });
  registerCleanup(() => void proxy.close(), 'close proxy');
  knowPort(proxy.port);
  const { job } = makeJob('reset', 6);
  const worker = startWorker([address(job, proxy.port), '-j', '2', '--', 'sleep', '120']);
  const { child } = worker;
  await waitUntil(() => lockFolders(job).length === 2, 20_000, 'two claims');
  const cut = Date.now();
  await proxy.close();
  const exited = await exitWithin(worker, RESET_BOUND_MS + 5000);
  const took = Date.now() - cut;
  assert.equal(exited.code, 4, exited.stderr);
  t.diagnostic(`reset link: exited ${took} ms after the cut`);
  assert.ok(took < RESET_BOUND_MS, `exited ${took} ms after the cut`);
  assertClearMessage(exited, /lost the SFTP connection/);
  await waitUntil(() => groupLeft(child.pid!).length === 0, 5000, 'the worker\'s commands to be gone');
});

void test('a silent link: a short freeze is ridden out, a long one ends the worker within the bound, leaving no process', async (t) => {
  const own = await startSshd({ clientKeyPath: sshd.clientKeyPath });
  knowPort(own.port, own);
  const { job, expected } = makeJob('silent', 30);
  const worker = startWorker([address(job, own.port), '-j', '2', '--', 'sh', '-c', 'sleep 0.3; tr a-z A-Z']);
  const { child } = worker;
  await waitUntil(() => filesUnder(path.join(job, 'out')).length >= 4, 20_000, 'the first outputs');
  // A freeze well within the deadlines (keep-alives: 3 × 5 s): the worker carries on.
  const thaw = freeze(own);
  const before = filesUnder(path.join(job, 'out')).length;
  await new Promise((r) => setTimeout(r, 4000)); // the length of the outage under test, not a wait for an event
  assert.ok(filesUnder(path.join(job, 'out')).length <= before + 2, 'nothing got through while frozen');
  thaw();
  await waitUntil(() => filesUnder(path.join(job, 'out')).length >= before + 4, 20_000, 'progress after the link came back');
  assert.equal(child.exitCode, null, 'the worker rode out the short freeze');
  // For good now.
  freeze(own);
  const cut = Date.now();
  const exited = await exitWithin(worker, SILENT_BOUND_MS + 5000);
  const took = Date.now() - cut;
  assert.equal(exited.code, 4, exited.stderr);
  t.diagnostic(`silent link: exited ${took} ms after the link went silent`);
  assert.ok(took < SILENT_BOUND_MS, `exited ${took} ms after the link went silent`);
  assertClearMessage(exited, /lost the SFTP connection|no answer/);
  await waitUntil(() => groupLeft(child.pid!).length === 0, 5000, 'the worker\'s commands to be gone');
  // The outputs committed before the cut are complete (merge of what is there equals the serial run's lines).
  for (const name of filesUnder(path.join(job, 'out'))) {
    assert.match(execFileSync('cat', [path.join(job, 'out', name)], { encoding: 'utf8' }), /^LINE \d+ OF SILENT\n$/);
  }
  assert.ok(expected.length > 0);
  own.stop();
});

void test('SIGTERM ends an SFTP worker within its grace period: claims released on a live link, exit anyway on a silent one', async (t) => {
  const { job } = makeJob('term', 6);
  const live = startWorker([address(job), '-j', '2', '--', 'sleep', '120']);
  await waitUntil(() => lockFolders(job).length === 2, 20_000, 'two claims');
  let signalled = Date.now();
  process.kill(live.child.pid!, 'SIGTERM');
  const first = await exitWithin(live, GRACE_MS + 5000);
  assert.equal(first.code, 143, first.stderr);
  assert.ok(Date.now() - signalled < GRACE_MS, 'exits within the grace period');
  assert.deepEqual(filesUnder(path.join(job, 'locks')), [], 'claims released');
  assert.deepEqual(lockFolders(job), []);
  assert.deepEqual(groupLeft(live.child.pid!), [], 'commands stopped');

  const own = await startSshd({ clientKeyPath: sshd.clientKeyPath });
  knowPort(own.port, own);
  const silent = startWorker([address(job, own.port), '-j', '2', '--', 'sleep', '120']);
  await waitUntil(() => lockFolders(job).length === 2, 20_000, 'two claims');
  freeze(own);
  signalled = Date.now();
  process.kill(silent.child.pid!, 'SIGTERM');
  const second = await exitWithin(silent, GRACE_MS + 5000);
  assert.equal(second.code, 143, second.stderr);
  const tookSilent = Date.now() - signalled;
  t.diagnostic(`SIGTERM on a silent link: exited after ${tookSilent} ms`);
  assert.ok(tookSilent < GRACE_MS, `exits within the grace period on a silent link (${tookSilent} ms)`);
  assert.match(second.stderr, /while stopping: .*SFTP/);
  await waitUntil(() => groupLeft(silent.child.pid!).length === 0, 5000, 'the worker\'s commands to be gone');
  own.stop();
});

/** Start a worker that looks like another host: a UTS namespace of its own with another hostname. */
function startWorkerOnOtherHost(args: string[]): { child: ChildProcess; result: Promise<RunResult> } {
  const wrapper = ['unshare', '--uts', 'sh', '-c', `hostname pw-other-${process.pid} && exec "$@"`, 'sh'];
  const child = startPiecework(['work', ...args], { env: env(), wrapper });
  registerCleanup(() => killGroup(child), `kill worker group ${child.pid}`);
  return { child, result: collect(child) };
}

void test('a SIGKILLed SFTP worker of another host: its chunks are taken over once its claims are stale; merge equals the serial run', async () => {
  const { job, expected } = makeJob('kill', 8, 3);
  const victim = startWorkerOnOtherHost([address(job), '-j', '2', '--', 'sh', '-c', 'sleep 120; cat']);
  await waitUntil(() => lockFolders(job).length === 2, 20_000, 'two claims');
  killGroup(victim.child, 'SIGKILL');
  await victim.result;
  const held = lockFolders(job).length;
  assert.equal(held, 2, 'the dead worker\'s claims stay behind');
  const killedAt = Date.now();
  const rescuer = startWorker([address(job), '-j', '2', '--quiet', '--', 'tr', 'a-z', 'A-Z']);
  const done = await rescuer.result;
  assert.equal(done.code, 0, done.stderr);
  assert.ok(Date.now() - killedAt >= 3000, 'the dead claims were taken over only once stale');
  assert.equal((await runPiecework(['merge', address(job)], { env: env() })).stdout, expected);
});

void test('a SIGKILLed SFTP worker of this host: a rerun takes its claims at once (not after the stale period) and completes', async () => {
  const { job, expected } = makeJob('kill-here', 4); // the default stale period: 60 s
  // Commands run long enough (> 1 s) for the claims to get their owner records.
  const victim = startWorker([address(job), '-j', '2', '--', 'sh', '-c', 'sleep 120; cat']);
  await waitUntil(() => lockFolders(job).length === 2 && filesUnder(path.join(job, 'locks')).filter((name) => name.endsWith('.owner')).length === 2, 20_000, 'two claims with their owner records');
  killGroup(victim.child, 'SIGKILL');
  await victim.result;
  assert.equal(lockFolders(job).length, 2, 'the dead worker left its claims');
  const began = Date.now();
  const rerun = startWorker([address(job), '-j', '2', '--quiet', '--', 'tr', 'a-z', 'A-Z']);
  const done = await exitWithin(rerun, 30_000);
  const seconds = (Date.now() - began) / 1000;
  assert.equal(done.code, 0, done.stderr);
  assert.ok(seconds < 15, `the rerun took ${seconds}s; the stale period is 60 s`);
  assert.deepEqual(filesUnder(path.join(job, 'locks')), [], 'no claim or owner record left');
  assert.deepEqual(filesUnder(path.join(job, '.tmp')).filter((name) => name.includes('dead-claim')), []);
  assert.equal((await runPiecework(['merge', address(job)], { env: env() })).stdout, expected);
});

void test('clocks disagree: an SFTP worker 5 minutes ahead takes no live claim; every chunk runs once', async () => {
  const { job, expected } = makeJob('skew', 6, 6);
  const ledger = path.join(makeTempDir('skew-ledger'), 'ledger');
  writeFileSync(ledger, '');
  const recording = (tag: string, seconds: number) => ['sh', '-c', `echo "$PIECEWORK_NAME ${tag}" >> ${ledger}; sleep ${seconds}; tr a-z A-Z`];
  const honest = startWorker([address(job), '-j', '2', '--quiet', '--', ...recording('honest', 8)]);
  await waitUntil(() => lockFolders(job).length === 2, 20_000, 'two claims of the honest worker');
  // Its claims are 0–8 s old by the server's clock, never stale (6 s after their last refresh):
  // a worker that trusted its own clock would see them 300 s old.
  const child = startPiecework(['work', address(job), '-j', '2', '--quiet', '--', ...recording('ahead', 0)], { env: env(), wrapper: ['faketime', '-f', '+300s'] });
  registerCleanup(() => killGroup(child), `kill worker group ${child.pid}`);
  const ahead = await collect(child);
  const first = await honest.result;
  assert.equal(first.code, 0, first.stderr);
  assert.equal(ahead.code, 0, ahead.stderr);
  const runs = new Map<string, string[]>();
  for (const line of execFileSync('cat', [ledger], { encoding: 'utf8' }).trim().split('\n')) {
    const [chunk, tag] = line.split(' ');
    runs.set(chunk!, [...(runs.get(chunk!) ?? []), tag!]);
  }
  assert.equal(runs.size, 6);
  for (const [chunk, tags] of runs) assert.equal(tags.length, 1, `${chunk} ran once (${tags.join(', ')})`);
  assert.ok([...runs.values()].filter((t) => t[0] === 'honest').length >= 2, 'the honest worker kept its chunks');
  assert.equal((await runPiecework(['merge', address(job)], { env: env() })).stdout, expected);
});

void test('launch --via sftp: bad combinations are usage errors with a hint, before anything connects', async () => {
  const cases: [string[], RegExp][] = [
    [['launch', '/tmp/x', '--hosts', 'h', '--via', 'sftp', '--', 'cat'], /--via sftp needs --head/],
    [['launch', '/tmp/x', '--hosts', 'h', '--head', 'me@h', '--', 'cat'], /--head and --head-identity need --via sftp/],
    [['launch', '/tmp/x', '--hosts', 'h', '--via', 'sftp', '--head', 'bad host', '--', 'cat'], /expected \[user@\]host\[:port\]/],
    [['launch', 'sftp://me@h/srv/job', '--hosts', 'h', '--via', 'sftp', '--head', 'me@h', '--', 'cat'], /already an sftp:\/\/ address/],
    [['launch', '/tmp/x', '--hosts', 'h', '--via', 'sftp', '--head', 'me@h', '--mount', 'me@h:/srv', '--at', '/mnt/x', '--', 'cat'], /--via sftp and --mount do not go together/],
  ];
  for (const [args, message] of cases) {
    const r = await runPiecework(args, { env: env() });
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

void test('work over sftp://: a usage error is reported before anything connects (the connection is made while the code loads)', async () => {
  // A listener that counts connections: the address is good, the options are not.
  let connections = 0;
  const listener = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  registerCleanup(() => void listener.close(), 'close listener');
  const port = (listener.address() as AddressInfo).port;
  const cases: [string[], RegExp][] = [
    [['-j', '5000', '--', 'cat'], /-j 5000: the number of lanes/],
    [['--success-exit', '1', '--warm', '--', 'cat'], /--success-exit does not apply to --warm/],
    [['--halt-after', '0', '--', 'cat'], /--halt-after 0/],
    [[], /no command to run/],
  ];
  for (const [args, message] of cases) {
    const r = await runPiecework(['work', `sftp://root@127.0.0.1:${port}/srv/job`, ...args], { env: env() });
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  assert.equal(connections, 0, 'no connection was made');
  listener.close();
});

void test('an SFTP worker whose lane folder in .tmp/ is removed while a command runs (a requeue took it for dead) leaves that chunk and carries on', async () => {
  const { job, expected } = makeJob('lane-removed', 4);
  // The first command to start removes its lane's folder in .tmp/ (as `verify --requeue` on
  // another host does to a worker it takes for dead), then ends normally.
  const marker = path.join(makeTempDir('lane-removed'), 'removed');
  const command = ['sh', '-c', `if [ ! -e ${marker} ]; then touch ${marker}; rm -rf ${job}/.tmp/*.0; fi; tr a-z A-Z`];
  const worker = startWorker([address(job), '-j', '1', '--', ...command]);
  const result = await exitWithin(worker, 60_000);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(filesUnder(path.join(job, 'out')).length, 4);
  const merged = await runPiecework(['merge', job]);
  assert.equal(merged.stdout, expected);
  // That chunk was left, not failed: no failure record, and the worker's log says why.
  assert.deepEqual(filesUnder(path.join(job, 'failed')), []);
  const log = filesUnder(path.join(job, 'logs')).map((f) => execFileSync('cat', [path.join(job, 'logs', f)], { encoding: 'utf8' })).join('');
  assert.match(log, /claim-lost/);
});
