/**
 * merge: the outputs in natural chunk order, each exactly once (invariant 2), to a stream or to a
 * file written atomically. Read-only on the job, so it runs from any host that sees the folder.
 * Memory stays bounded whatever the size: outputs are streamed, never loaded whole.
 */
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Writable } from 'node:stream';
import { IncompleteJobError, JobReplacedError, LocalTempError, PieceworkError, UsageError } from './errors.js';
import { ignoreEvents, type EventSink } from './events.js';
import { isExhausted, readFailure } from './failures.js';
import { chunkNames, outputName, readManifest, type JobManifest } from './manifest.js';
import { OutputReadAhead, READ_AHEAD_OUTPUTS } from './output-read-ahead.js';
import { confirmOutputs } from './scan.js';
import { FOLLOW_POLL_MS, checkSplitAlive } from './follow.js';
import type { JobStore } from './store/job-store.js';
import { withJobStore, type JobTarget } from './store/open-store.js';

export interface MergeOptions extends JobTarget {
  /** Write here (a file: atomically, temp file + rename; a device or FIFO: into it) instead of `stdout`. */
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

export function merge(options: MergeOptions): Promise<MergeResult> {
  return withJobStore(options, (store) => mergeJob(store, options));
}

async function mergeJob(store: JobStore, options: MergeOptions): Promise<MergeResult> {
  const onEvent = options.onEvent ?? ignoreEvents;
  if (options.reduce && options.follow) throw new UsageError('--reduce and --follow cannot be used together', 'a reducer needs every output at once');
  const manifest = await readManifest(store);
  const target = options.output === undefined ? undefined : await resolveOutputTarget(options.output);
  if (options.output && target) await refuseTargetInsideJob(store, options.output, target.path);
  const select = (names: string[]) => (options.group ? names.filter((c) => c.startsWith(`${options.group}/`)) : names);
  let chunks = select(chunkNames(manifest));
  if (options.group && chunks.length === 0 && manifest.complete) throw new UsageError(`the job has no group "${options.group}"`, `its groups: ${manifest.groups.map((g) => g.name || '(top level)').join(', ')}`);
  // Every chunk the listing calls missing is looked up before the merge skips it or refuses.
  const done = options.follow ? new Set<string>() : await confirmOutputs(store, manifest, chunks);
  const missing = chunks.filter((c) => !done.has(c));

  if (!options.partial && !options.follow && (missing.length > 0 || !manifest.complete)) {
    const what = !manifest.complete ? `the split of this job has not finished (${chunks.length} chunks so far)` : `${missing.length} of ${chunks.length} chunks have no output yet`;
    throw new IncompleteJobError(`job incomplete: ${what}`, missing.length, 'see what is missing with `piecework verify JOB`, or merge what exists with --partial');
  }

  const sink = await openSink(options, target);
  let bytes = 0;
  let merged = 0;
  try {
    const ordered = chunks.filter((c) => done.has(c)).map((c) => outputName(manifest, c));
    const localPaths = ordered.map((name) => store.localPath('out', name));
    const allLocal = localPaths.every((p): p is string => p !== undefined);
    if (options.reduce) {
      if (!allLocal) throw new UsageError(`--reduce gives the reducer local paths: ${store.location} is not a folder on this host`, 'run the merge where the job folder is mounted');
      await runReducer(options.reduce, localPaths, sink.stream);
      merged = ordered.length;
    } else if (!options.follow && sink.fd !== undefined && allLocal) {
      bytes = await catInto(localPaths, sink.fd, (count) => onEvent({ type: 'merge:progress', outputs: count, totalOutputs: ordered.length, bytes: 0 }));
      merged = ordered.length;
    } else if (!options.follow) {
      // No local paths (an sftp:// job) or no file to hand cat: the next outputs are read while
      // one is written, or every output would cost its round trips one after another.
      bytes = await new OutputReadAhead(store, ordered).copyAll(sink.stream, (outputs, copied) => {
        merged = outputs;
        if (outputs % 64 === 0 || outputs === ordered.length) onEvent({ type: 'merge:progress', outputs, totalOutputs: ordered.length, bytes: copied });
      });
    } else {
      ({ merged, bytes, chunks } = await follow(store, manifest, select, options, sink.stream, onEvent));
    }
    await sink.commit();
  } catch (error) {
    await sink.abort();
    throw error;
  }
  return { outputs: merged, missing: chunks.length - merged, bytes, target: options.output ?? '-' };
}

/**
 * A target inside the job would be read back as an output, or removed with the job (invariant 7).
 * Judged on the path written to (a symlink's file) and on the job's real path too.
 */
async function refuseTargetInsideJob(store: JobStore, output: string, written: string): Promise<void> {
  const root = store.localPath('top', '');
  if (root === undefined) return;
  const roots = [root, await fs.realpath(root).catch(() => root)];
  const inside = (file: string) =>
    roots.some((top) => {
      const relative = path.relative(top, file);
      return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
    });
  if (inside(path.resolve(output)) || inside(written)) {
    throw new UsageError(`-o ${output} is inside the job folder`, 'write the merged result outside the job (e.g. -o result.tsv next to it)');
  }
}

/** Where -o writes: a file replaced atomically (`replace`), or a device, FIFO or socket written into. */
interface OutputTarget {
  path: string;
  replace: boolean;
}

/**
 * `-o /dev/null`, `-o /dev/stdout`, a named pipe: written into, as a shell's `>` does. Renaming a
 * file over them would destroy them — /dev/null, as root, for every program on the host. A symlink
 * to a file: the file it names is replaced, not the link.
 */
async function resolveOutputTarget(output: string): Promise<OutputTarget> {
  const literal = path.resolve(output);
  const info = await fs.stat(literal).catch(() => undefined);
  if (info?.isDirectory()) throw new UsageError(`-o ${output} is a folder`, 'give the merged result a file name (e.g. -o result.tsv), or use --into-dir for one file per output');
  if (info && !info.isFile()) return { path: literal, replace: false };
  if (info) return { path: await fs.realpath(literal), replace: true };
  // Missing, or a symlink to a missing file: as with a shell's `>`, the file the link names is made.
  const link = await fs.readlink(literal).catch(() => undefined);
  return { path: link === undefined ? literal : path.resolve(path.dirname(literal), link), replace: true };
}

interface Sink {
  stream: Writable;
  /** A file descriptor `cat` may write to directly (a file target, or this process's stdout). */
  fd?: number;
  commit(): Promise<void>;
  abort(): Promise<void>;
}

async function openSink(options: MergeOptions, target: OutputTarget | undefined): Promise<Sink> {
  if (!options.output || !target) {
    const stream = options.stdout ?? process.stdout;
    return { stream, fd: stream === process.stdout ? 1 : undefined, commit: async () => {}, abort: async () => {} };
  }
  const temp = target.replace ? path.join(path.dirname(target.path), `.${path.basename(target.path)}.${process.pid}.${randomBytes(4).toString('hex')}`) : undefined;
  const handle = await fs.open(temp ?? target.path, 'w').catch((error: unknown) => {
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
      if (temp) await fs.rename(temp, target.path);
    },
    abort: async () => {
      // A reducer's stdout may still be piped in: its last writes must not raise on a closed file.
      stream.on('error', () => {});
      stream.destroy();
      if (temp) await fs.rm(temp, { force: true });
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
      child.on('close', (code, signal) => (code === 0 ? resolve('') : resolve(signal === 'SIGPIPE' ? 'Broken pipe' : text.trim() || `cat exited ${code ?? signal}`)));
    });
    if (stderr) {
      // The reader closed its end (`merge | head`): not an error, as it is not for cat itself.
      if (/Broken pipe/i.test(stderr)) throw Object.assign(new Error('EPIPE'), { code: 'EPIPE' });
      // cat says "write error" for its output and names the file for an input it cannot read.
      if (/write error/i.test(stderr)) {
        const full = /No space left/i.test(stderr);
        throw new PieceworkError(`merge could not write its result: ${stderr.replace(/^cat: write error: /, '')}`, {
          hint: full ? 'the disk the result goes to is full: free space there, or write the result elsewhere, and run the merge again' : 'check where the result goes (stdout or -o) and run the merge again',
        });
      }
      throw new PieceworkError(`merge failed: ${stderr}`, { hint: 'an output may have been removed during the merge (verify --requeue?); run the merge again' });
    }
    start = end;
    onBatch(start);
  }
  const after = await fs.stat(`/proc/self/fd/${fd}`).then((s) => s.size, () => 0);
  return Math.max(0, after - before);
}

async function runReducer(argv: string[], files: string[], sink: Writable): Promise<void> {
  // Loaded only for a reducer: a plain merge starts without execa.
  const { execa } = await import('execa');
  let args = argv.slice(1);
  let listFile: string | undefined;
  if (argv.some((a) => a.includes('{list}'))) {
    // Outside the job folder: nothing in the job is the merge's, so nothing there can be cut off.
    listFile = path.join(tmpdir(), `piecework-merge-list.${process.pid}.${randomBytes(4).toString('hex')}`);
    await fs.writeFile(listFile, files.join('\n') + '\n').catch((error: unknown) => {
      throw new LocalTempError("the reducer's {list} file", tmpdir(), error);
    });
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
    child.stdout.unpipe(sink);
    if (result.failed) {
      const why = result.code === 'ENOENT' ? `reducer not found: ${argv[0]}` : `the reducer ${argv[0]} ${result.signal ? `was killed by ${result.signal}` : `failed (exit ${result.exitCode})`}`;
      throw new PieceworkError(why, { hint: 'nothing was written to the target' });
    }
  } finally {
    if (listFile) await fs.rm(listFile, { force: true });
  }
}

/**
 * Emit each output as soon as it and every output before it exist. Each pass reads job.json: a
 * replaced job (another id) ends the follow, and so does a split that stopped without finishing.
 */
async function follow(
  store: JobStore,
  initial: JobManifest,
  select: (names: string[]) => string[],
  options: MergeOptions,
  sink: Writable,
  onEvent: EventSink,
): Promise<{ merged: number; bytes: number; chunks: string[] }> {
  let manifest = initial;
  let chunks = select(chunkNames(manifest));
  let merged = 0;
  let bytes = 0;
  let index = 0;
  const pollMs = options.pollMs ?? FOLLOW_POLL_MS;
  for (;;) {
    if (options.signal?.aborted) break;
    while (index < chunks.length) {
      // Lookups of the next names, not a listing (it answers at once on sshfs): the next alone
      // (while waiting for it, one lookup a poll), then the rest of the window at once; the run
      // of them that exist is copied in order, read ahead (over SFTP: round trips).
      const next = chunks.slice(index, index + READ_AHEAD_OUTPUTS).map((chunk) => outputName(manifest, chunk));
      const first = await store.lookup('out', next[0]!);
      const found = first ? [first, ...(await Promise.all(next.slice(1).map((name) => store.lookup('out', name))))] : [first];
      const present = found.findIndex((info) => !info);
      const ready = next.slice(0, present === -1 ? next.length : present);
      if (ready.length > 0) {
        const before = bytes;
        await new OutputReadAhead(store, ready).copyAll(sink, (_outputs, copied) => {
          merged++;
          index++;
          bytes = before + copied;
          onEvent({ type: 'merge:progress', outputs: merged, totalOutputs: chunks.length, bytes });
        });
        continue;
      }
      const chunk = chunks[index]!;
      const failure = await readFailure(store, chunk);
      if (failure && isExhausted(failure) && !options.partial) {
        throw new PieceworkError(`chunk ${chunk} failed for good, so the merge cannot go on in order`, { hint: 'see `piecework verify JOB`; add --partial to skip failed chunks' });
      }
      if (failure && isExhausted(failure)) {
        index++;
        continue;
      }
      break;
    }
    const current = await readManifest(store);
    if (current.id !== initial.id) {
      throw new JobReplacedError(store.location, `merge --follow (${merged} outputs of the old job were written)`);
    }
    manifest = current;
    chunks = select(chunkNames(manifest));
    if (index >= chunks.length && manifest.complete) break;
    if (!manifest.complete) await checkSplitAlive(store, manifest);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  return { merged, bytes, chunks };
}
