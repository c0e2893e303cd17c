/**
 * What the dashboard's JSON endpoint serves: the job's status, its chunk grid and progress over
 * time. One folder scan serves every browser tab: a snapshot is reused for `minAgeMs` (as long
 * as the scan took, if longer), then the next request starts a new scan and is answered with
 * the previous snapshot until it ends. Many tabs never multiply the load on the mount.
 */
import type { JobStore } from '../core/store/job-store.js';
import { mountClockFor, type FailureState } from '../core/inspect.js';
import type { MountClock } from '../core/store/mount-clock.js';
import { summarizeStatus, type JobStatus } from '../core/status.js';
import { scanForStatus } from '../core/status-scan.js';
import { chunkGrid, type ChunkGrid } from './grid.js';

export interface DashboardSnapshot {
  status: JobStatus;
  grid: ChunkGrid;
  /** Chunks done over time (mount-clock ms), oldest first: from heartbeats, then from scans. */
  history: { t: number; done: number }[];
  /** How long the folder scan took: the page shows it, so a slow mount is visible. */
  scanMs: number;
}

const HISTORY_POINTS = 720;

interface Scan {
  snapshot: Promise<DashboardSnapshot>;
  done: boolean;
  finishedAt: number;
  keepMs: number;
}

export class SnapshotSource {
  readonly #store: JobStore;
  readonly #staleSeconds: number | undefined;
  readonly #minAgeMs: number;
  #clock: Promise<MountClock> | undefined;
  /** The scan started last, and the last one that succeeded (cleared by a failure). */
  #current: Scan | undefined;
  #lastGood: Scan | undefined;
  #history: DashboardSnapshot['history'] = [];
  readonly #failureCache = new Map<string, FailureState>();

  constructor(store: JobStore, options: { staleSeconds?: number; minAgeMs?: number } = {}) {
    this.#store = store;
    this.#staleSeconds = options.staleSeconds;
    this.#minAgeMs = options.minAgeMs ?? 1500;
  }

  /**
   * The latest snapshot. Once it is old a new scan starts, and callers get the previous
   * snapshot until that scan ends: a page never waits seconds for a slow scan.
   */
  get(): Promise<DashboardSnapshot> {
    const current = this.#current;
    if (current && !current.done) return (this.#lastGood ?? current).snapshot;
    if (current && Date.now() - current.finishedAt < current.keepMs) return current.snapshot;
    const next = this.#start();
    return (this.#lastGood ?? next).snapshot;
  }

  #start(): Scan {
    const scan: Scan = { snapshot: this.#scan(), done: false, finishedAt: 0, keepMs: this.#minAgeMs };
    this.#current = scan;
    scan.snapshot
      .then(
        (s) => {
          scan.keepMs = Math.max(this.#minAgeMs, s.scanMs); // a slow scan is kept as long as it took
          this.#lastGood = scan;
        },
        () => {
          this.#lastGood = undefined; // an error (a dropped mount) is news: do not hide it
        },
      )
      .finally(() => {
        scan.done = true;
        scan.finishedAt = Date.now();
      });
    return scan;
  }

  async #scan(): Promise<DashboardSnapshot> {
    const started = Date.now();
    // Measured once: it writes probe files, and the mount's clock offset does not drift fast.
    this.#clock ??= mountClockFor(this.#store);
    const scan = await scanForStatus(this.#store, { staleSeconds: this.#staleSeconds, clock: await this.#clock, failureCache: this.#failureCache });
    const status = summarizeStatus(scan);
    const grid = chunkGrid(scan);
    if (this.#history.length === 0) this.#history = historyFromHeartbeats(status);
    this.#record(scan.now, status.counts.done);
    return { status, grid, history: [...this.#history], scanMs: Date.now() - started };
  }

  #record(t: number, done: number): void {
    this.#history.push({ t, done });
    // Keep the whole run in bounded memory: when full, keep every other point.
    if (this.#history.length > HISTORY_POINTS) this.#history = this.#history.filter((_, i) => i % 2 === 0 || i === this.#history.length - 1);
  }
}

/**
 * The chart need not start empty: the heartbeats remember chunks done per minute for the last
 * quarter hour, so counting back from today's total gives the recent past (approximately: a
 * beat lags by a few seconds, and workers whose heartbeat files are gone are not in it).
 */
function historyFromHeartbeats(status: JobStatus): DashboardSnapshot['history'] {
  let done = status.counts.done;
  const points: DashboardSnapshot['history'] = [];
  for (const slot of [...status.throughput].reverse()) {
    done = Math.max(0, done - slot.done);
    points.unshift({ t: slot.minute, done });
  }
  return points;
}
