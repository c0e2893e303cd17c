/**
 * The state of a job, computed from the folder alone: what verify reports and status shows.
 * One listing per folder; files are read only for the few chunks that need a reason (claims,
 * failures of chunks without output).
 */
import { promises as fs } from 'node:fs';
import { errorCode } from './errors.js';
import { isExhausted, readFailure, type FailureRecord } from './failures.js';
import { isWorkerAlive, readHeartbeats, type HeartbeatRecord } from './heartbeat.js';
import { parseTempName, workerIdFor, type JobLayout } from './job-folder.js';
import { readManifest, type JobManifest } from './manifest.js';
import { fixedMountClock, measureMountClock, type MountClock } from './mount-clock.js';
import { compareNatural } from './natural-order.js';
import { readOwnerRecord, type OwnerRecord } from './claim.js';
import { exists, listChunks, listClaims, listFailures, listOutputs, listTempFiles } from './scan.js';

export interface ClaimState {
  chunk: string;
  /** Seconds since the holder last refreshed it, by the mount's clock. */
  ageSeconds: number;
  owner?: OwnerRecord;
}

export interface FailureState {
  chunk: string;
  attempts: number;
  maxAttempts: number;
  final: boolean;
  reason: string;
  host: string;
  at: string;
  stderrTail: string;
}

export interface JobState {
  job: string;
  manifest: JobManifest;
  /** Chunks in natural order. */
  chunks: string[];
  /** chunk → output path relative to out/. */
  outputs: Map<string, string>;
  missing: string[];
  running: ClaimState[];
  stale: ClaimState[];
  /** Failure records of chunks that have no output. */
  failed: FailureState[];
  /** Temp files of workers that are not alive (a crash leftover). */
  leftoverTemp: string[];
  /** Temp files of live workers (chunks being written). */
  activeTemp: number;
  heartbeats: HeartbeatRecord[];
  stopRequested: boolean;
  clock: MountClock;
  staleSeconds: number;
}

/** The mount's clock if we may write a probe there; otherwise ours (a read-only view). */
export async function mountClockFor(layout: JobLayout): Promise<MountClock> {
  try {
    return await measureMountClock(layout.tmpDir, workerIdFor('inspect', process.pid));
  } catch {
    return fixedMountClock(0);
  }
}

export async function inspectJob(layout: JobLayout, options: { staleSeconds?: number; clock?: MountClock } = {}): Promise<JobState> {
  const manifest = await readManifest(layout);
  const clock = options.clock ?? (await mountClockFor(layout));
  const staleSeconds = options.staleSeconds ?? manifest.staleSeconds;
  const [chunks, outputs, claims, failures, temps, heartbeats, stopRequested] = await Promise.all([
    listChunks(layout),
    listOutputs(layout),
    listClaims(layout),
    listFailures(layout),
    listTempFiles(layout),
    readHeartbeats(layout),
    exists(layout.stopFile),
  ]);
  const now = clock.now();
  const missing = chunks.filter((c) => !outputs.has(c));

  const running: ClaimState[] = [];
  const stale: ClaimState[] = [];
  await Promise.all(
    [...claims].map(async (chunk) => {
      let mtimeMs: number;
      try {
        mtimeMs = (await fs.stat(layout.lockPath(chunk))).mtimeMs;
      } catch (error) {
        if (errorCode(error) === 'ENOENT') return; // released since the listing
        throw error;
      }
      const state: ClaimState = { chunk, ageSeconds: Math.max(0, (now - mtimeMs) / 1000), owner: await readOwnerRecord(layout.ownerPath(chunk)) };
      (state.ageSeconds > staleSeconds ? stale : running).push(state);
    }),
  );

  const failed: FailureState[] = [];
  const failedWithoutOutput = [...failures].filter((c) => !outputs.has(c));
  await Promise.all(
    failedWithoutOutput.map(async (chunk) => {
      const record = await readFailure(layout, chunk);
      if (record) failed.push(failureState(record));
    }),
  );

  const alive = new Set(heartbeats.filter((h) => isWorkerAlive(h, now, staleSeconds * 1000)).map((h) => h.worker));
  let activeTemp = 0;
  const leftoverTemp: string[] = [];
  for (const name of temps) {
    const parsed = parseTempName(name);
    if (parsed && alive.has(workerIdFor(parsed.host, parsed.pid))) activeTemp++;
    else leftoverTemp.push(name);
  }

  const byName = (a: { chunk: string }, b: { chunk: string }) => compareNatural(a.chunk, b.chunk);
  running.sort(byName);
  stale.sort(byName);
  failed.sort(byName);
  return { job: layout.root, manifest, chunks, outputs, missing, running, stale, failed, leftoverTemp, activeTemp, heartbeats, stopRequested, clock, staleSeconds };
}

function failureState(record: FailureRecord): FailureState {
  return {
    chunk: record.chunk,
    attempts: record.attempts,
    maxAttempts: record.maxAttempts,
    final: isExhausted(record),
    reason: record.reason,
    host: record.host,
    at: record.at,
    stderrTail: record.stderrTail,
  };
}

export function isComplete(state: JobState): boolean {
  return state.manifest.complete && state.missing.length === 0;
}
