/**
 * split: cut input into numbered chunks of a job, streaming with bounded memory.
 *
 * A chunk never ends inside a line. Chunks are written under .tmp/ and renamed into chunks/, so a
 * worker following a split that is still streaming never reads a half-written chunk. job.json is
 * written first with `complete: false` and rewritten with `complete: true` only at the very end:
 * a split that dies leaves a job that says it is unfinished.
 */
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import fg from 'fast-glob';
import { errorCode, PieceworkError, UsageError } from './errors.js';
import { ignoreEvents, type EventSink } from './events.js';
import { chunkWidthFor, formatChunkNumber, groupNameFrom, JobLayout, MIN_CHUNK_WIDTH, PROTOCOL_VERSION } from './store/layout.js';
import { readManifest, writeManifest, type ChunkGroup, type JobManifest, type SplitMode } from './manifest.js';
import { compareNatural } from './natural-order.js';
import { PosixJobStore } from './store/posix-store.js';

async function exists(file: string): Promise<boolean> {
  return fs.stat(file).then(() => true, () => false);
}

export interface SplitOptions {
  into: string;
  /** Input files or globs; "-" is stdin. */
  inputs: string[];
  mode: SplitMode;
  /** Lines per chunk, bytes per chunk, number of chunks, or files per chunk. */
  size: number;
  /** Put each input file's chunks in its own group folder. */
  groupPerFile?: boolean;
  /** Put all chunks in this group folder. */
  group?: string;
  force?: boolean;
  /** Output extension, with or without its dot. */
  ext?: string;
  staleSeconds?: number;
  retries?: number;
  stdin?: Readable;
  onEvent?: EventSink;
}

export interface SplitResult {
  job: string;
  chunks: number;
  bytes: number;
  groups: string[];
}

export const DEFAULT_STALE_SECONDS = 60;
export const DEFAULT_RETRIES = 2;

const NEWLINE = 10;
const READ_SIZE = 4 * 1024 * 1024;

export async function split(options: SplitOptions): Promise<SplitResult> {
  const started = Date.now();
  const onEvent = options.onEvent ?? ignoreEvents;
  if (!Number.isInteger(options.size) || options.size < 1) throw new UsageError(`the ${options.mode} per chunk must be a positive whole number`);
  const store = new PosixJobStore(options.into);
  const layout = store.layout;
  const sources = options.mode === 'files' ? [] : await resolveInputs(options.inputs);
  const fileList = options.mode === 'files' ? await resolveFileItems(options.inputs, layout.root) : [];
  if (options.mode === 'chunks' && sources.some((s) => s.kind === 'stdin')) {
    throw new UsageError('--chunks needs to know the input size, so it cannot read stdin', 'use --lines or --bytes for stdin, or save the input to a file first');
  }
  await prepareJobFolder(store, options.force ?? false);

  const manifest: JobManifest = {
    protocol: PROTOCOL_VERSION,
    tool: 'piecework',
    id: randomBytes(8).toString('hex'),
    created: new Date().toISOString(),
    split: {
      mode: options.mode,
      size: options.size,
      inputs: options.mode === 'files' ? options.inputs : sources.map((s) => s.label),
      grouping: options.group ? 'named' : options.groupPerFile ? 'per-file' : 'none',
    },
    groups: [],
    ext: normalizeExt(options.ext),
    chunkCount: 0,
    complete: false,
    staleSeconds: options.staleSeconds ?? DEFAULT_STALE_SECONDS,
    retries: options.retries ?? DEFAULT_RETRIES,
  };
  await writeManifest(store, manifest);

  const totalBytes = sources.every((s) => s.size !== undefined) ? sources.reduce((sum, s) => sum + (s.size ?? 0), 0) : undefined;
  onEvent({ type: 'split:start', job: layout.root, totalBytes, inputs: sources.length || fileList.length });

  // Followers (`work --follow`, `merge --follow`) watch job.json: rewrite it about once a second.
  let lastManifestWrite = Date.now();
  const announceChunks = async (count: number): Promise<void> => {
    if (Date.now() - lastManifestWrite < 1000) return;
    lastManifestWrite = Date.now();
    manifest.chunkCount = count;
    manifest.groups = writer.groupRecords();
    await writeManifest(store, manifest);
  };
  const writer = new ChunkWriter(layout, onEvent, totalBytes, announceChunks);
  try {
    if (options.mode === 'files') {
      await writeFileListChunks(writer, fileList, options.size, options.group ? groupNameFrom(options.group) : '');
    } else if (options.groupPerFile) {
      const groupNames = uniqueGroupNames(sources.map((s) => s.label));
      for (const [i, source] of sources.entries()) {
        const cutter = makeCutter(options.mode, options.size, source.size ?? 0);
        writer.startGroup(groupNames[i]!, options.mode === 'chunks' ? chunkWidthFor(options.size) : MIN_CHUNK_WIDTH);
        await cutStream(openSource(source, options.stdin), cutter, writer);
        await writer.finishGroup();
      }
    } else {
      const cutter = makeCutter(options.mode, options.size, totalBytes ?? 0);
      writer.startGroup(options.group ? groupNameFrom(options.group) : '', options.mode === 'chunks' ? chunkWidthFor(options.size) : MIN_CHUNK_WIDTH);
      for (const source of sources) await cutStream(openSource(source, options.stdin), cutter, writer);
      await writer.finishGroup();
    }
  } catch (error) {
    await writer.abort();
    manifest.chunkCount = writer.chunksWritten;
    manifest.groups = writer.groupRecords();
    await writeManifest(store, manifest).catch(() => {});
    throw splitFailure(error, writer.chunksWritten);
  }

  manifest.chunkCount = writer.chunksWritten;
  manifest.groups = writer.groupRecords();
  manifest.complete = true;
  manifest.completedAt = new Date().toISOString();
  await writeManifest(store, manifest);
  onEvent({ type: 'split:done', job: layout.root, chunks: writer.chunksWritten, bytes: writer.bytesWritten, ms: Date.now() - started });
  return { job: layout.root, chunks: writer.chunksWritten, bytes: writer.bytesWritten, groups: writer.groups };
}

function splitFailure(error: unknown, chunks: number): PieceworkError {
  const hint = 'the job is marked as unfinished (job.json "complete": false); fix the cause and run the same split again with --force';
  if (error instanceof PieceworkError) return new PieceworkError(error.message, { hint: error.hint ?? hint, exitStatus: error.exitStatus, cause: error });
  const code = errorCode(error);
  const what = code === 'ENOSPC' ? 'the disk is full' : error instanceof Error ? error.message : String(error);
  return new PieceworkError(`split failed after ${chunks} chunks: ${what}`, { hint, cause: error });
}

// ---------------------------------------------------------------------------------------------
// Inputs

interface Source {
  kind: 'file' | 'stdin';
  label: string;
  path?: string;
  size?: number;
}

async function resolveInputs(inputs: string[]): Promise<Source[]> {
  const sources: Source[] = [];
  const list = inputs.length === 0 ? ['-'] : inputs;
  for (const input of list) {
    if (input === '-') {
      if (sources.some((s) => s.kind === 'stdin')) throw new UsageError('stdin ("-") can be read only once');
      sources.push({ kind: 'stdin', label: 'stdin' });
      continue;
    }
    for (const file of await expandInput(input)) {
      sources.push({ kind: 'file', label: file, path: file, size: await readableFileSize(file) });
    }
  }
  return sources;
}

/** A name that exists is a file; otherwise a glob the shell did not expand. */
async function expandInput(input: string): Promise<string[]> {
  if ((await exists(input)) || !fg.isDynamicPattern(input)) return [input];
  const matches = await fg(input, { onlyFiles: true, dot: false });
  if (matches.length === 0) throw new UsageError(`${input}: no file matches this pattern`);
  return matches.sort(compareNatural);
}

async function readableFileSize(file: string): Promise<number> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(file, 'r');
    const stat = await handle.stat();
    if (stat.isDirectory()) throw new UsageError(`${file}: is a folder, not a file`, 'give the files inside it, e.g. "dir/*.tsv", or use --files to register files as work items');
    return stat.size;
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

function openSource(source: Source, stdin: Readable | undefined): AsyncIterable<Buffer> {
  if (source.kind === 'stdin') return (stdin ?? process.stdin) as AsyncIterable<Buffer>;
  return createReadStream(source.path!, { highWaterMark: READ_SIZE });
}

function uniqueGroupNames(labels: string[]): string[] {
  const seen = new Map<string, number>();
  return labels.map((label) => {
    const base = groupNameFrom(path.basename(label).replace(/\.[^.]*$/, ''));
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    return count === 0 ? base : `${base}_${count + 1}`;
  });
}

/**
 * `--files`: the work items are existing files, listed (not copied) in chunks. Paths are stored
 * relative to the job folder when the two share a folder below the root, so that hosts which
 * mount the share at another place still find them; otherwise absolute.
 */
async function resolveFileItems(patterns: string[], jobRoot: string): Promise<string[]> {
  if (patterns.length === 0) throw new UsageError('--files needs at least one file or glob');
  const found: string[] = [];
  for (const pattern of patterns) {
    const matches = (await exists(pattern)) ? [pattern] : await fg(pattern, { onlyFiles: true, dot: false });
    if (matches.length === 0) throw new UsageError(`${pattern}: no file matches`);
    found.push(...matches.sort(compareNatural));
  }
  return found.map((file) => {
    if (file.includes('\n')) throw new UsageError(`${JSON.stringify(file)}: file names with a newline cannot be listed in a chunk`);
    const absolute = path.resolve(file);
    const relative = path.relative(jobRoot, absolute);
    const sharedTop = absolute.split(path.sep)[1] === jobRoot.split(path.sep)[1];
    return sharedTop ? relative : absolute;
  });
}

async function writeFileListChunks(writer: ChunkWriter, files: string[], perChunk: number, group: string): Promise<void> {
  writer.startGroup(group, chunkWidthFor(Math.ceil(files.length / perChunk)));
  for (let i = 0; i < files.length; i += perChunk) {
    await writer.write(Buffer.from(files.slice(i, i + perChunk).join('\n') + '\n'));
    await writer.endChunk();
  }
  await writer.finishGroup();
}

async function prepareJobFolder(store: PosixJobStore, force: boolean): Promise<void> {
  const layout = store.layout;
  let entries: string[] = [];
  try {
    entries = await fs.readdir(layout.root);
  } catch (error) {
    if (errorCode(error) === 'ENOTDIR') throw new UsageError(`${layout.root} exists and is not a folder`);
    if (errorCode(error) !== 'ENOENT') throw error;
  }
  if (entries.length > 0) {
    const isJob = entries.includes('job.json');
    if (!force) {
      const what = isJob ? `a job already exists at ${layout.root}` : `${layout.root} is not empty`;
      let detail = '';
      if (isJob) {
        const manifest = await readManifest(store).catch(() => undefined);
        if (manifest) detail = ` (${manifest.chunkCount} chunks, split ${manifest.complete ? 'complete' : 'unfinished'})`;
      }
      throw new UsageError(what + detail, isJob ? 'choose another --into, or add --force to replace that job (its chunks and outputs are deleted)' : 'choose an empty or new folder for --into, or add --force');
    }
    // --force replaces the job: only piecework's own entries go; anything else the user keeps.
    for (const dir of [...layout.folders, layout.stopFile, layout.jobFile]) await fs.rm(dir, { recursive: true, force: true });
  }
  for (const dir of layout.folders) await fs.mkdir(dir, { recursive: true });
}

// ---------------------------------------------------------------------------------------------
// Cutting a byte stream at line ends

/** Decides where chunks end. All cuts happen right after a newline. */
interface Cutter {
  /**
   * Given `region` (complete lines, ending in a newline) and how much the current chunk already
   * holds, return how many bytes of the region still belong to the current chunk. A chunk is
   * closed after that many bytes, unless the answer is the whole region.
   */
  take(region: Buffer, start: number, chunkBytes: number, chunkLines: number, streamOffset: number): { bytes: number; lines: number; cut: boolean };
}

function makeCutter(mode: SplitMode, size: number, totalBytes: number): Cutter {
  if (mode === 'lines') return linesCutter(size);
  if (mode === 'bytes') return bytesCutter(size);
  return chunksCutter(size, totalBytes);
}

function linesCutter(linesPerChunk: number): Cutter {
  return {
    take(region, start, _chunkBytes, chunkLines) {
      let need = linesPerChunk - chunkLines;
      let pos = start;
      while (need > 0) {
        const nl = region.indexOf(NEWLINE, pos);
        if (nl === -1) break;
        pos = nl + 1;
        need--;
      }
      const lines = linesPerChunk - chunkLines - need;
      return { bytes: pos - start, lines, cut: need === 0 };
    },
  };
}

function bytesCutter(limit: number): Cutter {
  return {
    take(region, start, chunkBytes) {
      const available = region.length - start;
      const room = limit - chunkBytes;
      if (available <= room) return { bytes: available, lines: 0, cut: available === room };
      const lastNewline = room > 0 ? region.lastIndexOf(NEWLINE, start + room - 1) : -1;
      if (lastNewline >= start) return { bytes: lastNewline + 1 - start, lines: 0, cut: true };
      // The next line does not fit: close the chunk, or, in an empty chunk, take that one long line.
      if (chunkBytes > 0) return { bytes: 0, lines: 0, cut: true };
      const nl = region.indexOf(NEWLINE, start);
      return { bytes: nl + 1 - start, lines: 0, cut: true };
    },
  };
}

/** K chunks of about equal size: chunk i ends at the first line end at or after (i+1)·total/K. */
function chunksCutter(count: number, totalBytes: number): Cutter {
  let index = 0;
  return {
    take(region, start, _chunkBytes, _chunkLines, streamOffset) {
      const available = region.length - start;
      // A long line may have carried the previous chunk past later boundaries: skip those.
      while (index < count - 1 && Math.ceil(((index + 1) * totalBytes) / count) <= streamOffset) index++;
      if (index >= count - 1) return { bytes: available, lines: 0, cut: false };
      const boundary = Math.ceil(((index + 1) * totalBytes) / count);
      const boundaryInRegion = boundary - streamOffset;
      if (boundaryInRegion > available) return { bytes: available, lines: 0, cut: false };
      const from = start + Math.max(boundaryInRegion - 1, 0);
      const nl = region.indexOf(NEWLINE, from);
      index++;
      return { bytes: nl + 1 - start, lines: 0, cut: true };
    },
  };
}

async function cutStream(stream: AsyncIterable<Buffer>, cutter: Cutter, writer: ChunkWriter): Promise<void> {
  // Only complete lines are handed to the cutter; the tail after the last newline waits for more.
  let carry: Buffer | undefined;
  for await (const data of stream) {
    const buffer = carry ? Buffer.concat([carry, data]) : data;
    const lastNewline = buffer.lastIndexOf(NEWLINE);
    if (lastNewline === -1) {
      carry = buffer;
      continue;
    }
    await writeLines(buffer.subarray(0, lastNewline + 1), cutter, writer);
    carry = lastNewline + 1 < buffer.length ? Buffer.from(buffer.subarray(lastNewline + 1)) : undefined;
  }
  // A last line without a newline still belongs to the job, as it does for split(1).
  if (carry && carry.length > 0) await writeLines(carry, lastLineCutter(cutter), writer);
}

/** The final unterminated line: it fits the current chunk unless the cutter would cut before it. */
function lastLineCutter(cutter: Cutter): Cutter {
  return {
    take(region, start, chunkBytes, chunkLines, streamOffset) {
      const terminated = Buffer.concat([region.subarray(start), Buffer.from([NEWLINE])]);
      const decision = cutter.take(terminated, 0, chunkBytes, chunkLines, streamOffset);
      if (decision.bytes === 0 && decision.cut) return decision;
      return { bytes: region.length - start, lines: 1, cut: false };
    },
  };
}

async function writeLines(region: Buffer, cutter: Cutter, writer: ChunkWriter): Promise<void> {
  let start = 0;
  while (start < region.length) {
    const decision = cutter.take(region, start, writer.chunkBytes, writer.chunkLines, writer.groupBytes);
    if (decision.bytes > 0) {
      await writer.write(region.subarray(start, start + decision.bytes), decision.lines);
      start += decision.bytes;
    }
    if (decision.cut) await writer.endChunk();
    else if (decision.bytes === 0) break;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing chunk files

class ChunkWriter {
  chunksWritten = 0;
  bytesWritten = 0;
  groupBytes = 0;
  chunkBytes = 0;
  chunkLines = 0;
  readonly groups: string[] = [];
  #layout: JobLayout;
  #onEvent: EventSink;
  #totalBytes: number | undefined;
  #group = '';
  #width = MIN_CHUNK_WIDTH;
  #index = 0;
  #handle: fs.FileHandle | undefined;
  #tempPath = '';
  #lastProgress = 0;
  #announce: (chunks: number) => Promise<void>;

  constructor(layout: JobLayout, onEvent: EventSink, totalBytes: number | undefined, announce: (chunks: number) => Promise<void>) {
    this.#layout = layout;
    this.#onEvent = onEvent;
    this.#totalBytes = totalBytes;
    this.#announce = announce;
  }

  readonly #records: ChunkGroup[] = [];

  /** The groups written so far, as the manifest records them. */
  groupRecords(): ChunkGroup[] {
    return this.#records.map((g) => ({ ...g }));
  }

  startGroup(group: string, width: number): void {
    this.#records.push({ name: group, count: 0, width });
    this.#group = group;
    this.#width = width;
    this.#index = 0;
    this.groupBytes = 0;
    if (group) this.groups.push(group);
  }

  async write(data: Buffer, lines = 0): Promise<void> {
    if (!this.#handle) {
      this.#tempPath = this.#layout.tempPath('split');
      this.#handle = await fs.open(this.#tempPath, 'w');
    }
    let offset = 0;
    while (offset < data.length) {
      const { bytesWritten } = await this.#handle.write(data, offset, data.length - offset);
      offset += bytesWritten;
    }
    this.chunkBytes += data.length;
    this.chunkLines += lines;
    this.groupBytes += data.length;
    this.bytesWritten += data.length;
  }

  async endChunk(): Promise<void> {
    if (!this.#handle) return;
    await this.#handle.close();
    this.#handle = undefined;
    const name = formatChunkNumber(this.#index, this.#width);
    const relative = this.#group ? `${this.#group}/${name}` : name;
    if (this.#group && this.#index === 0) await fs.mkdir(path.dirname(this.#layout.chunkPath(relative)), { recursive: true });
    await fs.rename(this.#tempPath, this.#layout.chunkPath(relative));
    this.#index++;
    this.#records[this.#records.length - 1]!.count++;
    this.chunksWritten++;
    this.chunkBytes = 0;
    this.chunkLines = 0;
    await this.#announce(this.chunksWritten);
    const now = Date.now();
    if (now - this.#lastProgress > 200) {
      this.#lastProgress = now;
      this.#onEvent({ type: 'split:progress', bytes: this.bytesWritten, chunks: this.chunksWritten, totalBytes: this.#totalBytes });
    }
  }

  async finishGroup(): Promise<void> {
    await this.endChunk();
  }

  async abort(): Promise<void> {
    if (this.#handle) {
      await this.#handle.close().catch(() => {});
      this.#handle = undefined;
      await fs.rm(this.#tempPath, { force: true }).catch(() => {});
    }
  }
}

function normalizeExt(ext: string | undefined): string {
  if (!ext) return '';
  const withDot = ext.startsWith('.') ? ext : `.${ext}`;
  if (withDot.includes('/') || withDot === '.') throw new UsageError(`--ext ${ext}: an extension is a dot and a name, without "/"`);
  return withDot;
}
