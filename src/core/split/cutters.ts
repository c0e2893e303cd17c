/**
 * Cutting a byte stream into chunks at line ends, in one pass over reused read buffers.
 *
 * A cutter looks at a block of input and the chunk being written and says how many of the
 * block's bytes still go into that chunk and whether the chunk ends after them. Bytes are
 * written as they come — a line longer than a chunk is never held in memory; it goes whole into
 * one chunk, streamed — so memory stays bounded by the read buffers and time linear in the input.
 */
import type { SplitMode } from '../manifest.js';
import type { ChunkState, ChunkWriter } from './chunk-writer.js';
import { nthNewline } from './newline-scan.js';

const NEWLINE = 10;

export interface CutDecision {
  /** Bytes from the block's position that go into the current chunk. */
  take: number;
  /** Lines those bytes end (the lines cutter counts them). */
  lines?: number;
  /**
   * `none`: the chunk goes on; `after`: it ends after the bytes taken; `at-last-line-end`: it
   * ends at its last complete line and the partial line written after that moves on to the next.
   */
  end: 'none' | 'after' | 'at-last-line-end';
}

export interface Cutter {
  decide(block: Buffer, position: number, chunk: ChunkState): CutDecision;
}

/** `totalBytes` is what a `--chunks` cut divides (the input's size, or this group's). */
export function makeCutter(mode: Exclude<SplitMode, 'files'>, size: number, totalBytes: number): Cutter {
  if (mode === 'lines') return linesCutter(size);
  if (mode === 'bytes') return bytesCutter(size);
  return chunksCutter(size, totalBytes);
}

/** N lines per chunk: the chunk ends after its N-th newline (found by the SIMD scan). */
export function linesCutter(linesPerChunk: number): Cutter {
  return {
    decide(block, position, chunk) {
      const need = linesPerChunk - chunk.lines;
      const end = nthNewline(block, position, need);
      if (end < 0) return { take: block.length - position, lines: -1 - end, end: 'none' };
      return { take: end - position, lines: need, end: 'after' };
    },
  };
}

/**
 * At most `limit` bytes per chunk, never cutting a line: the chunk ends at the last newline
 * before the limit (one lastIndexOf per chunk). A line longer than the limit goes whole into a
 * chunk of its own.
 */
export function bytesCutter(limit: number): Cutter {
  return {
    decide(block, position, chunk) {
      const available = block.length - position;
      const room = limit - chunk.bytes;
      if (available <= room) return { take: available, end: 'none' };
      if (room > 0) {
        const nl = block.lastIndexOf(NEWLINE, position + room - 1);
        if (nl >= position) return { take: nl + 1 - position, end: 'after' };
      }
      // No line ends within the limit in this block. If the chunk has complete lines, it ends
      // after them (the line under way, if already started in it, moves on with the rest).
      if (chunk.lastLineEnd > 0) return { take: 0, end: chunk.lastLineEnd === chunk.bytes ? 'after' : 'at-last-line-end' };
      // The chunk holds only the start of one line, longer than a chunk: it goes whole into it.
      const nl = block.indexOf(NEWLINE, position);
      return nl === -1 ? { take: available, end: 'none' } : { take: nl + 1 - position, end: 'after' };
    },
  };
}

/**
 * K chunks of about equal size: chunk i ends at the first line end at or after byte
 * ⌈(i+1)·total/K⌉ − 1. A long line may carry a chunk past later boundaries: those are skipped,
 * so there are never more than K chunks.
 */
export function chunksCutter(count: number, totalBytes: number): Cutter {
  let index = 0;
  const boundary = (i: number) => Math.ceil(((i + 1) * totalBytes) / count);
  return {
    decide(block, position, chunk) {
      const available = block.length - position;
      if (index >= count - 1) return { take: available, end: 'none' };
      const from = boundary(index) - 1 - chunk.groupBytes;
      if (from >= available) return { take: available, end: 'none' };
      const nl = block.indexOf(NEWLINE, position + Math.max(from, 0));
      if (nl === -1) return { take: available, end: 'none' };
      const take = nl + 1 - position;
      const chunkEnd = chunk.groupBytes + take;
      index++;
      while (index < count - 1 && boundary(index) <= chunkEnd) index++;
      return { take, end: 'after' };
    },
  };
}

/** Feed one block through the cutter into the writer. */
export async function cutBlock(block: Buffer, cutter: Cutter, writer: ChunkWriter): Promise<void> {
  let position = 0;
  while (position < block.length) {
    const decision = cutter.decide(block, position, writer.chunk);
    if (decision.take > 0) {
      await writer.write(block, position, position + decision.take, decision.lines ?? 0);
      position += decision.take;
    }
    if (decision.end === 'after') await writer.endChunk();
    else if (decision.end === 'at-last-line-end') await writer.endChunkAtLastLineEnd();
  }
}

const NEWLINE_BLOCK = Buffer.from('\n');

/**
 * Cut several sources as one stream. A source that does not end with a newline gets one at its
 * end when another source follows, so that the lines of two files are never glued into one;
 * the very last source is kept as it is (split(1) keeps a last unterminated line too).
 */
export async function cutSources(sources: AsyncIterable<Buffer>[], cutter: Cutter, writer: ChunkWriter): Promise<void> {
  for (const [i, blocks] of sources.entries()) {
    let last = NEWLINE;
    for await (const block of blocks) {
      if (block.length === 0) continue;
      last = block[block.length - 1]!;
      await cutBlock(block, cutter, writer);
    }
    if (last !== NEWLINE && i < sources.length - 1) await cutBlock(NEWLINE_BLOCK, cutter, writer);
  }
}
