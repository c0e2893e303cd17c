/**
 * The inputs of a split: files, globs the shell did not expand, and stdin — checked before any
 * job is made (a missing file, a folder, stdin that is a folder are refused up front), then read
 * in blocks.
 *
 * A file is read into two reused buffers: the next block is read while the current one is
 * written, so reading and writing overlap and no buffer is allocated per block.
 */
import { fstatSync, promises as fs } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import fg from 'fast-glob';
import { errorCode, PieceworkError, UsageError } from '../errors.js';
import { compareNatural } from '../natural-order.js';
import { exists } from '../scan.js';
import { allocateScanBuffer } from './newline-scan.js';

export interface Source {
  kind: 'file' | 'stdin';
  /** How the manifest records it: the file's absolute path, or "stdin". */
  label: string;
  path?: string;
  size?: number;
  mtimeMs?: number;
}

/**
 * Bytes per read. Each read and write is a hop to libuv's thread pool (~0.1 ms of CPU here):
 * 4 MiB blocks took ~0.15 s less CPU per GiB than 1 MiB blocks, and 256 KiB blocks far more.
 */
export const READ_BLOCK_BYTES = 4 * 1024 * 1024;

export async function resolveInputs(inputs: string[], stdin: Readable | undefined): Promise<Source[]> {
  const sources: Source[] = [];
  const list = inputs.length === 0 ? ['-'] : inputs;
  for (const input of list) {
    if (input === '-') {
      if (sources.some((s) => s.kind === 'stdin')) throw new UsageError('stdin ("-") can be read only once');
      checkStdinIsNotFolder(stdin);
      sources.push({ kind: 'stdin', label: 'stdin' });
      continue;
    }
    for (const file of await expandInput(input)) {
      const { size, mtimeMs } = await readableFileStat(file);
      sources.push({ kind: 'file', label: path.resolve(file), path: file, size, mtimeMs });
    }
  }
  return sources;
}

/** `split --into J < somedir` reads a folder: an error, not an empty job. */
function checkStdinIsNotFolder(stdin: Readable | undefined): void {
  const fd = stdin === undefined || stdin === process.stdin ? 0 : (stdin as { fd?: unknown }).fd;
  if (typeof fd !== 'number') return;
  let isFolder = false;
  try {
    isFolder = fstatSync(fd).isDirectory();
  } catch {
    return; // not a descriptor we can ask about; reading it will tell
  }
  if (isFolder) throw new UsageError('stdin is a folder, not data', 'give the files inside it as arguments, e.g. piecework split "dir/*.tsv" --into JOB');
}

/** A name that exists is a file; otherwise a glob the shell did not expand. */
async function expandInput(input: string): Promise<string[]> {
  if ((await exists(input)) || !fg.isDynamicPattern(input)) return [input];
  const matches = await fg(input, { onlyFiles: true, dot: false });
  if (matches.length === 0) throw new UsageError(`${input}: no file matches this pattern`);
  return matches.sort(compareNatural);
}

async function readableFileStat(file: string): Promise<{ size: number; mtimeMs: number }> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(file, 'r');
    const stat = await handle.stat();
    if (stat.isDirectory()) throw new UsageError(`${file}: is a folder, not a file`, 'give the files inside it, e.g. "dir/*.tsv", or use --files to register files as work items');
    return { size: stat.size, mtimeMs: stat.mtimeMs };
  } catch (error) {
    if (error instanceof PieceworkError) throw error;
    const code = errorCode(error);
    if (code === 'ENOENT') throw new UsageError(`${file}: no such file`);
    if (code === 'EACCES' || code === 'EPERM') throw new UsageError(`${file}: permission denied`, 'check that this user can read the input');
    throw error;
  } finally {
    await handle?.close();
  }
}

/** The source's bytes in blocks; a block is valid until the next one is asked for. */
export function readBlocks(source: Source, stdin: Readable | undefined): AsyncIterable<Buffer> {
  if (source.kind === 'stdin') return (stdin ?? process.stdin) as AsyncIterable<Buffer>;
  return readFileBlocks(source.path!);
}

/** Made once: files are read one after another, never two at once. In the scanner's memory (see newline-scan.ts). */
let readBuffers: [Buffer, Buffer] | undefined;

async function* readFileBlocks(file: string): AsyncGenerator<Buffer> {
  const handle = await fs.open(file, 'r');
  const buffers = (readBuffers ??= [allocateScanBuffer(READ_BLOCK_BYTES), allocateScanBuffer(READ_BLOCK_BYTES)]);
  let next = 0;
  let pending: Promise<{ bytesRead: number }> | undefined = handle.read(buffers[0]!, 0, READ_BLOCK_BYTES, null);
  try {
    for (;;) {
      const { bytesRead } = await pending;
      pending = undefined;
      if (bytesRead === 0) return;
      const current = buffers[next]!;
      next ^= 1;
      // Read ahead into the other buffer while the caller writes this one.
      pending = handle.read(buffers[next]!, 0, READ_BLOCK_BYTES, null);
      yield current.subarray(0, bytesRead);
    }
  } finally {
    await pending?.catch(() => {});
    await handle.close();
  }
}
