/**
 * status: how far a job is, how fast it goes, when it will end, which hosts pull their weight
 * and what fails — from the folder alone. Every number is an aggregate: the report stays the
 * same size at 1 000 000 chunks (lists are capped; their full lengths are in `counts`).
 */
import type { ClaimState, FailureState } from './inspect.js';
import type { JobStore } from './store/job-store.js';
import { openJobStore } from './store/open-store.js';
import { hostTable, rateOf, throughputByMinute, RATE_WINDOW_MINUTES, type HostStatus } from './status-rates.js';
import { scanForStatus, type ScanOptions, type StatusScan } from './status-scan.js';
import { commandsInUse, type CommandUse } from './worker-commands.js';

export type { HostStatus } from './status-rates.js';

export interface StatusOptions extends ScanOptions {
  /** Longest list of stale claims and recent failures in the report (default 10). */
  listLimit?: number;
}

export interface JobStatus {
  job: string;
  jobId: string;
  /** When the folder was read, by the mount's clock (ISO). */
  checkedAt: string;
  splitComplete: boolean;
  /** Every chunk has an output and the split has finished. */
  complete: boolean;
  stopRequested: boolean;
  /** done + running + stale + failed + pending = chunks; retrying is part of pending. */
  counts: { chunks: number; done: number; running: number; stale: number; failed: number; pending: number; retrying: number };
  rate: { chunksPerSecond: number; windowMinutes: number };
  /** Null when unknown: no live worker, no recent progress, or nothing left. */
  etaSeconds: number | null;
  finishesAt: string | null;
  workers: { alive: number; exited: number; dead: number; lanes: number };
  hosts: HostStatus[];
  staleClaims: ClaimState[];
  failureReasons: { reason: string; chunks: number; failedForGood: number; example: string }[];
  /** The latest failures, newest first, with their stderr tails. */
  recentFailures: FailureState[];
  /** The commands this job's workers ran, the most used first: more than one is worth a look. */
  commands: CommandUse[];
  /** Chunks done per minute over the last 15 minutes, summed over workers. */
  throughput: { minute: number; done: number }[];
}

export async function jobStatus(job: string | JobStore, options: StatusOptions = {}): Promise<JobStatus> {
  const store = typeof job === 'string' ? await openJobStore(job) : job;
  try {
    return summarizeStatus(await scanForStatus(store, options), options);
  } finally {
    if (typeof job === 'string') await store.close();
  }
}

export function summarizeStatus(scan: StatusScan, options: { listLimit?: number } = {}): JobStatus {
  const limit = options.listLimit ?? 10;
  const staleMs = scan.staleSeconds * 1000;
  const claimed = new Set([...scan.running, ...scan.stale].map((c) => c.chunk));
  const unclaimedFailures = scan.failed.filter((f) => !claimed.has(f.chunk));
  const failed = unclaimedFailures.filter((f) => f.final).length;
  const counts = {
    chunks: scan.chunks.length,
    done: scan.done.size,
    running: scan.running.length,
    stale: scan.stale.length,
    failed,
    pending: scan.chunks.length - scan.done.size - scan.running.length - scan.stale.length - failed,
    retrying: unclaimedFailures.length - failed,
  };
  const hosts = hostTable(scan.heartbeats, scan.now, staleMs);
  const workers = { alive: 0, exited: 0, dead: 0, lanes: 0 };
  for (const host of hosts) {
    workers.alive += host.workers.alive;
    workers.exited += host.workers.exited;
    workers.dead += host.workers.dead;
    workers.lanes += host.lanes;
  }
  const chunksPerSecond = rateOf(scan.heartbeats, scan.now, staleMs);
  const left = counts.chunks - counts.done - counts.failed;
  const etaSeconds = workers.alive > 0 && chunksPerSecond > 0 && left > 0 ? left / chunksPerSecond : null;
  return {
    job: scan.job,
    jobId: scan.manifest.id,
    checkedAt: new Date(scan.now).toISOString(),
    splitComplete: scan.manifest.complete,
    complete: scan.manifest.complete && counts.done === counts.chunks,
    stopRequested: scan.stopRequested,
    counts,
    rate: { chunksPerSecond, windowMinutes: RATE_WINDOW_MINUTES },
    etaSeconds,
    finishesAt: etaSeconds === null ? null : new Date(scan.now + etaSeconds * 1000).toISOString(),
    workers,
    hosts,
    staleClaims: [...scan.stale].sort((a, b) => b.ageSeconds - a.ageSeconds).slice(0, limit),
    failureReasons: commonReasons(scan.failed),
    recentFailures: [...scan.failed].sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : 0)).slice(0, limit),
    commands: commandsInUse(scan.heartbeats, scan.now, staleMs),
    throughput: throughputByMinute(scan.heartbeats, scan.now),
  };
}

function commonReasons(failures: FailureState[]): JobStatus['failureReasons'] {
  const byReason = new Map<string, JobStatus['failureReasons'][number]>();
  for (const f of failures) {
    let entry = byReason.get(f.reason);
    if (!entry) byReason.set(f.reason, (entry = { reason: f.reason, chunks: 0, failedForGood: 0, example: f.chunk }));
    entry.chunks++;
    if (f.final) entry.failedForGood++;
  }
  return [...byReason.values()].sort((a, b) => b.chunks - a.chunks).slice(0, 5);
}
