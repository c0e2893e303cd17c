/**
 * The full state of a job, computed from the folder alone: what verify reports. It is the status
 * scan (one listing per folder, bounded per-file reads) plus what verify needs on top: chunks in
 * natural order, the missing ones, and temp files told apart by whether their writer is alive.
 */
import { isWorkerAlive, type HeartbeatRecord } from './heartbeat.js';
import { parseLaneTempDir, parseTempName, workerIdFor, type JobLayout } from './job-folder.js';
import type { JobManifest } from './manifest.js';
import type { MountClock } from './mount-clock.js';
import { listLaneTempDirs, listStaleWriteTemps, listTempFiles } from './scan.js';
import { orderChunks, scanForStatus, type ClaimState, type FailureState } from './status-scan.js';
import { compareNatural } from './natural-order.js';

export { mountClockFor, type ClaimState, type FailureState } from './status-scan.js';

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
  /** Lane temp folders (relative to .tmp/) of workers that are not alive. */
  leftoverTempDirs: string[];
  heartbeats: HeartbeatRecord[];
  stopRequested: boolean;
  clock: MountClock;
  staleSeconds: number;
}

export async function inspectJob(layout: JobLayout, options: { staleSeconds?: number; clock?: MountClock } = {}): Promise<JobState> {
  const [scan, temps, laneDirs] = await Promise.all([scanForStatus(layout, options), listTempFiles(layout), listLaneTempDirs(layout)]);
  const crashedWrites = await listStaleWriteTemps(layout, scan.now, scan.staleSeconds * 1000);
  const chunks = orderChunks(scan.chunks);
  const missing = chunks.filter((c) => !scan.done.has(c));
  const alive = new Set(scan.heartbeats.filter((h) => isWorkerAlive(h, scan.now, scan.staleSeconds * 1000)).map((h) => h.worker));
  let activeTemp = 0;
  const leftoverTemp: string[] = [];
  for (const name of temps) {
    const parsed = parseTempName(name);
    if (parsed && alive.has(workerIdFor(parsed.host, parsed.pid))) activeTemp++;
    else leftoverTemp.push(name);
  }
  leftoverTemp.push(...crashedWrites);
  const leftoverTempDirs = laneDirs.filter((name) => {
    const owner = parseLaneTempDir(name);
    return owner !== undefined && !alive.has(workerIdFor(owner.host, owner.pid));
  });
  const byName = (a: { chunk: string }, b: { chunk: string }) => compareNatural(a.chunk, b.chunk);
  return {
    job: scan.job,
    manifest: scan.manifest,
    chunks,
    outputs: scan.outputs,
    missing,
    running: scan.running.sort(byName),
    stale: scan.stale.sort(byName),
    failed: scan.failed.sort(byName),
    leftoverTemp,
    activeTemp,
    leftoverTempDirs,
    heartbeats: scan.heartbeats,
    stopRequested: scan.stopRequested,
    clock: scan.clock,
    staleSeconds: scan.staleSeconds,
  };
}

export function isComplete(state: JobState): boolean {
  return state.manifest.complete && state.missing.length === 0;
}
