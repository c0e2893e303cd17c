import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { split } from '../../src/core/split/split.js';
import { JobLayout } from '../../src/core/store/layout.js';
import { PosixJobStore } from '../../src/core/store/posix-store.js';
import { writeFileAtomic } from '../../src/core/store/atomic-write.js';
import { readManifest } from '../../src/core/manifest.js';
import { writeFailure, type FailureRecord } from '../../src/core/failures.js';
import type { Claim } from '../../src/core/store/job-store.js';
import type { HeartbeatRecord } from '../../src/core/heartbeat.js';
import type { MountClock } from '../../src/core/store/mount-clock.js';
import { JobMissingError } from '../../src/core/errors.js';
import { jobStatus } from '../../src/core/status.js';
import type { FailureState } from '../../src/core/inspect.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-status-${process.pid}-`));
const job = path.join(root, 'job');
const layout = new JobLayout(job);
const store = new PosixJobStore(job);
const MINUTE = 60_000;
// The mount's "now" for every reader in this file: half a minute into a minute, so the
// per-minute buckets and the rate window are easy to reason about.
const now = Math.floor(Date.now() / MINUTE) * MINUTE + 30_000;
const clock: MountClock = { offsetMs: 0, now: () => now };
const iso = (ms: number) => new Date(ms).toISOString();
let liveClaim: Claim | undefined;
let jobId = '';

function heartbeat(fields: Partial<HeartbeatRecord> & Pick<HeartbeatRecord, 'host' | 'pid'>): HeartbeatRecord {
  return {
    worker: `${fields.host}.${fields.pid}`,
    jobId,
    lanes: 2,
    command: ['cat'],
    version: '0.1.0',
    state: 'running',
    startedAt: iso(now - 10 * MINUTE),
    updatedAt: iso(now),
    intervalMs: 5000,
    clockOffsetMs: 0,
    done: 0,
    failed: 0,
    recent: [],
    current: [],
    ...fields,
  };
}

function failure(chunk: string, attempts: number, reason: string, at: number): FailureRecord {
  return { chunk, attempts, maxAttempts: 3, exitCode: 1, signal: null, timedOut: false, reason, stderrTail: `trouble in ${chunk}\n`, host: 'hostA', worker: 'hostA.1', at: iso(at), command: ['cat'] };
}

before(async () => {
  const input = path.join(root, 'in.txt');
  await fs.writeFile(input, Array.from({ length: 20 }, (_, i) => `line ${i}`).join('\n') + '\n');
  await split({ into: job, inputs: [input], mode: 'lines', size: 1 });
  jobId = (await readManifest(store)).id;
  for (let i = 0; i < 8; i++) await fs.writeFile(layout.outputPath(`00000${i}`), 'out\n');

  // A live claim, taken the way workers take it; and a stale one whose holder went silent.
  const claims = await store.claims({ staleMs: 60_000, updateMs: 15_000 }, { offsetMs: 0, now: Date.now }, { workerId: 'hostA.1', host: 'hostA', pid: 1, bootId: '' });
  liveClaim = await claims.claim('000010', 0);
  await fs.mkdir(layout.lockPath('000011'));
  await fs.writeFile(layout.ownerPath('000011'), `${'f'.repeat(32)}\n${JSON.stringify({ token: 'f'.repeat(32), worker: 'hostC.3', host: 'hostC', pid: 3, lane: 1, chunk: '000011', claimedAt: iso(now - 20 * MINUTE) })}\n`);
  const silentSince = new Date(now - 10 * MINUTE); // by the mount's clock, which status reads
  await fs.utimes(layout.lockPath('000011'), silentSince, silentSince);

  await writeFailure(store, failure('000012', 3, 'exit 1', now - 3 * MINUTE));
  await writeFailure(store, failure('000013', 3, 'exit 1', now - 2 * MINUTE));
  await writeFailure(store, failure('000014', 1, 'killed by SIGKILL', now - MINUTE));
  // A failure record left behind by a chunk a later attempt finished: history, not a failure.
  await writeFailure(store, failure('000001', 1, 'exit 2', now - 4 * MINUTE));

  const thisMinute = Math.floor(now / MINUTE) * MINUTE;
  const records = [
    heartbeat({ host: 'hostA', pid: 1, lanes: 4, startedAt: iso(now - 2 * MINUTE), done: 90, recent: [[thisMinute - MINUTE, 60], [thisMinute, 30]], current: [{ chunk: '000010', lane: 0, since: iso(now - 1000) }, { chunk: '000015', lane: 1, since: iso(now - 500) }] }),
    heartbeat({ host: 'hostB', pid: 2, state: 'exited', exitReason: 'complete', startedAt: iso(now - 3 * MINUTE), updatedAt: iso(now - 90_000), done: 30, recent: [[thisMinute - MINUTE, 30]] }),
    heartbeat({ host: 'hostC', pid: 3, updatedAt: iso(now - 10 * MINUTE), done: 50, failed: 2, recent: [[thisMinute - 11 * MINUTE, 50]] }),
    // A worker of the job this folder held before `split --force`: not counted anywhere.
    heartbeat({ host: 'hostD', pid: 4, jobId: 'an-older-job', done: 999, recent: [[thisMinute, 999]] }),
  ];
  for (const record of records) await writeFileAtomic(layout.heartbeatPath(record.worker), JSON.stringify(record) + '\n', { tempDir: layout.tmpDir });
});

after(async () => {
  await liveClaim?.release();
  await fs.rm(root, { recursive: true, force: true });
});

test('counts every chunk exactly once: done, running, stale, failed for good, pending (retries included)', async () => {
  const status = await jobStatus(job, { clock });
  assert.deepEqual(status.counts, { chunks: 20, done: 8, running: 1, stale: 1, failed: 2, pending: 8, retrying: 1 });
  assert.equal(status.complete, false);
  assert.equal(status.splitComplete, true);
  assert.equal(status.checkedAt, iso(now));
});

test('rates come from the heartbeats’ per-minute counts, summed over workers; the ETA from the rate', async () => {
  const status = await jobStatus(job, { clock });
  // hostA: 90 chunks since it started 2 minutes ago; hostB: 30 in the 3 minutes it ran. Together
  // 120 chunks over the 3 minutes since the first of them started.
  assert.equal(status.rate.chunksPerSecond, 120 / 180);
  assert.equal(status.rate.windowMinutes, 5);
  // 20 chunks - 8 done - 2 failed for good = 10 left.
  assert.equal(status.etaSeconds, 10 / (120 / 180));
  assert.equal(status.finishesAt, iso(now + 15_000));
  assert.deepEqual(status.throughput.slice(-2), [{ minute: Math.floor(now / MINUTE) * MINUTE - MINUTE, done: 90 }, { minute: Math.floor(now / MINUTE) * MINUTE, done: 30 }]);
  assert.equal(status.throughput.length, 15);
});

test('the host table says who is alive, who exited and who went silent, with lanes, done and rate', async () => {
  const { hosts, workers } = await jobStatus(job, { clock });
  assert.deepEqual(
    hosts.map((h) => [h.host, h.state, h.workers.alive, h.lanes, h.busy, h.done, h.failedAttempts]),
    [
      ['hostA', 'alive', 1, 4, 2, 90, 0],
      ['hostB', 'exited', 0, 0, 0, 30, 0],
      ['hostC', 'dead', 0, 0, 0, 50, 2],
    ],
  );
  assert.equal(hosts[0]!.chunksPerSecond, 90 / 120);
  assert.equal(hosts[1]!.chunksPerSecond, 30 / 180);
  assert.equal(hosts[2]!.chunksPerSecond, 0);
  assert.deepEqual(hosts.map((h) => h.lastHeartbeatSeconds), [0, 90, 600]);
  assert.deepEqual(workers, { alive: 1, exited: 1, dead: 1, lanes: 4 });
});

test('stale claims name their holder; failure reasons are ranked; recent failures carry stderr', async () => {
  const status = await jobStatus(job, { clock, listLimit: 2 });
  assert.deepEqual(status.staleClaims.map((c) => [c.chunk, c.owner?.host, c.owner?.pid]), [['000011', 'hostC', 3]]);
  assert.ok(status.staleClaims[0]!.ageSeconds >= 590, `age ${status.staleClaims[0]!.ageSeconds}`);
  assert.deepEqual(status.failureReasons, [
    { reason: 'exit 1', chunks: 2, failedForGood: 2, example: '000012' },
    { reason: 'killed by SIGKILL', chunks: 1, failedForGood: 0, example: '000014' },
  ]);
  assert.deepEqual(status.recentFailures.map((f) => f.chunk), ['000014', '000013']);
  assert.equal(status.recentFailures[0]!.stderrTail, 'trouble in 000014\n');
});

test('a claim held longer than --stale counts as stale', async () => {
  // The live claim is fresh by the job's 60 s; by the mount's clock plus a minute it is not.
  const later: MountClock = { offsetMs: 0, now: () => Date.now() + 2 * MINUTE };
  const status = await jobStatus(job, { clock: later, staleSeconds: 60 });
  assert.equal(status.counts.running, 0);
  assert.equal(status.counts.stale, 2);
});

test('a folder without job.json is a missing job (exit status 4), not an empty one', async () => {
  await assert.rejects(jobStatus(path.join(root, 'nothing-here'), { clock }), (error: unknown) => error instanceof JobMissingError && error.exitStatus === 4);
});

test('a repeating reader keeps records of chunks failed for good, re-reads retrying ones and forgets requeued ones', async () => {
  const failureCache = new Map<string, FailureState>();
  await jobStatus(job, { clock, failureCache });
  assert.deepEqual([...failureCache.keys()].sort(), ['000012', '000013']);
  // A final record is not read again (workers never touch it again)…
  await writeFailure(store, { ...failure('000012', 3, 'exit 1', now), reason: 'rewritten' });
  // …a retrying one is, and a removed one (verify --requeue) is forgotten.
  await writeFailure(store, failure('000014', 2, 'killed by SIGKILL', now));
  await fs.rm(layout.failurePath('000013'));
  try {
    const status = await jobStatus(job, { clock, failureCache });
    assert.deepEqual(status.failureReasons.map((r) => [r.reason, r.chunks]), [['exit 1', 1], ['killed by SIGKILL', 1]]);
    assert.equal(status.recentFailures.find((f) => f.chunk === '000014')!.attempts, 2);
    assert.deepEqual([...failureCache.keys()], ['000012']);
  } finally {
    await writeFailure(store, failure('000012', 3, 'exit 1', now - 3 * MINUTE));
    await writeFailure(store, failure('000013', 3, 'exit 1', now - 2 * MINUTE));
    await writeFailure(store, failure('000014', 1, 'killed by SIGKILL', now - MINUTE));
  }
});
