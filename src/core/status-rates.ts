/**
 * Throughput from heartbeats: every worker keeps per-minute done counts (`recent`, by the mount's
 * clock), so a rate over the last minutes needs no history of our own — it is the sum over
 * workers, whichever host or version wrote them.
 */
import { isWorkerAlive, type HeartbeatRecord } from './heartbeat.js';
import { compareNatural } from './natural-order.js';

export const RATE_WINDOW_MINUTES = 5;
const MINUTE = 60_000;
/** A rate over a shorter span than this is mostly noise from the first chunks. */
const MIN_SPAN_MS = 5_000;

export interface HostStatus {
  host: string;
  /** alive: some worker beats; exited: all said goodbye; dead: a worker went silent or failed. */
  state: 'alive' | 'exited' | 'dead';
  workers: { alive: number; exited: number; dead: number };
  /** Lanes of the live workers, and the chunks they hold right now. */
  lanes: number;
  busy: number;
  /** Chunks done and failed attempts by every worker this host ever ran for the job. */
  done: number;
  failedAttempts: number;
  chunksPerSecond: number;
  /** Age of the freshest heartbeat, by the mount's clock. */
  lastHeartbeatSeconds: number;
  /** --warm: the live workers' warm processes and their resident memory (kB, children included). */
  warm: { processes: number; rssKb: number } | undefined;
}

/** Chunks per second over the last `RATE_WINDOW_MINUTES` minutes, summed over the workers. */
export function rateOf(records: HeartbeatRecord[], now: number, staleMs: number): number {
  const windowStart = Math.floor(now / MINUTE) * MINUTE - (RATE_WINDOW_MINUTES - 1) * MINUTE;
  let count = 0;
  let from = Infinity;
  let to = 0;
  let anyAlive = false;
  for (const record of records) {
    const inWindow = record.recent.filter(([minute]) => minute >= windowStart).reduce((sum, [, n]) => sum + n, 0);
    if (inWindow === 0) continue;
    count += inWindow;
    from = Math.min(from, Math.max(windowStart, Date.parse(record.startedAt)));
    // A live worker's counts are as of its last beat; a gone one's span runs on to now.
    const alive = isWorkerAlive(record, now, staleMs);
    anyAlive ||= alive;
    to = Math.max(to, alive ? Date.parse(record.updatedAt) : now);
  }
  if (count === 0) return 0;
  if (!anyAlive) to = now;
  return count / (Math.max(to - from, MIN_SPAN_MS) / 1000);
}

export function hostTable(records: HeartbeatRecord[], now: number, staleMs: number): HostStatus[] {
  const byHost = new Map<string, HeartbeatRecord[]>();
  for (const record of records) {
    const list = byHost.get(record.host);
    if (list) list.push(record);
    else byHost.set(record.host, [record]);
  }
  return [...byHost]
    .map(([host, workers]) => hostStatus(host, workers, now, staleMs))
    .sort((a, b) => compareNatural(a.host, b.host));
}

function hostStatus(host: string, records: HeartbeatRecord[], now: number, staleMs: number): HostStatus {
  const workers = { alive: 0, exited: 0, dead: 0 };
  let lanes = 0;
  let busy = 0;
  let warm: HostStatus['warm'];
  for (const record of records) {
    if (isWorkerAlive(record, now, staleMs)) {
      workers.alive++;
      lanes += record.lanes;
      busy += record.current.length;
      for (const process of record.warm ?? []) {
        warm ??= { processes: 0, rssKb: 0 };
        warm.processes++;
        warm.rssKb += process.rssKb ?? 0;
      }
    } else if (record.state === 'exited') workers.exited++;
    else workers.dead++;
  }
  const newest = Math.max(...records.map((r) => Date.parse(r.updatedAt)));
  return {
    host,
    state: workers.alive > 0 ? 'alive' : workers.dead > 0 ? 'dead' : 'exited',
    workers,
    lanes,
    busy,
    done: records.reduce((sum, r) => sum + r.done, 0),
    failedAttempts: records.reduce((sum, r) => sum + r.failed, 0),
    chunksPerSecond: rateOf(records, now, staleMs),
    lastHeartbeatSeconds: Math.max(0, (now - newest) / 1000),
    warm,
  };
}

/** Chunks done per minute over the minutes the heartbeats remember, oldest first, gaps as 0. */
export function throughputByMinute(records: HeartbeatRecord[], now: number, minutes = 15): { minute: number; done: number }[] {
  const last = Math.floor(now / MINUTE) * MINUTE;
  const series = Array.from({ length: minutes }, (_, i) => ({ minute: last - (minutes - 1 - i) * MINUTE, done: 0 }));
  for (const record of records) {
    for (const [minute, n] of record.recent) {
      const slot = series[(minute - series[0]!.minute) / MINUTE];
      if (slot) slot.done += n;
    }
  }
  return series;
}
