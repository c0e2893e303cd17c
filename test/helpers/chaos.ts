/**
 * The chaos driver shared by the fault suite's chaos runs (test/faults/chaos*.test.ts): one job of
 * one-line chunks; workers SIGKILLed, SIGSTOPped past the stale period and resumed, `verify
 * --requeue` every few seconds and `merge --follow` alongside, for `chaosMs`; then one clean worker
 * finishes the job and the invariants are checked on the job folder (which is on this host):
 * exactly one complete, right output per chunk and nothing else in out/; merge and the follower
 * byte-identical to a serial run; no successful chunk charged a failed attempt.
 *
 * Where each process reaches the job is the caller's choice (a `Reach`: the job's path or an
 * sftp:// address, and the environment to run with), so the same chaos runs with workers on a
 * mount, over SFTP, or a mix of both on one job.
 *
 * Every process it starts is in its own process group, killed (after a SIGCONT) by the cleanups
 * even if the test fails. With PIECEWORK_CHAOS_KEEP=DIR, a failed run leaves the job folder (logs/
 * has every worker's log) and every process's stderr in DIR/<name>/ to read; add
 * PIECEWORK_SFTP_TRACE=1 for every SFTP request, PIECEWORK_CHAOS_SEEDS=N,… to replay a seed.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { collect, killGroup, runPiecework, startPiecework, type RunOptions, type RunResult } from './cli.js';
import { filesUnder } from './job.js';
import { registerCleanup } from './cleanup.js';

/** How one process reaches the job: its address (a path or sftp://…) and how to run it. */
export interface Reach {
  address: string;
  /** Shown in the summary and in failures: 'posix', 'sftp', 'sftp+proxy', … */
  kind: string;
  options?: RunOptions;
}

export interface ChaosOptions {
  /** Names the job and the input (carries the seed). */
  name: string;
  seed: number;
  /** A folder for the input and the job (the job is `root/job-<name>`). */
  root: string;
  chunks?: number;
  staleSeconds?: number;
  chaosMs?: number;
  /** The n-th worker started (0, 1, …), given the job's local path. */
  worker: (job: string, n: number) => Reach;
  /** The n-th `verify --requeue`. Default: the job's path. */
  verify?: (job: string, n: number) => Reach;
  /** The `merge --follow` that runs alongside. Default: the job's path. */
  follower?: (job: string) => Reach;
  /** The clean worker that finishes the job after the chaos. Default: the job's path. */
  finisher?: (job: string) => Reach;
  /** Where a line of summary goes (t.diagnostic). */
  report?: (line: string) => void;
}

export interface ChaosSummary {
  workers: Record<string, number>;
  kills: number;
  freezes: number;
  requeues: number;
  /** Outputs in out/ when the chaos ended, and how long the finisher then took. */
  doneAfterChaos: number;
  /** Seconds into the chaos when every chunk had its output, if it came to that. */
  completeAt?: number;
  finishSeconds: number;
  /** Outputs each kind of worker logged as committed (the finisher aside; a SIGKILL loses up to a second of log lines). */
  committed: Record<string, number>;
  /** Attempts the workers logged as `claim-lost` (taken over or requeued under them): output dropped. */
  claimsLost: number;
  seconds: number;
}

/** The seeds to run: PIECEWORK_CHAOS_SEEDS=7,8 replays others than a file's own. */
export function chaosSeeds(defaults: number[]): number[] {
  const given = process.env['PIECEWORK_CHAOS_SEEDS'];
  return given ? given.split(',').map(Number) : defaults;
}

/** A small deterministic generator (mulberry32): a failing seed can be replayed. */
export function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
// Each chunk takes a little while, so kills land mid-command as often as between commands.
const command = ['sh', '-c', 'sleep 0.0$(($$ % 5)); cat'];
const local = (job: string): Reach => ({ address: job, kind: 'posix' });

interface Started {
  n: string;
  reach: Reach;
  child: ChildProcess;
  result: Promise<RunResult>;
  startedAt: number;
  /** Until when it is frozen (SIGSTOP), if it was. */
  frozenUntil?: number;
}

/** Start a piecework process in its own group; killed with its group (thawed first) by the cleanups. */
function start(label: string, reach: Reach, args: string[]): Started {
  const child = startPiecework(args, reach.options);
  registerCleanup(() => {
    killGroup(child, 'SIGCONT');
    killGroup(child, 'SIGKILL');
  }, `kill chaos ${label} group ${child.pid}`);
  return { n: label, reach, child, result: collect(child), startedAt: Date.now() };
}

const aliveNow = (s: Started) => s.child.exitCode === null && s.child.signalCode === null;

export async function runChaos(o: ChaosOptions): Promise<ChaosSummary> {
  const chunks = o.chunks ?? 240;
  const stale = o.staleSeconds ?? 3;
  const chaosMs = o.chaosMs ?? 15_000;
  const rand = random(o.seed);
  const began = Date.now();
  const serial = Array.from({ length: chunks }, (_, i) => `line ${i}\n`).join('');
  const input = path.join(o.root, `in-${o.name}.txt`);
  writeFileSync(input, serial);
  const split = await runPiecework(['split', input, '--lines', '1', '--stale', String(stale), '--into', path.join(o.root, `job-${o.name}`)]);
  assert.equal(split.code, 0, split.stderr);
  const job = split.stdout.trim();

  const everything: Started[] = [];
  const summary: ChaosSummary = { workers: {}, kills: 0, freezes: 0, requeues: 0, doneAfterChaos: 0, finishSeconds: 0, committed: {}, claimsLost: 0, seconds: 0 };
  try {
    const followReach = (o.follower ?? local)(job);
    const follow = start('follower', followReach, ['merge', followReach.address, '--follow']);
    everything.push(follow);

    const workers: Started[] = [];
    const startWorker = () => {
      const n = workers.length;
      const reach = o.worker(job, n);
      const worker = start(`worker-${n}`, reach, ['work', reach.address, '-j', '2', '-q', '--', ...command]);
      summary.workers[reach.kind] = (summary.workers[reach.kind] ?? 0) + 1;
      workers.push(worker);
      everything.push(worker);
    };
    for (let i = 0; i < 3; i++) startWorker();

    const requeues: Started[] = [];
    const until = Date.now() + chaosMs;
    while (Date.now() < until) {
      await sleep(300 + rand() * 900);
      if (summary.completeAt === undefined && filesUnder(path.join(job, 'out')).length === chunks) summary.completeAt = Math.round((Date.now() - began) / 100) / 10;
      const alive = workers.filter(aliveNow);
      const action = rand();
      if (action < 0.35 && alive.length > 0) {
        killGroup(alive[Math.floor(rand() * alive.length)]!.child, 'SIGKILL');
        summary.kills++;
        startWorker();
      } else if (action < 0.55 && alive.length > 0) {
        // Frozen past the stale period: its claims are taken over; when it wakes it must not
        // commit over the new holder or record a failure for a chunk that succeeded. Among the
        // workers not frozen already and up for a second (one still connecting holds no claim).
        const now = Date.now();
        const awake = alive.filter((w) => (w.frozenUntil ?? 0) < now && now - w.startedAt > 1000);
        const pool = awake.length > 0 ? awake : alive;
        const victim = pool[Math.floor(rand() * pool.length)]!;
        killGroup(victim.child, 'SIGSTOP');
        victim.frozenUntil = now + (stale + 1.5) * 1000;
        summary.freezes++;
        setTimeout(() => killGroup(victim.child, 'SIGCONT'), (stale + 1.5) * 1000).unref();
      } else if (action < 0.8) {
        const reach = (o.verify ?? local)(job, requeues.length);
        const requeue = start(`verify-${requeues.length}`, reach, ['verify', reach.address, '--requeue']);
        requeues.push(requeue);
        everything.push(requeue);
        summary.requeues++;
      } else {
        startWorker();
      }
    }
    for (const worker of workers) killGroup(worker.child, 'SIGCONT');
    await Promise.all(requeues.map((r) => r.result));

    summary.doneAfterChaos = filesUnder(path.join(job, 'out')).length;
    const finishBegan = Date.now();
    // A last clean worker finishes whatever the chaos left: stale claims are taken over.
    const reach = (o.finisher ?? local)(job);
    const finisher = start('finisher', reach, ['work', reach.address, '-j', '2', '-q', '--', ...command]);
    everything.push(finisher);
    const finish = await finisher.result;
    summary.finishSeconds = Math.round((Date.now() - finishBegan) / 100) / 10;
    assert.equal(finish.code, 0, `the job completes after the chaos (${reach.kind} worker): ${finish.stderr}`);
    for (const worker of workers) killGroup(worker.child, 'SIGKILL');
    for (const worker of workers) {
      // Killed by the chaos (or at the end), or done: no worker gave up on its own (a lost link, a crash).
      const r = await worker.result;
      assert.ok(r.signal === 'SIGKILL' || r.code === 0, `worker ${worker.n} (${worker.reach.kind}) ended by itself with ${r.code ?? r.signal}: ${r.stderr}`);
      const log = readLog(job, worker.child.pid!);
      summary.committed[worker.reach.kind] = (summary.committed[worker.reach.kind] ?? 0) + (log.match(/ done /g) ?? []).length;
      summary.claimsLost += (log.match(/ claim-lost /g) ?? []).length;
    }

    const outputs = filesUnder(path.join(job, 'out'));
    assert.equal(outputs.length, chunks, `one output per chunk, nothing else in out/: ${outputs.filter((n) => !/^\d+$/.test(n)).join(', ')}`);
    for (const name of outputs) assert.equal(readFileSync(path.join(job, 'out', name), 'utf8'), `line ${Number(name)}\n`, `out/${name} is complete and right`);
    const merged = await runPiecework(['merge', job]);
    assert.equal(merged.code, 0, merged.stderr);
    assert.equal(merged.stdout, serial, 'merge is byte-identical to a serial run');
    const followed = await follow.result;
    assert.equal(followed.code, 0, `merge --follow (${follow.reach.kind}): ${followed.stderr}`);
    assert.equal(followed.stdout, serial, `merge --follow (${follow.reach.kind}) saw every output once, in order`);
    for (const record of readdirSync(path.join(job, 'failed'))) {
      const failure = JSON.parse(readFileSync(path.join(job, 'failed', record), 'utf8')) as { reason: string };
      assert.doesNotMatch(failure.reason, /wrote no output/, `no successful chunk charged a failure (${record}: ${failure.reason})`);
    }
    // Each requeue judged the job (0 complete, 3 incomplete); none failed (a lost link, a crash).
    for (const requeue of requeues) {
      const r = await requeue.result;
      assert.ok(r.code === 0 || r.code === 3, `verify --requeue (${requeue.reach.kind}) exited ${r.code ?? r.signal}: ${r.stderr}`);
    }
  } catch (error) {
    await keepForReading(o.name, job, everything);
    throw error;
  }
  summary.seconds = Math.round((Date.now() - began) / 100) / 10;
  o.report?.(`${o.name}: ${JSON.stringify(summary)}`);
  return summary;
}

/** A worker's log (logs/<host>.<pid>.log), or '' when it wrote none. */
function readLog(job: string, pid: number): string {
  const name = readdirSync(path.join(job, 'logs')).find((file) => file.endsWith(`.${pid}.log`));
  return name === undefined ? '' : readFileSync(path.join(job, 'logs', name), 'utf8');
}

/** On failure, with PIECEWORK_CHAOS_KEEP=DIR: the job's logs and every process's stderr, kept. */
async function keepForReading(name: string, job: string, started: Started[]): Promise<void> {
  const keep = process.env['PIECEWORK_CHAOS_KEEP'];
  if (!keep) return;
  const dir = path.join(keep, name);
  mkdirSync(dir, { recursive: true });
  for (const s of started) {
    killGroup(s.child, 'SIGCONT');
    killGroup(s.child, 'SIGKILL');
  }
  for (const s of started) {
    const r = await s.result;
    writeFileSync(path.join(dir, `${s.n}.${s.reach.kind}.stderr`), `${s.reach.address}\nexit ${r.code} ${r.signal}\n${r.stderr}`);
  }
  try {
    cpSync(job, path.join(dir, 'job'), { recursive: true });
  } catch {
    // what could be copied is there
  }
}
