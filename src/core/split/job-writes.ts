/**
 * Every write split makes to a job folder, and nothing else: make the folders, remove a replaced
 * job, write job.json, write a chunk under .tmp/ and rename it into chunks/. Kept in one small
 * module so that the job store (DESIGN.md, "One job store") can take it over in one place.
 *
 * A chunk is written to a temp file and renamed, so that a follower never reads a half-written
 * chunk (invariant 1 holds for chunks too).
 */
import { promises as fs, writeSync } from 'node:fs';
import { mountClockFor } from '../status-scan.js';
import { writeManifest, type JobManifest } from '../manifest.js';
import type { JobStore, PendingChunk } from '../store/job-store.js';
import type { MountClock } from '../store/mount-clock.js';

export class SplitJobWrites {
  readonly store: JobStore;

  constructor(store: JobStore) {
    this.store = store;
  }

  get location(): string {
    return this.store.location;
  }

  /** What the folder holds at its top; undefined when there is no folder yet. */
  topLevel(): Promise<string[] | undefined> {
    return this.store.topLevel();
  }

  /** The job folder (made if missing) and every folder a job has, so workers never race to make them. */
  createFolders(): Promise<void> {
    return this.store.createJobFolders();
  }

  /** `--force`: only piecework's own entries go; anything else in the folder the user keeps. */
  removeJob(): Promise<void> {
    return this.store.removeJobEntries();
  }

  async writeManifest(manifest: JobManifest): Promise<void> {
    await writeManifest(this.store, manifest);
  }

  /** The mount's clock, measured with a probe file in .tmp/ (for judging heartbeats). */
  mountClock(): Promise<MountClock> {
    return mountClockFor(this.store);
  }

  /** chunks/NAME/ is made by the store when a group's first chunk is published. */
  async makeGroupFolder(_group: string): Promise<void> {}

  async openChunkTemp(): Promise<ChunkTemp> {
    const pending = await this.store.newChunkFile();
    return new ChunkTemp(pending, await fs.open(pending.path, 'w+'));
  }

  /** Publish a finished chunk under its name: a rename, so it appears complete or not at all. */
  async commitChunk(temp: ChunkTemp, chunk: string): Promise<void> {
    await temp.close();
    await temp.pending.publish(chunk);
  }
}

/** A chunk being written under .tmp/. */
export class ChunkTemp {
  readonly pending: PendingChunk;
  #handle: fs.FileHandle | undefined;

  constructor(pending: PendingChunk, handle: fs.FileHandle) {
    this.pending = pending;
    this.#handle = handle;
  }

  get path(): string {
    return this.pending.path;
  }

  /** Synchronous, like the reads (see READ_BLOCK_BYTES in inputs.ts): split has nothing else to do meanwhile. */
  write(data: Uint8Array, start: number, end: number): void {
    let offset = start;
    const fd = this.#open().fd;
    while (offset < end) offset += writeSync(fd, data, offset, end - offset);
  }

  /** Read back what was written (to move a line that turned out not to fit into the next chunk). */
  async readAt(into: Uint8Array, length: number, position: number): Promise<number> {
    return (await this.#open().read(into, 0, length, position)).bytesRead;
  }

  /** Drop everything from `length` on; the chunk is committed right after (no more writes). */
  async truncate(length: number): Promise<void> {
    await this.#open().truncate(length);
  }

  async close(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close();
  }

  /** A split that fails leaves no half-written chunk behind. */
  async remove(): Promise<void> {
    await this.close().catch(() => {});
    await this.pending.discard().catch(() => {});
  }

  #open(): fs.FileHandle {
    if (!this.#handle) throw new Error(`chunk temp ${this.path} is closed`);
    return this.#handle;
  }
}
