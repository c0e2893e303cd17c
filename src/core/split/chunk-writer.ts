/**
 * The chunk writer: takes slices of input as a cutter hands them over, appends them to the chunk
 * being written, and names and publishes each chunk when the cutter says it ends. It keeps the
 * manifest's `groups` exact: a group's count grows by one with every chunk renamed into place, so
 * job.json never names a chunk that is not there.
 */
import { formatChunkNumber } from '../store/layout.js';
import type { JobManifest } from '../manifest.js';
import type { EventSink } from '../events.js';
import type { ChunkTemp, SplitJobWrites } from './job-writes.js';

const NEWLINE = 10;
/** Bytes moved at a time when a line that did not fit goes on to the next chunk. */
const MOVE_BUFFER_BYTES = 1024 * 1024;

/** What a cutter may know about the chunk being written. */
export interface ChunkState {
  /** Bytes in the current chunk. */
  bytes: number;
  /** Lines ended in the current chunk (counted by the lines cutter only). */
  lines: number;
  /** Bytes of the current chunk up to and including its last newline (0: none yet). */
  lastLineEnd: number;
  /** Bytes written to the current group so far (its stream offset). */
  groupBytes: number;
}

type Group = JobManifest['groups'][number];

export class ChunkWriter {
  readonly chunk: ChunkState = { bytes: 0, lines: 0, lastLineEnd: 0, groupBytes: 0 };
  chunksWritten = 0;
  bytesWritten = 0;
  #writes: SplitJobWrites;
  #groups: Group[];
  #group: Group | undefined;
  #temp: ChunkTemp | undefined;
  #moveBuffer: Buffer | undefined;
  #onEvent: EventSink;
  #totalBytes: number | undefined;
  #lastProgress = 0;
  #onChunk: () => Promise<void>;

  /** `groups` is the manifest's list: the writer appends to it and counts chunks into it. */
  constructor(writes: SplitJobWrites, groups: Group[], options: { onEvent: EventSink; totalBytes?: number; onChunk: () => Promise<void> }) {
    this.#writes = writes;
    this.#groups = groups;
    this.#onEvent = options.onEvent;
    this.#totalBytes = options.totalBytes;
    this.#onChunk = options.onChunk;
  }

  startGroup(name: string, width: number): void {
    this.#group = { name, count: 0, width };
    this.#groups.push(this.#group);
    this.chunk.groupBytes = 0;
  }

  /** Append `data[start, end)` to the current chunk; `lines` is how many lines it ends. */
  async write(data: Buffer, start: number, end: number, lines = 0): Promise<void> {
    if (end <= start) return;
    this.#temp ??= await this.#writes.openChunkTemp();
    this.#temp.write(data, start, end);
    const lastNewline = data.lastIndexOf(NEWLINE, end - 1);
    if (lastNewline >= start) this.chunk.lastLineEnd = this.chunk.bytes + lastNewline + 1 - start;
    this.chunk.bytes += end - start;
    this.chunk.lines += lines;
    this.chunk.groupBytes += end - start;
    this.bytesWritten += end - start;
  }

  /** The current chunk ends here (nothing happens if it is empty). */
  async endChunk(): Promise<void> {
    const temp = this.#temp;
    const group = this.#group;
    if (!temp || !group) return;
    this.#temp = undefined;
    const chunk = (group.name ? group.name + '/' : '') + formatChunkNumber(group.count, group.width);
    if (group.count === 0) await this.#writes.makeGroupFolder(group.name);
    await this.#writes.commitChunk(temp, chunk);
    group.count++;
    this.chunksWritten++;
    this.chunk.bytes = 0;
    this.chunk.lines = 0;
    this.chunk.lastLineEnd = 0;
    await this.#onChunk();
    const now = Date.now();
    if (now - this.#lastProgress > 200) {
      this.#lastProgress = now;
      this.#onEvent({ type: 'split:progress', bytes: this.bytesWritten, chunks: this.chunksWritten, totalBytes: this.#totalBytes });
    }
  }

  /**
   * The current chunk ends after its last complete line; the start of a line already written
   * after it turned out not to fit and moves to the next chunk. Rare (only when a cut falls in a
   * line that straddles two reads), and it moves less than one chunk.
   */
  async endChunkAtLastLineEnd(): Promise<void> {
    const old = this.#temp;
    const { lastLineEnd: keep, bytes } = this.chunk;
    if (!old || keep === 0 || keep === bytes) return this.endChunk();
    const next = await this.#writes.openChunkTemp();
    try {
      const buffer = (this.#moveBuffer ??= Buffer.allocUnsafeSlow(MOVE_BUFFER_BYTES));
      for (let position = keep; position < bytes; ) {
        const read = await old.readAt(buffer, Math.min(buffer.length, bytes - position), position);
        if (read === 0) throw new Error(`chunk temp ${old.path} is shorter than written`);
        next.write(buffer, 0, read);
        position += read;
      }
      await old.truncate(keep);
    } catch (error) {
      await next.remove();
      throw error;
    }
    await this.endChunk();
    this.#temp = next;
    this.chunk.bytes = bytes - keep;
  }

  /** After a failure: the chunk being written is removed, never renamed into chunks/. */
  async abort(): Promise<void> {
    const temp = this.#temp;
    this.#temp = undefined;
    await temp?.remove();
  }
}
