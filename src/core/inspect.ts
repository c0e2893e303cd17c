/**
 * The full state of a job, computed from the folder alone: what verify reports. It is the status
 * scan plus what verify needs on top: every chunk the listing calls missing confirmed by a lookup
 * (a listing can be 20 s old), and temp files told apart by whether their writer is known gone.
 */
import { isWorkerAlive, type HeartbeatRecord } from './heartbeat.js';
import type { JobManifest } from './manifest.js';
import { confirmOutputs, listTemp } from './scan.js';
import { scanForStatus, type ClaimState, type FailureState } from './status-scan.js';
import { compareNatural, sortNatural } from './natural-order.js';
import type { JobStore } from './store/job-store.js';
import { parseTempName, parseLaneTempDir, parseWriteTempName, workerIdFor, HOST } from './store/layout.js';
import type { MountClock } from './store/mount-clock.js';
import { processIsGone } from './processes.js';

export { mountClockFor, type ClaimState, type FailureState } from './status-scan.js';

export interface JobState {
  job: string;
  manifest: JobManifest;
  /** Chunks in natural order, from the manifest. */
  chunks: string[];
  /** Chunks with their output, confirmed. */
  done: Set<string>;
  missing: string[];
  /** Files in out/ that are the output of no chunk (a `.bak`, a copy): merge never reads them. */
  stray: string[];
  running: ClaimState[];
  stale: ClaimState[];
  /** Failure records of chunks that have no output. */
  failed: FailureState[];
  /** Temp files (relative to .tmp/) whose writer is known to be gone: a crash leftover. */
  leftoverTemp: string[];
  /** Temp files whose writer is alive or not known to be gone: left alone. */
  activeTemp: number;
  /** Lane temp folders (relative to .tmp/) of workers known to be gone. */
  leftoverTempDirs: string[];
  heartbeats: HeartbeatRecord[];
  stopRequested: boolean;
  clock: MountClock;
  staleSeconds: number;
}

export async function inspectJob(store: JobStore, options: { staleSeconds?: number; clock?: MountClock } = {}): Promise<JobState> {
  const [scan, temp, marker] = await Promise.all([scanForStatus(store, options), listTemp(store), store.markerInfo()]);
  const done = await confirmOutputs(store, scan.manifest, scan.chunks, { listed: scan.done });
  const staleMs = scan.staleSeconds * 1000;
  const gone = writerIsGone(scan.heartbeats, scan.now, staleMs, marker ? scan.now - marker.mtimeMs > staleMs : true);
  let activeTemp = 0;
  const leftoverTemp: string[] = [];
  for (const name of temp.files) {
    if (gone(name)) leftoverTemp.push(name);
    else activeTemp++;
  }
  const leftoverTempDirs = temp.laneDirs.filter((name) => {
    const owner = parseLaneTempDir(name);
    return owner !== undefined && gone(`${name}/`);
  });
  const byName = (a: { chunk: string }, b: { chunk: string }) => compareNatural(a.chunk, b.chunk);
  const heartbeatOf = new Map(scan.heartbeats.map((h) => [h.worker, h]));
  // A claim is stale by its own clock; it is removable only if its holder's heartbeat agrees.
  const stale = scan.stale.filter((claim) => {
    const holder = claim.owner ? heartbeatOf.get(claim.owner.worker) : undefined;
    return !holder || !isWorkerAlive(holder, scan.now, staleMs);
  });
  const running = [...scan.running, ...scan.stale.filter((c) => !stale.includes(c))];
  return {
    job: scan.job,
    manifest: scan.manifest,
    chunks: scan.chunks,
    done,
    missing: scan.chunks.filter((c) => !done.has(c)),
    // Sorted here, for verify's report: status and the dashboard rescan often and never show them.
    stray: sortNatural([...scan.stray]),
    running: running.sort(byName),
    stale: stale.sort(byName),
    failed: scan.failed.filter((f) => !done.has(f.chunk)).sort(byName),
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

/**
 * Deletion needs proof (invariant 10): a temp file's writer is gone only if its heartbeat is older
 * than the stale period (or says it exited), or it ran on this host and its pid is gone. A writer
 * with no heartbeat (split, stop) is gone only when no split is alive: the split rewrites job.json
 * every few seconds while it runs. Names that say nothing of their writer are never removed.
 */
function writerIsGone(heartbeats: HeartbeatRecord[], mountNow: number, staleMs: number, noSplitAlive: boolean): (tempName: string) => boolean {
  const byWorker = new Map(heartbeats.map((h) => [h.worker, h]));
  return (name) => {
    const slash = name.indexOf('/');
    const lane = slash === -1 ? undefined : parseLaneTempDir(name.slice(0, slash));
    const file = name.slice(slash + 1);
    const writer = lane ?? parseTempName(file) ?? parseWriteTempName(file);
    if (!writer) return false;
    const heartbeat = byWorker.get(workerIdFor(writer.host, writer.pid));
    if (heartbeat) return !isWorkerAlive(heartbeat, mountNow, staleMs);
    if (writer.host === HOST) return processIsGone(writer.pid);
    return noSplitAlive;
  };
}
