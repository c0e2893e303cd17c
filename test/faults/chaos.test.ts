/**
 * The chaos run: workers SIGKILLed, SIGSTOPped past the stale period and resumed, `verify
 * --requeue` every few seconds and `merge --follow` alongside — then the invariants, for each of
 * several seeds: every chunk has exactly one complete output, merge and the follower are
 * byte-identical to a serial run, no successful chunk was charged a failed attempt.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { collect, runPiecework, startPiecework, type RunResult } from '../helpers/cli.js';
import { filesUnder } from '../helpers/job.js';
import { makeTempDir } from '../helpers/tmp.js';
import { runCleanups } from '../helpers/cleanup.js';

const root = makeTempDir('chaos');
const CHUNKS = 240;
const STALE_SECONDS = 3;
const CHAOS_MS = 15_000;
const SEEDS = [1, 2, 3];

const running = new Set<ChildProcess>();
after(async () => {
  for (const child of running) killGroup(child, 'SIGKILL');
  await runCleanups();
});

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // gone already
  }
}

/** A small deterministic generator (mulberry32): a failing seed can be replayed. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const serial = Array.from({ length: CHUNKS }, (_, i) => `line ${i}\n`).join('');
// Each chunk takes a little while, so kills land mid-command as often as between commands.
const command = ['sh', '-c', 'sleep 0.0$(($$ % 5)); cat'];

for (const seed of SEEDS) {
  test(`chaos, seed ${seed}: kills, freezes past the stale period, requeues and a follower — one output per chunk, merges equal a serial run`, async () => {
    const rand = random(seed);
    const input = path.join(root, `in-${seed}.txt`);
    await fs.writeFile(input, serial);
    const split = await runPiecework(['split', input, '--lines', '1', '--stale', String(STALE_SECONDS), '--into', path.join(root, `job-${seed}`)]);
    assert.equal(split.code, 0, split.stderr);
    const job = split.stdout.trim();

    const follower = startPiecework(['merge', job, '--follow']);
    running.add(follower);
    const followed = collect(follower);
    const workers: ChildProcess[] = [];
    const startWorker = () => {
      const worker = startPiecework(['work', job, '-j', '2', '-q', '--', ...command]);
      running.add(worker);
      void collect(worker).then(() => running.delete(worker));
      workers.push(worker);
    };
    for (let i = 0; i < 3; i++) startWorker();

    const requeues: Promise<RunResult>[] = [];
    const until = Date.now() + CHAOS_MS;
    while (Date.now() < until) {
      await sleep(300 + rand() * 900);
      const alive = workers.filter((w) => w.exitCode === null && w.signalCode === null);
      const action = rand();
      if (action < 0.35 && alive.length > 0) {
        killGroup(alive[Math.floor(rand() * alive.length)]!, 'SIGKILL');
        startWorker();
      } else if (action < 0.55 && alive.length > 0) {
        // Frozen past the stale period: its claims are taken over; when it wakes it must not
        // commit over the new holder or record a failure for a chunk that succeeded.
        const victim = alive[Math.floor(rand() * alive.length)]!;
        killGroup(victim, 'SIGSTOP');
        setTimeout(() => killGroup(victim, 'SIGCONT'), (STALE_SECONDS + 1.5) * 1000).unref();
      } else if (action < 0.8) {
        requeues.push(runPiecework(['verify', job, '--requeue']));
      } else {
        startWorker();
      }
    }
    for (const worker of workers) killGroup(worker, 'SIGCONT');
    await Promise.all(requeues);

    // A last clean worker finishes whatever the chaos left: stale claims are taken over.
    const finish = await runPiecework(['work', job, '-j', '2', '-q', '--', ...command]);
    assert.equal(finish.code, 0, `the job completes after the chaos: ${finish.stderr}`);
    for (const worker of workers) killGroup(worker, 'SIGKILL');

    const outputs = filesUnder(path.join(job, 'out'));
    assert.equal(outputs.length, CHUNKS, 'one output per chunk, nothing else in out/');
    for (const name of outputs) assert.equal(readFileSync(path.join(job, 'out', name), 'utf8'), `line ${Number(name)}\n`, `out/${name} is complete and right`);
    const merged = await runPiecework(['merge', job]);
    assert.equal(merged.code, 0, merged.stderr);
    assert.equal(merged.stdout, serial, 'merge is byte-identical to a serial run');
    const follow = await followed;
    running.delete(follower);
    assert.equal(follow.code, 0, follow.stderr);
    assert.equal(follow.stdout, serial, 'merge --follow saw every output once, in order');
    for (const record of readdirSync(path.join(job, 'failed'))) {
      const failure = JSON.parse(readFileSync(path.join(job, 'failed', record), 'utf8')) as { reason: string };
      assert.doesNotMatch(failure.reason, /wrote no output/, `no successful chunk charged a failure (${record}: ${failure.reason})`);
    }
  });
}
