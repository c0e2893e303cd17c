/**
 * job.json while a split writes: followers (`work --follow`, `merge --follow`) read the chunk set
 * from it, so it is rewritten about once a second while chunks come, and at least every
 * SPLIT_HEARTBEAT_SECONDS while the split is unfinished even if none come (stdin quiet): its
 * mtime, on the mount's clock, then tells a follower whether the split is still alive.
 * Writes are queued one after another, so an older state never lands after a newer one.
 */
import type { JobManifest } from '../manifest.js';
import type { SplitJobWrites } from './job-writes.js';

/** An unfinished split rewrites job.json at least this often; older than a few of these, it is dead. */
export const SPLIT_HEARTBEAT_SECONDS = 5;

const ANNOUNCE_EVERY_MS = 1000;

export class LiveManifest {
  readonly manifest: JobManifest;
  #writes: SplitJobWrites;
  #queue: Promise<void> = Promise.resolve();
  #lastWrite = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerError: Error | undefined;

  constructor(writes: SplitJobWrites, manifest: JobManifest) {
    this.#writes = writes;
    this.manifest = manifest;
  }

  /** Write it (unfinished) and keep it fresh until finish(). */
  async start(): Promise<void> {
    await this.#write();
    const beatMs = (SPLIT_HEARTBEAT_SECONDS * 1000) / 2;
    this.#timer = setInterval(() => {
      if (Date.now() - this.#lastWrite < beatMs) return;
      this.#write().catch((error: unknown) => (this.#timerError ??= error instanceof Error ? error : new Error(String(error))));
    }, beatMs);
    this.#timer.unref();
  }

  /** A chunk was renamed into place: announce it, at most about once a second. */
  async chunkWritten(): Promise<void> {
    if (this.#timerError) throw this.#timerError;
    if (Date.now() - this.#lastWrite < ANNOUNCE_EVERY_MS) return;
    await this.#write();
  }

  /** The last write: complete, or left unfinished after a failure. */
  async finish(complete: boolean): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (complete) {
      this.manifest.complete = true;
      this.manifest.completedAt = new Date().toISOString();
    }
    await this.#write();
  }

  #write(): Promise<void> {
    this.#lastWrite = Date.now();
    const write = this.#queue.then(() => {
      this.manifest.chunkCount = this.manifest.groups.reduce((sum, g) => sum + g.count, 0);
      return this.#writes.writeManifest(this.manifest);
    });
    this.#queue = write.catch(() => {});
    return write;
  }
}
