/**
 * The folder read that status and the dashboard share. It lists each folder once, like
 * inspectJob, but skips what a progress view does not need: no natural sort of every chunk
 * name (about half a second at 1 000 000 chunks; `orderChunks` does it only for the grid, with
 * a fast path), no temp-file listing, and bounded concurrency for the per-file reads (claims and
 * failure records) so that 100 000 failed chunks cannot run the process out of file handles.
 */
import { promises as fs } from 'node:fs';
import { errorCode } from './errors.js';
import { isExhausted, readFailure } from './failures.js';
import { readHeartbeats, type HeartbeatRecord } from './heartbeat.js';
import { isChunkName, workerIdFor, type JobLayout } from './job-folder.js';
import { mapBounded } from './concurrency.js';
import { fixedMountClock, measureMountClock } from './mount-clock.js';
import type { OwnerRecord } from './claim.js';
import { readManifest, type JobManifest } from './manifest.js';
import type { MountClock } from './mount-clock.js';
import { sortNatural } from './natural-order.js';
import { readOwnerRecord } from './claim.js';
import { exists, listClaims, listFailures, listOutputs, listTree } from './scan.js';

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

/** The mount's clock if we may write a probe there; otherwise ours (a read-only view). */
export async function mountClockFor(layout: JobLayout): Promise<MountClock> {
  try {
    return await measureMountClock(layout.tmpDir, workerIdFor('inspect', process.pid));
  } catch {
    return fixedMountClock(0);
  }
}

export interface StatusScan {
  job: string;
  manifest: JobManifest;
  clock: MountClock;
  /** When the scan started, by the mount's clock (ms). */
  now: number;
  staleSeconds: number;
  /** Chunk names in listing order (see orderChunks). */
  chunks: string[];
  /** Chunks that have an output. */
  done: Set<string>;
  /** chunk → output path relative to out/ (outputs of chunks that no longer exist included). */
  outputs: Map<string, string>;
  /** Claims of chunks that have no output yet, split by freshness. */
  running: ClaimState[];
  stale: ClaimState[];
  /** Failure records of chunks that have no output. */
  failed: FailureState[];
  heartbeats: HeartbeatRecord[];
  stopRequested: boolean;
}

export interface ScanOptions {
  staleSeconds?: number;
  /** Reuse a measured clock (a watch loop, the dashboard): measuring writes probe files. */
  clock?: MountClock;
  /**
   * Failure records already read by an earlier scan of the same job. Records of chunks that
   * failed for good do not change (workers skip those chunks), so a repeating reader keeps them
   * and reads only new and retrying ones: with 200 000 failed chunks a rescan takes seconds, not
   * the ~20 s that reading every record again costs.
   */
  failureCache?: Map<string, FailureState>;
}

/** Per-file reads in flight at once: enough to hide a mount's latency, far from the fd limit. */
const READ_CONCURRENCY = 32;

export async function scanForStatus(layout: JobLayout, options: ScanOptions = {}): Promise<StatusScan> {
  const manifest = await readManifest(layout);
  const clock = options.clock ?? (await mountClockFor(layout));
  const staleSeconds = options.staleSeconds ?? manifest.staleSeconds;
  const now = clock.now();
  const [names, outputs, claims, failures, allHeartbeats, stopRequested] = await Promise.all([
    listTree(layout.chunksDir),
    listOutputs(layout),
    listClaims(layout),
    listFailures(layout),
    readHeartbeats(layout),
    exists(layout.stopFile),
  ]);
  // A worker still running for a job that `split --force` replaced is not this job's worker.
  const heartbeats = allHeartbeats.filter((h) => h.jobId === manifest.id);
  const chunks = names.filter(isChunkName);
  const done = new Set<string>();
  for (const chunk of chunks) if (outputs.has(chunk)) done.add(chunk);

  const running: ClaimState[] = [];
  const stale: ClaimState[] = [];
  await mapBounded([...claims].filter((c) => !done.has(c)), READ_CONCURRENCY, async (chunk) => {
    let mtimeMs: number;
    try {
      mtimeMs = (await fs.stat(layout.lockPath(chunk))).mtimeMs;
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return; // released since the listing
      throw error;
    }
    const claim: ClaimState = { chunk, ageSeconds: Math.max(0, (now - mtimeMs) / 1000), owner: await readOwnerRecord(layout.ownerPath(chunk)) };
    (claim.ageSeconds > staleSeconds ? stale : running).push(claim);
  });

  const failed: FailureState[] = [];
  const cache = options.failureCache;
  // A record that is gone was requeued: forget it, or a new failure would read as the old one.
  if (cache) for (const chunk of cache.keys()) if (!failures.has(chunk) || done.has(chunk)) cache.delete(chunk);
  await mapBounded([...failures].filter((c) => !done.has(c)), READ_CONCURRENCY, async (chunk) => {
    const known = cache?.get(chunk);
    if (known) {
      failed.push(known);
      return;
    }
    const r = await readFailure(layout, chunk);
    if (!r) return;
    const state: FailureState = { chunk: r.chunk, attempts: r.attempts, maxAttempts: r.maxAttempts, final: isExhausted(r), reason: r.reason, host: r.host, at: r.at, stderrTail: r.stderrTail };
    failed.push(state);
    if (state.final) cache?.set(chunk, state);
  });
  return { job: layout.root, manifest, clock, now, staleSeconds, chunks, done, outputs, running, stale, failed, heartbeats, stopRequested };
}

/**
 * Chunk names in the job's natural order. Names split made are equal-width digit strings at the
 * top level, whose byte order is their natural order: a plain sort is ~30× faster there.
 */
export function orderChunks(chunks: string[]): string[] {
  const width = chunks[0]?.length ?? 0;
  const flatEqualWidth = chunks.every((c) => c.length === width && !c.includes('/'));
  return flatEqualWidth ? [...chunks].sort() : sortNatural([...chunks]);
}
