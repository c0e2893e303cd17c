/**
 * logs/<worker>.log: one writer per file, so no locking. Lines are buffered and appended in
 * batches — on a network mount each write is a round trip.
 */
import type { JobStore } from '../store/job-store.js';

export class WorkerLog {
  #store: JobStore;
  #file: string;
  #pending: string[] = [];
  #flushing: Promise<void> = Promise.resolve();
  #timer: NodeJS.Timeout;
  #prefix: string;
  #clock: () => number;

  /** `file` is the log's name in logs/. */
  constructor(store: JobStore, file: string, host: string, clock: () => number) {
    this.#store = store;
    this.#file = file;
    this.#prefix = host;
    this.#clock = clock;
    this.#timer = setInterval(() => void this.flush(), 1000);
    this.#timer.unref();
  }

  /** `host lane=2 chunk=000123 done 1.2s …` — every line says where, which, what, how long. */
  line(fields: { lane?: number; chunk?: string; event: string; ms?: number; detail?: string }): void {
    const parts = [new Date(this.#clock()).toISOString(), this.#prefix];
    if (fields.lane !== undefined) parts.push(`lane=${fields.lane}`);
    if (fields.chunk !== undefined) parts.push(`chunk=${fields.chunk}`);
    parts.push(fields.event);
    if (fields.ms !== undefined) parts.push(`${(fields.ms / 1000).toFixed(3)}s`);
    if (fields.detail) parts.push(fields.detail.replace(/\n/g, '\n    '));
    this.#pending.push(parts.join(' ') + '\n');
  }

  flush(): Promise<void> {
    if (this.#pending.length === 0) return this.#flushing;
    const text = this.#pending.join('');
    this.#pending = [];
    // Losing a log line must never fail a chunk.
    this.#flushing = this.#flushing.then(() => this.#store.append('logs', this.#file, text)).catch(() => {});
    return this.#flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }
}
