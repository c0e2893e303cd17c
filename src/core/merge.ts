/**
 * merge: the outputs in natural chunk order, each exactly once (invariant 2), to a stream or to a
 * file written atomically. Read-only on the job, so it runs from any host that sees the folder.
 * Memory stays bounded whatever the size: outputs are streamed, never loaded whole.
 */
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { IncompleteJobError, PieceworkError, UsageError, errorCode } from './errors.js';
import { ignoreEvents, type EventSink } from './events.js';
import { isExhausted, readFailure } from './failures.js';
import { JobLayout } from './job-folder.js';
import { readManifest } from './manifest.js';
import { listChunks, listOutputs } from './scan.js';
import { FOLLOW_POLL_MS } from './follow.js';

export interface MergeOptions {
  job: string;
  /** Write here (atomically: temp file + rename) instead of `stdout`. */
  output?: string;
  stdout?: Writable;
  /** Merge what exists, skipping missing outputs. */
  partial?: boolean;
  /** Only this group folder (e.g. "layer03"). */
  group?: string;
  /** A reducer given the ordered output paths as arguments (or a file listing them, for `{list}`). */
  reduce?: string[];
  /** Emit outputs in order as they are committed, until the job is complete. */
  follow?: boolean;
  pollMs?: number;
  signal?: AbortSignal;
  onEvent?: EventSink;
}

export interface MergeResult {
  outputs: number;
  missing: number;
  bytes: number;
  target: string;
}

const READ_SIZE = 4 * 1024 * 1024;

export async function merge(options: MergeOptions): Promise<MergeResult> {
  const layout = new JobLayout(options.job);
  const onEvent = options.onEvent ?? ignoreEvents;
  if (options.reduce && options.follow) throw new UsageError('--reduce and --follow cannot be used together', 'a reducer needs every output at once');
  const manifest = await readManifest(layout);
  const select = (names: string[]) => (options.group ? names.filter((c) => c.startsWith(`${options.group}/`)) : names);
  let chunks = select(await listChunks(layout));
  if (options.group && chunks.length === 0) throw new UsageError(`the job has no group "${options.group}"`, 'list the groups with `ls JOB/chunks`');
  const outputs = await listOutputs(layout);
  const missing = chunks.filter((c) => !outputs.has(c));

  if (!options.partial && !options.follow && (missing.length > 0 || !manifest.complete)) {
    const what = !manifest.complete ? `the split of this job has not finished (${chunks.length} chunks so far)` : `${missing.length} of ${chunks.length} chunks have no output yet`;
    throw new IncompleteJobError(`job incomplete: ${what}`, missing.length, 'see what is missing with `piecework verify JOB`, or merge what exists with --partial');
  }

  const sink = await openSink(options);
  let bytes = 0;
  let merged = 0;
  try {
    if (options.reduce) {
      const ordered = chunks.filter((c) => outputs.has(c)).map((c) => path.join(layout.outDir, outputs.get(c)!));
      await runReducer(options.reduce, ordered, sink.stream, layout);
      merged = ordered.length;
    } else if (!options.follow && sink.fd !== undefined) {
      const ordered = chunks.filter((c) => outputs.has(c)).map((c) => path.join(layout.outDir, outputs.get(c)!));
      bytes = await catInto(ordered, sink.fd, (done) => onEvent({ type: 'merge:progress', outputs: done, totalOutputs: ordered.length, bytes: 0 }));
      merged = ordered.length;
    } else if (!options.follow) {
      const total = chunks.filter((c) => outputs.has(c)).length;
      for (const chunk of chunks) {
        const relative = outputs.get(chunk);
        if (relative === undefined) continue;
        bytes += await copyInto(path.join(layout.outDir, relative), sink.stream);
        merged++;
        if (merged % 64 === 0 || merged === total) onEvent({ type: 'merge:progress', outputs: merged, totalOutputs: total, bytes });
      }
    } else {
      ({ merged, bytes } = await follow(layout, chunks, select, options, sink.stream, onEvent));
      chunks = select(await listChunks(layout));
    }
    await sink.commit();
  } catch (error) {
    await sink.abort();
    throw error;
  }
  return { outputs: merged, missing: chunks.length - merged, bytes, target: options.output ?? '-' };
}

interface Sink {
  stream: Writable;
  /** A file descriptor `cat` may write to directly (a file target, or this process's stdout). */
  fd?: number;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

async function openSink(options: MergeOptions): Promise<Sink> {
  if (!options.output) {
    const stream = options.stdout ?? process.stdout;
    return { stream, fd: stream === process.stdout ? 1 : undefined, commit: async () => {}, abort: async () => {} };
  }
  const target = path.resolve(options.output);
  const temp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}`);
  const handle = await fs.open(temp, 'w').catch((error: unknown) => {
    throw new PieceworkError(`cannot write ${options.output}: ${(error as Error).message}`, { hint: 'check that its folder exists and is writable' });
  });
  const stream = handle.createWriteStream({ highWaterMark: READ_SIZE });
  const closed = () => new Promise<void>((resolve, reject) => {
    stream.once('error', reject);
    stream.end(() => resolve());
  });
  return {
    stream,
    fd: handle.fd,
    commit: async () => {
      await closed();
      await fs.rename(temp, target);
    },
    abort: async () => {
      stream.destroy();
      await fs.rm(temp, { force: true });
    },
  };
}

/**
 * Concatenate files onto `fd` with cat(1), in argument batches: cat copies inside the kernel
 * (copy_file_range), where node would move every byte through JavaScript buffers.
 */
async function catInto(files: string[], fd: number, onBatch: (done: number) => void): Promise<number> {
  const { spawn } = await import('node:child_process');
  const before = await fs.stat(`/proc/self/fd/${fd}`).then((s) => s.size, () => 0);
  let start = 0;
  while (start < files.length) {
    let end = start;
    let length = 0;
    while (end < files.length && (end === start || length + files[end]!.length < 100_000)) length += files[end++]!.length + 1;
    const batch = files.slice(start, end);
    const stderr = await new Promise<string>((resolve, reject) => {
      const child = spawn('cat', ['--', ...batch], { stdio: ['ignore', fd, 'pipe'] });
      let text = '';
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (text += d));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve('') : resolve(text.trim() || `cat exited ${code}`)));
    });
    if (stderr) {
      if (/Broken pipe/i.test(stderr)) throw Object.assign(new Error('EPIPE'), { code: 'EPIPE' });
      throw new PieceworkError(`merge failed: ${stderr}`, { hint: 'an output may have been removed during the merge (verify --requeue?); run the merge again' });
    }
    start = end;
    onBatch(start);
  }
  const after = await fs.stat(`/proc/self/fd/${fd}`).then((s) => s.size, () => 0);
  return Math.max(0, after - before);
}

async function copyInto(file: string, sink: Writable): Promise<number> {
  let bytes = 0;
  const source = createReadStream(file, { highWaterMark: READ_SIZE });
  try {
    for await (const data of source as AsyncIterable<Buffer>) {
      bytes += data.length;
      if (!sink.write(data)) await once(sink, 'drain');
    }
  } catch (error) {
    if (errorCode(error) === 'ENOENT') throw new PieceworkError(`${file} disappeared during the merge`, { hint: 'something removed an output (verify --requeue?); run the merge again' });
    throw error;
  }
  return bytes;
}

async function runReducer(argv: string[], files: string[], sink: Writable, layout: JobLayout): Promise<void> {
  // Loaded only for a reducer: a plain merge starts without execa.
  const { execa } = await import('execa');
  let args = argv.slice(1);
  let listFile: string | undefined;
  if (argv.some((a) => a.includes('{list}'))) {
    listFile = layout.tempPath('merge-list');
    await fs.writeFile(listFile, files.join('\n') + '\n');
    args = args.map((a) => a.replaceAll('{list}', listFile!));
  } else {
    const length = files.reduce((sum, f) => sum + f.length + 1, 0);
    if (length > 1_000_000) throw new UsageError(`${files.length} output paths are too many for one command line`, 'put {list} in the reducer command to get a file that lists them, one per line');
    args = [...args, ...files];
  }
  try {
    const child = execa(argv[0]!, args, { stdin: 'ignore', stdout: 'pipe', stderr: 'inherit', buffer: false, reject: false });
    child.stdout.pipe(sink, { end: false });
    const result = await child;
    await new Promise((resolve) => (child.stdout.readableEnded ? resolve(undefined) : child.stdout.once('end', resolve)));
    if (result.failed) {
      const why = result.code === 'ENOENT' ? `reducer not found: ${argv[0]}` : `the reducer ${argv[0]} failed (${result.signal ? `killed by ${result.signal}` : `exit ${result.exitCode}`})`;
      throw new PieceworkError(why, { hint: 'nothing was written to the target' });
    }
  } finally {
    if (listFile) await fs.rm(listFile, { force: true });
  }
}

/** Emit each output as soon as it and every output before it exist. */
async function follow(
  layout: JobLayout,
  initialChunks: string[],
  select: (names: string[]) => string[],
  options: MergeOptions,
  sink: Writable,
  onEvent: EventSink,
): Promise<{ merged: number; bytes: number }> {
  let chunks = initialChunks;
  let merged = 0;
  let bytes = 0;
  let index = 0;
  const pollMs = options.pollMs ?? FOLLOW_POLL_MS;
  for (;;) {
    if (options.signal?.aborted) break;
    const outputs = await listOutputs(layout);
    while (index < chunks.length) {
      const chunk = chunks[index]!;
      const relative = outputs.get(chunk);
      if (relative === undefined) {
        const failure = await readFailure(layout, chunk);
        if (failure && isExhausted(failure) && !options.partial) {
          throw new PieceworkError(`chunk ${chunk} failed for good, so the merge cannot go on in order`, { hint: 'see `piecework verify JOB`; add --partial to skip failed chunks' });
        }
        if (failure && isExhausted(failure)) {
          index++;
          continue;
        }
        break;
      }
      bytes += await copyInto(path.join(layout.outDir, relative), sink);
      merged++;
      index++;
      onEvent({ type: 'merge:progress', outputs: merged, totalOutputs: chunks.length, bytes });
    }
    const manifest = await readManifest(layout);
    if (index >= chunks.length && manifest.complete) {
      chunks = select(await listChunks(layout));
      if (index >= chunks.length) break;
      continue;
    }
    if (!manifest.complete) chunks = select(await listChunks(layout));
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  return { merged, bytes };
}
