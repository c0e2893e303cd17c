/**
 * split: cut input into numbered chunks of a job, streaming with bounded memory.
 *
 * The steps, each in the file named for it:
 *   inputs.ts        what to read (files, globs, stdin), checked before anything is written
 *   file-items.ts    --files: lists of existing files instead of data
 *   group-names.ts   exact, unique group names
 *   existing-job.ts  create, leave an identical job as it is, add a group, replace (--force), refuse
 *   cutters.ts       where chunks end (lines, bytes, K chunks), never inside a line
 *   chunk-writer.ts  writing and naming chunks; the manifest's `groups` follow what is written
 *   live-manifest.ts job.json while the split runs
 *   job-writes.ts    every write to the job folder
 *
 * job.json is written first with `complete: false` and rewritten with `complete: true` only at
 * the very end: a split that dies leaves a job that says it is unfinished.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { errorCode, PieceworkError, UsageError } from '../errors.js';
import { ignoreEvents, type EventSink } from '../events.js';
import { chunkWidthFor, MIN_CHUNK_WIDTH, PROTOCOL_VERSION } from '../store/layout.js';
import { PosixJobStore } from '../store/posix-store.js';
import { isRemoteAddress } from '../store/open-store.js';
import type { JobManifest, SplitMode, SplitRecord } from '../manifest.js';
import { ChunkWriter } from './chunk-writer.js';
import { cutSources, makeCutter } from './cutters.js';
import { planJob, type JobPlan } from './existing-job.js';
import { fileListWidth, resolveFileItems, writeFileListChunks } from './file-items.js';
import { checkGroupName, groupNamesForFiles } from './group-names.js';
import { readBlocks, resolveInputs, type Source } from './inputs.js';
import { SplitJobWrites } from './job-writes.js';
import { LiveManifest } from './live-manifest.js';

export interface SplitOptions {
  into: string;
  /** Input files or globs; "-" is stdin. */
  inputs: string[];
  mode: SplitMode;
  /** Lines per chunk, bytes per chunk, number of chunks, or files per chunk. */
  size: number;
  /** Put each input file's chunks in its own group folder. */
  groupPerFile?: boolean;
  /** Put all chunks in this group folder; on an existing job whose chunks are in groups, add it. */
  group?: string;
  /** The outputs' extension, with or without its dot (".json", "json"); none by default. */
  ext?: string;
  force?: boolean;
  staleSeconds?: number;
  retries?: number;
  stdin?: Readable;
  onEvent?: EventSink;
}

export interface SplitResult {
  job: string;
  /** Chunks the job has now. */
  chunks: number;
  /** Chunks this split wrote (0 when the job was left unchanged). */
  written: number;
  /** Bytes this split wrote into chunks. */
  bytes: number;
  /** The job's group names ('' is the top level). */
  groups: string[];
  /** create, add-group, replace, or unchanged (the same split was there already). */
  action: JobPlan['action'];
}

export const DEFAULT_STALE_SECONDS = 60;
export const DEFAULT_RETRIES = 2;

export async function split(options: SplitOptions): Promise<SplitResult> {
  const started = Date.now();
  const onEvent = options.onEvent ?? ignoreEvents;
  const { mode, size } = options;
  if (!Number.isInteger(size) || size < 1) throw new UsageError(`the ${mode} per chunk must be a positive whole number`);
  const ext = outputExtension(options.ext);
  const group = options.group === undefined ? undefined : checkGroupName(options.group);
  if (group !== undefined && options.groupPerFile) throw new UsageError('--group and --group-by-file do not go together');
  if (isRemoteAddress(options.into)) throw new UsageError(`--into ${options.into}: split writes a job in a folder this host opens`, 'run split on a host that mounts the folder (the head); workers can still reach it over sftp://');
  const store = new PosixJobStore(options.into);
  const layout = { root: store.location };
  const writes = new SplitJobWrites(store);

  // Everything is checked before anything is written: bad input leaves nothing half-made.
  const sources = mode === 'files' ? [] : await resolveInputs(options.inputs, options.stdin);
  const fileItems = mode === 'files' ? await resolveFileItems(options.inputs, layout.root) : [];
  if (mode === 'chunks' && sources.some((s) => s.kind === 'stdin')) {
    throw new UsageError('--chunks needs to know the input size, so it cannot read stdin', 'use --lines or --bytes for stdin, or save the input to a file first');
  }
  const record: SplitRecord = {
    mode,
    size,
    inputs: mode === 'files' ? options.inputs.map((p) => path.resolve(p)) : sources.map((s) => s.label),
    grouping: group !== undefined ? 'named' : options.groupPerFile ? 'per-file' : 'none',
  };
  const staleSeconds = options.staleSeconds ?? DEFAULT_STALE_SECONDS;
  const retries = options.retries ?? DEFAULT_RETRIES;
  const plan = await planJob(writes, {
    split: record,
    group,
    ext,
    staleSeconds,
    retries,
    readsStdin: sources.some((s) => s.kind === 'stdin'),
    newestInputMtimeMs: Math.max(0, ...sources.map((s) => s.mtimeMs ?? 0)),
    fileListChunks: mode === 'files' ? Math.ceil(fileItems.length / size) : undefined,
    force: options.force ?? false,
  });
  if (plan.action === 'unchanged') {
    const { manifest } = plan;
    return { job: layout.root, chunks: manifest.chunkCount, written: 0, bytes: 0, groups: manifest.groups.map((g) => g.name), action: 'unchanged' };
  }

  let manifest: JobManifest;
  if (plan.action === 'add-group') {
    manifest = plan.manifest;
    manifest.complete = false;
    delete manifest.completedAt;
    manifest.split.inputs.push(...record.inputs);
  } else {
    if (plan.action === 'replace') await writes.removeJob();
    await writes.createFolders();
    manifest = {
      protocol: PROTOCOL_VERSION,
      tool: 'piecework',
      id: randomBytes(8).toString('hex'),
      created: new Date().toISOString(),
      split: record,
      chunkCount: 0,
      groups: [],
      ext,
      complete: false,
      staleSeconds,
      retries,
    };
  }
  const live = new LiveManifest(writes, manifest);
  await live.start();

  const totalBytes = sources.every((s) => s.size !== undefined) ? sources.reduce((sum, s) => sum + (s.size ?? 0), 0) : undefined;
  onEvent({ type: 'split:start', job: layout.root, totalBytes, inputs: sources.length || fileItems.length });
  const writer = new ChunkWriter(writes, manifest.groups, { onEvent, totalBytes, onChunk: () => live.chunkWritten() });
  try {
    await writeChunks(writer, { ...options, group }, sources, fileItems, totalBytes ?? 0);
  } catch (error) {
    await writer.abort();
    await live.finish(false).catch(() => {});
    throw splitFailure(error, writer.chunksWritten);
  }
  await live.finish(true);
  onEvent({ type: 'split:done', job: layout.root, chunks: writer.chunksWritten, bytes: writer.bytesWritten, ms: Date.now() - started });
  return { job: layout.root, chunks: manifest.chunkCount, written: writer.chunksWritten, bytes: writer.bytesWritten, groups: manifest.groups.map((g) => g.name), action: plan.action };
}

async function writeChunks(writer: ChunkWriter, options: SplitOptions, sources: Source[], fileItems: string[], totalBytes: number): Promise<void> {
  const { mode, size, group, stdin } = options;
  if (mode === 'files') {
    writer.startGroup(group ?? '', fileListWidth(fileItems.length, size));
    await writeFileListChunks(writer, fileItems, size);
    return;
  }
  const width = mode === 'chunks' ? chunkWidthFor(size) : MIN_CHUNK_WIDTH;
  if (options.groupPerFile) {
    const names = groupNamesForFiles(sources.map((s) => s.path ?? s.label));
    for (const [i, source] of sources.entries()) {
      writer.startGroup(names[i]!, width);
      await cutSources([readBlocks(source, stdin)], makeCutter(mode, size, source.size ?? 0), writer);
      await writer.endChunk();
    }
    return;
  }
  writer.startGroup(group ?? '', width);
  await cutSources(
    sources.map((s) => readBlocks(s, stdin)),
    makeCutter(mode, size, totalBytes),
    writer,
  );
  await writer.endChunk();
}

/** `--ext json` or `--ext .json` → ".json"; none → "". */
export function outputExtension(text: string | undefined): string {
  if (text === undefined || text === '') return '';
  const ext = text.startsWith('.') ? text : '.' + text;
  if (ext === '.' || /[/\\\0\n]/.test(ext)) throw new UsageError(`--ext ${JSON.stringify(text)}: an extension is a name without "/", like json or .json`);
  return ext;
}

function splitFailure(error: unknown, chunks: number): PieceworkError {
  const hint = 'the job is marked as unfinished (job.json "complete": false); fix the cause and run the same split again with --force';
  if (error instanceof PieceworkError) return new PieceworkError(error.message, { hint: error.hint ?? hint, exitStatus: error.exitStatus, cause: error });
  const code = errorCode(error);
  const what = code === 'ENOSPC' ? 'the disk is full' : error instanceof Error ? error.message : String(error);
  return new PieceworkError(`split failed after ${chunks} chunks: ${what}`, { hint, cause: error });
}
