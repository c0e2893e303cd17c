/**
 * workers/<host>.<pid>.json: one heartbeat per worker process, rewritten atomically every few
 * seconds. status reads them for per-host throughput and liveness; times are by the mount's
 * clock so that readers on other hosts can compare them with their own view of that clock.
 */
import type { JobStore } from './store/job-store.js';
import { HEARTBEAT_SUFFIX } from './store/layout.js';
import type { MountClock } from './store/mount-clock.js';

export type WorkerState = 'running' | 'draining' | 'waiting' | 'exited' | 'failed';

export interface HeartbeatRecord {
  worker: string;
  host: string;
  pid: number;
  jobId: string;
  lanes: number;
  command: string[];
  version: string;
  state: WorkerState;
  /** ISO times by the mount's clock. */
  startedAt: string;
  updatedAt: string;
  /** How often this worker rewrites the record; a reader calls it dead after a few missed beats. */
  intervalMs: number;
  clockOffsetMs: number;
  done: number;
  failed: number;
  /** Chunks finished per minute for the last minutes: [minute start (ms, mount clock), count]. */
  recent: [number, number][];
  current: { chunk: string; lane: number; since: string }[];
  exitReason?: string;
  /** --warm: each lane's running process, its answers so far and its resident memory (tree). */
  warm?: { lane: number; pid: number; chunks: number; rssKb: number | null }[];
}

const RECENT_MINUTES = 15;

export class Heartbeat {
  readonly record: HeartbeatRecord;
  #store: JobStore;
  #clock: MountClock;
  /** Chunks whose command runs now, by chunk (a lane may also be committing its previous one). */
  #current = new Map<string, { lane: number; since: number }>();
  #writing: Promise<void> | undefined;
  #queued: Promise<void> | undefined;
  #writeStartedAt = 0;

  constructor(store: JobStore, clock: MountClock, base: Omit<HeartbeatRecord, 'state' | 'startedAt' | 'updatedAt' | 'done' | 'failed' | 'recent' | 'current' | 'clockOffsetMs'>) {
    this.#store = store;
    this.#clock = clock;
    const now = new Date(clock.now()).toISOString();
    this.record = { ...base, state: 'running', startedAt: now, updatedAt: now, clockOffsetMs: clock.offsetMs, done: 0, failed: 0, recent: [], current: [] };
  }

  chunkStarted(lane: number, chunk: string): void {
    this.#current.set(chunk, { lane, since: this.#clock.now() });
  }

  chunkEnded(chunk: string, outcome: 'done' | 'failed' | 'other'): void {
    this.#current.delete(chunk);
    if (outcome === 'failed') this.record.failed++;
    if (outcome !== 'done') return;
    this.record.done++;
    const minute = Math.floor(this.#clock.now() / 60_000) * 60_000;
    const last = this.record.recent[this.record.recent.length - 1];
    if (last && last[0] === minute) last[1]++;
    else {
      this.record.recent.push([minute, 1]);
      if (this.record.recent.length > RECENT_MINUTES) this.record.recent.shift();
    }
  }

  /** How long the write under way has been waiting: a hung mount shows up here first. */
  get pendingWriteMs(): number {
    return this.#writing ? Date.now() - this.#writeStartedAt : 0;
  }

  /**
   * Rewrites the record. A write asked for while another is in flight is queued behind it and
   * serializes the record as it is then: the in-flight text is already old, and a final 'exited'
   * must land after any tick's 'running', never under it. Writes asked for meanwhile share the
   * queued one.
   */
  write(state?: WorkerState, exitReason?: string): Promise<void> {
    if (state) this.record.state = state;
    if (exitReason) this.record.exitReason = exitReason;
    if (!this.#writing) return this.#startWrite();
    this.#queued ??= this.#writing
      .catch(() => {})
      .then(() => {
        this.#queued = undefined;
        return this.#startWrite();
      });
    return this.#queued;
  }

  #startWrite(): Promise<void> {
    this.record.updatedAt = new Date(this.#clock.now()).toISOString();
    this.record.current = [...this.#current].map(([chunk, c]) => ({ chunk, lane: c.lane, since: new Date(c.since).toISOString() }));
    this.#writeStartedAt = Date.now();
    const text = JSON.stringify(this.record) + '\n';
    const writing = this.#store.write('workers', this.record.worker + HEARTBEAT_SUFFIX, text).finally(() => {
      if (this.#writing === writing) this.#writing = undefined;
    });
    this.#writing = writing;
    return writing;
  }
}

export async function readHeartbeats(store: JobStore): Promise<HeartbeatRecord[]> {
  const names = (await store.list('workers').catch(() => [])).filter((e) => !e.directory && e.name.endsWith(HEARTBEAT_SUFFIX) && !e.name.startsWith('.') && !e.name.includes('/'));
  const records: HeartbeatRecord[] = [];
  await Promise.all(
    names.map(async ({ name }) => {
      try {
        const data = await store.read('workers', name);
        if (data) records.push(JSON.parse(data.toString('utf8')) as HeartbeatRecord);
      } catch {
        // Half-visible or damaged records are skipped; the next beat replaces them.
      }
    }),
  );
  return records;
}

/** Alive unless it said it exited or missed several beats (by the mount's clock). */
export function isWorkerAlive(record: HeartbeatRecord, mountNow: number, staleMs: number): boolean {
  if (record.state === 'exited' || record.state === 'failed') return false;
  const age = mountNow - Date.parse(record.updatedAt);
  return age < Math.max(staleMs, record.intervalMs * 4);
}
