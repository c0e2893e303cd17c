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
        const record = data ? parseHeartbeat(JSON.parse(data.toString('utf8'))) : undefined;
        if (record) records.push(record);
      } catch {
        // Half-visible or damaged records are skipped; the next beat replaces them.
      }
    }),
  );
  return records;
}

const STATES: readonly WorkerState[] = ['running', 'draining', 'waiting', 'exited', 'failed'];
const isText = (value: unknown): value is string => typeof value === 'string';
const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value) && value >= 0;

/**
 * A record as readers may use it, or undefined when it cannot say who beats and when. A record
 * edited by hand, copied from elsewhere or written by another version keeps what it says
 * right; anything else of it falls back to "nothing" (no lanes, no chunks, no rate).
 */
export function parseHeartbeat(value: unknown): HeartbeatRecord | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const r = value as Record<string, unknown>;
  if (!isText(r.worker) || !isText(r.host) || !isCount(r.pid) || !isText(r.jobId) || !isText(r.updatedAt) || Number.isNaN(Date.parse(r.updatedAt))) return undefined;
  if (!STATES.includes(r.state as WorkerState)) return undefined;
  const list = <T>(items: unknown, valid: (item: unknown) => item is T): T[] => (Array.isArray(items) ? items.filter(valid) : []);
  const record: HeartbeatRecord = {
    worker: r.worker,
    host: r.host,
    pid: r.pid,
    jobId: r.jobId,
    lanes: isCount(r.lanes) ? r.lanes : 0,
    command: Array.isArray(r.command) && r.command.every(isText) ? r.command : [],
    version: isText(r.version) ? r.version : 'unknown',
    state: r.state as WorkerState,
    startedAt: isText(r.startedAt) && !Number.isNaN(Date.parse(r.startedAt)) ? r.startedAt : r.updatedAt,
    updatedAt: r.updatedAt,
    intervalMs: isCount(r.intervalMs) && r.intervalMs > 0 ? r.intervalMs : 5000,
    clockOffsetMs: typeof r.clockOffsetMs === 'number' && Number.isFinite(r.clockOffsetMs) ? r.clockOffsetMs : 0,
    done: isCount(r.done) ? r.done : 0,
    failed: isCount(r.failed) ? r.failed : 0,
    recent: list(r.recent, (m): m is [number, number] => Array.isArray(m) && m.length === 2 && isCount(m[0]) && isCount(m[1])),
    current: list(r.current, (c): c is HeartbeatRecord['current'][number] => typeof c === 'object' && c !== null && isText((c as { chunk?: unknown }).chunk) && isCount((c as { lane?: unknown }).lane) && isText((c as { since?: unknown }).since)),
  };
  if (isText(r.exitReason)) record.exitReason = r.exitReason;
  if (Array.isArray(r.warm)) {
    record.warm = list(r.warm, (w): w is NonNullable<HeartbeatRecord['warm']>[number] => {
      const lane = w as { lane?: unknown; pid?: unknown; chunks?: unknown; rssKb?: unknown };
      return typeof w === 'object' && w !== null && isCount(lane.lane) && isCount(lane.pid) && isCount(lane.chunks) && (lane.rssKb === null || isCount(lane.rssKb));
    });
  }
  return record;
}

/** Alive unless it said it exited or missed several beats (by the mount's clock). */
export function isWorkerAlive(record: HeartbeatRecord, mountNow: number, staleMs: number): boolean {
  if (record.state === 'exited' || record.state === 'failed') return false;
  const age = mountNow - Date.parse(record.updatedAt);
  return age < Math.max(staleMs, record.intervalMs * 4);
}
