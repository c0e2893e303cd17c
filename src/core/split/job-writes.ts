/**
 * Every write split makes to a job folder, and nothing else: make the folders, remove a replaced
 * job, write job.json, write a chunk under .tmp/ and rename it into chunks/. Kept in one small
 * module so that the job store (DESIGN.md, "One job store") can take it over in one place.
 *
 * A chunk is written to a temp file and renamed, so that a follower never reads a half-written
 * chunk (invariant 1 holds for chunks too).
 */
import { promises as fs, writeSync } from 'node:fs';
import path from 'node:path';
import type { JobLayout } from '../job-folder.js';
import { writeManifest, type JobManifest } from '../manifest.js';
import { mountClockFor } from '../status-scan.js';
import type { MountClock } from '../mount-clock.js';

export class SplitJobWrites {
  readonly layout: JobLayout;

  constructor(layout: JobLayout) {
    this.layout = layout;
  }

  /** The job folder (made if missing) and every folder a job has, so workers never race to make them. */
  async createFolders(): Promise<void> {
    for (const dir of this.layout.folders) await fs.mkdir(dir, { recursive: true });
  }

  /** `--force`: only piecework's own entries go; anything else in the folder the user keeps. */
  async removeJob(): Promise<void> {
    const { layout } = this;
    for (const entry of [...layout.folders, layout.stopFile, layout.jobFile]) await fs.rm(entry, { recursive: true, force: true });
  }

  async writeManifest(manifest: JobManifest): Promise<void> {
    await writeManifest(this.layout, manifest);
  }

  /** The mount's clock, measured with a probe file in .tmp/ (for judging heartbeats). */
  mountClock(): Promise<MountClock> {
    return mountClockFor(this.layout);
  }

  /** chunks/NAME/ for a group's chunks; made before its first chunk is renamed in. */
  async makeGroupFolder(group: string): Promise<void> {
    if (group) await fs.mkdir(path.dirname(this.layout.chunkPath(`${group}/0`)), { recursive: true });
  }

  async openChunkTemp(): Promise<ChunkTemp> {
    const tempPath = this.layout.tempPath('split');
    return new ChunkTemp(tempPath, await fs.open(tempPath, 'w+'));
  }

  /** Publish a finished chunk under its name: a rename, so it appears complete or not at all. */
  async commitChunk(temp: ChunkTemp, chunk: string): Promise<void> {
    await temp.close();
    await fs.rename(temp.path, this.layout.chunkPath(chunk));
  }
}

/** A chunk being written under .tmp/. */
export class ChunkTemp {
  readonly path: string;
  #handle: fs.FileHandle | undefined;

  constructor(tempPath: string, handle: fs.FileHandle) {
    this.path = tempPath;
    this.#handle = handle;
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
    await fs.rm(this.path, { force: true }).catch(() => {});
  }

  #open(): fs.FileHandle {
    if (!this.#handle) throw new Error(`chunk temp ${this.path} is closed`);
    return this.#handle;
  }
}
