/**
 * What the dashboard's JSON endpoint serves: the job's status, its chunk grid and the progress
 * seen since the dashboard started. One scan serves every browser tab: a snapshot is reused for
 * `minAgeMs` (longer when the scan itself is slow), and requests that arrive during a scan wait
 * for that scan instead of starting their own.
 */
import type { JobLayout } from '../core/job-folder.js';
import { mountClockFor, type FailureState } from '../core/inspect.js';
import type { MountClock } from '../core/mount-clock.js';
import { summarizeStatus, type JobStatus } from '../core/status.js';
import { scanForStatus } from '../core/status-scan.js';
import { chunkGrid, type ChunkGrid } from './grid.js';

export interface DashboardSnapshot {
  status: JobStatus;
  grid: ChunkGrid;
  /** Chunks done over time, as seen by this dashboard (mount-clock ms), oldest first. */
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
  readonly #layout: JobLayout;
  readonly #staleSeconds: number | undefined;
  readonly #minAgeMs: number;
  #clock: Promise<MountClock> | undefined;
  /** The scan started last, and the last one that succeeded (cleared by a failure). */
  #current: Scan | undefined;
  #lastGood: Scan | undefined;
  #history: DashboardSnapshot['history'] = [];
  readonly #failureCache = new Map<string, FailureState>();

  constructor(layout: JobLayout, options: { staleSeconds?: number; minAgeMs?: number } = {}) {
    this.#layout = layout;
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
    this.#clock ??= mountClockFor(this.#layout);
    const scan = await scanForStatus(this.#layout, { staleSeconds: this.#staleSeconds, clock: await this.#clock, failureCache: this.#failureCache });
    const status = summarizeStatus(scan);
    const grid = chunkGrid(scan);
    this.#record(scan.now, status.counts.done);
    return { status, grid, history: [...this.#history], scanMs: Date.now() - started };
  }

  #record(t: number, done: number): void {
    this.#history.push({ t, done });
    // Keep the whole run in bounded memory: when full, keep every other point.
    if (this.#history.length > HISTORY_POINTS) this.#history = this.#history.filter((_, i) => i % 2 === 0 || i === this.#history.length - 1);
  }
}
