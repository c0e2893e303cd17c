/**
 * Running the user's command on one chunk. The command is argv, never a shell string: a file
 * name is data and can never become code. Placeholders inside arguments:
 *   {in}    the chunk file           {out}   where the output must be written (committed on success)
 *   {name}  the chunk name           {file}  the (first) input file of a --files job
 *   {files} every input file of a --files chunk (a lone `{files}` argument becomes one argument each)
 *   {job}   the job folder           {attempt} the attempt number, from 1
 *   {base}  the (first) input file's name, without folders (scans/a.png → a.png); the chunk's name
 *           in a data job       {stem}  the same without its last extension (a.png → a)
 * The same values are in the environment as PIECEWORK_IN, PIECEWORK_OUT, … for scripts.
 * Without {in}/{file}/{files} the chunk's data is the command's stdin; without {out} its stdout
 * is the output.
 *
 * How the command is started — node's spawn or the lane's fork server — is the lane's CommandStarter
 * (spawn/); this file decides what to run, with which files, and when to stop it.
 */
import { accessSync, closeSync, constants, openSync, promises as fs, statSync } from 'node:fs';
import path from 'node:path';
import { describeExit, type PieceworkError } from '../errors.js';
import type { CommandStarter } from '../spawn/command-starter.js';
import { nodeStarter } from '../spawn/node-starter.js';
import type { ChunkCgroup } from './chunk-cgroup.js';
import type { StderrCapture } from './stderr-capture.js';
import type { StopSignal } from './stop-signal.js';

export interface CommandTemplate {
  argv: string[];
  /** What to execute: argv[0] looked up in PATH once, not by every spawn (see resolveExecutable). */
  file: string;
  /** The worker's environment, copied once rather than per chunk. */
  env: NodeJS.ProcessEnv;
  readsInputByPlaceholder: boolean;
  writesOutputByPlaceholder: boolean;
}

const inputPlaceholders = ['{in}', '{file}', '{files}'];

export function prepareCommand(argv: string[]): CommandTemplate {
  return {
    argv,
    file: resolveExecutable(argv[0] ?? '', process.env.PATH),
    env: { ...process.env },
    readsInputByPlaceholder: argv.some((arg) => inputPlaceholders.some((p) => arg.includes(p))),
    writesOutputByPlaceholder: argv.some((arg) => arg.includes('{out}')),
  };
}

/**
 * The full path of a command name, searched in PATH as execvp would; the name itself when it has a
 * slash or a placeholder, or is not found (the spawn then fails as it would have: exit 127). Once
 * per worker: otherwise each spawn tries every PATH folder before the right one, in the child,
 * while the worker waits for the exec.
 */
export function resolveExecutable(name: string, searchPath: string | undefined): string {
  if (name === '' || name.includes('/') || name.includes('{')) return name;
  for (const dir of (searchPath ?? '').split(':')) {
    const candidate = path.join(dir || '.', name);
    try {
      if (statSync(candidate).isFile()) {
        accessSync(candidate, constants.X_OK);
        return path.isAbsolute(candidate) ? candidate : name;
      }
    } catch {
      // not here
    }
  }
  return name;
}

export interface ChunkInvocation {
  chunk: string;
  chunkPath: string;
  /** Resolved input files of a --files job; undefined for a data job. */
  files: string[] | undefined;
  tempOutput: string;
  job: string;
  attempt: number;
  lane: number;
  worker: string;
  timeoutMs: number | undefined;
  /** Stopping it kills the command's whole process group (claim lost, worker stopping). */
  stop: StopSignal;
  /** The lane's stderr file: emptied before the command starts, its tail read if it fails. */
  stderr: StderrCapture;
  /** How the lane starts commands (spawn/choose-starter.ts); node's spawn when not given. */
  starter?: CommandStarter;
  /** The lane's cgroup, where the system offers one: all the command started dies with it. */
  cgroup?: ChunkCgroup;
}

export interface ChunkRunResult {
  ok: boolean;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  aborted: boolean;
  /** The command could not be started at all (ENOENT: not found, EACCES: not executable). */
  spawnError?: string;
  stderrTail: string;
  reason: string;
  /** The host cannot run the command at all (a warm process that never starts): end the worker. */
  stopWorker?: PieceworkError;
}

const STDERR_TAIL_BYTES = 4096;
/** How often a running command's stderr file is checked for size. */
const STDERR_CHECK_MS = 5000;
const KILL_GRACE_MS = 3000;

function substitute(arg: string, values: Record<string, string>): string {
  if (!arg.includes('{')) return arg;
  return arg.replace(/\{(in|out|name|file|files|job|attempt|base|stem)\}/g, (_, key: string) => values[key] ?? '');
}

export function buildArgv(template: CommandTemplate, run: Pick<ChunkInvocation, 'chunk' | 'chunkPath' | 'files' | 'tempOutput' | 'job' | 'attempt'>): string[] {
  const files = run.files ?? [];
  const values: Record<string, string> = {
    in: run.chunkPath,
    out: run.tempOutput,
    name: run.chunk,
    file: files[0] ?? run.chunkPath,
    files: files.join(' '),
    job: run.job,
    attempt: String(run.attempt),
    ...inputNames(files[0] ?? run.chunkPath),
  };
  const argv: string[] = [];
  for (const arg of template.argv) {
    if (arg === '{files}' && run.files) argv.push(...files);
    else argv.push(substitute(arg, values));
  }
  return argv;
}

/** {base} and {stem} of an input file: `scans/a.tar.gz` → `a.tar.gz`, `a.tar`. */
function inputNames(file: string): { base: string; stem: string } {
  const base = path.basename(file);
  const ext = path.extname(base);
  return { base, stem: ext ? base.slice(0, -ext.length) : base };
}

/**
 * The command's stdin and stdout, opened before it starts. On a network mount every open is a
 * round trip: the worker opens the next chunk's files while the current command still runs, and
 * closes them after the command exits, off the lane's critical path.
 */
export interface ChunkIo {
  /** A file descriptor, nothing, or a pipe fed from `stdinSources` (a multi-file chunk). */
  readonly stdin: number | 'ignore' | 'pipe';
  readonly stdinSources: string[];
  readonly stdout: number | 'ignore';
  close(): Promise<void>;
}

export async function openChunkIo(template: CommandTemplate, run: Pick<ChunkInvocation, 'chunkPath' | 'files' | 'tempOutput'> & { onLocalDisk?: boolean }): Promise<ChunkIo> {
  if (run.onLocalDisk) return openChunkIoInline(template, run);
  const handles: fs.FileHandle[] = [];
  const close = async () => {
    await Promise.all(handles.splice(0).map((h) => h.close().catch(() => {})));
  };
  const openTracked = async (file: string, flags: string) => {
    const handle = await fs.open(file, flags);
    handles.push(handle);
    return handle.fd;
  };
  const sources = run.files ?? [run.chunkPath];
  const readsStdin = !template.readsInputByPlaceholder;
  // Both at once: on a mount that is one round trip of waiting instead of two.
  const [stdin, stdout] = await Promise.allSettled([
    readsStdin && sources.length === 1 ? openTracked(sources[0]!, 'r') : Promise.resolve(readsStdin ? ('pipe' as const) : ('ignore' as const)),
    template.writesOutputByPlaceholder ? Promise.resolve('ignore' as const) : openTracked(run.tempOutput, 'w'),
  ]);
  if (stdin.status === 'rejected' || stdout.status === 'rejected') {
    await close();
    throw stdin.status === 'rejected' ? stdin.reason : (stdout as PromiseRejectedResult).reason;
  }
  return { stdin: stdin.value, stdinSources: stdin.value === 'pipe' ? sources : [], stdout: stdout.value, close };
}

/**
 * openChunkIo for files on a local disk: opened and closed inline, microseconds each, where a hop
 * through libuv's threads costs the event loop a wake-up and a switch or two (file-calls.ts).
 */
function openChunkIoInline(template: CommandTemplate, run: Pick<ChunkInvocation, 'chunkPath' | 'files' | 'tempOutput'>): ChunkIo {
  const fds: number[] = [];
  const close = () => {
    for (const fd of fds.splice(0)) {
      try {
        closeSync(fd);
      } catch {
        // closed already
      }
    }
    return Promise.resolve();
  };
  const openTracked = (file: string, flags: string) => {
    const fd = openSync(file, flags);
    fds.push(fd);
    return fd;
  };
  try {
    const stdin = template.readsInputByPlaceholder ? ('ignore' as const) : openTracked(run.chunkPath, 'r');
    const stdout = template.writesOutputByPlaceholder ? ('ignore' as const) : openTracked(run.tempOutput, 'w');
    return { stdin, stdinSources: [], stdout, close };
  } catch (error) {
    void close();
    throw error;
  }
}

/** Run the command on one chunk with its files opened by openChunkIo; the caller closes them. */
export async function runChunk(template: CommandTemplate, run: ChunkInvocation, io: ChunkIo): Promise<ChunkRunResult> {
  const argv = buildArgv(template, run);
  const chunkEnv = {
    PIECEWORK_IN: run.chunkPath,
    PIECEWORK_OUT: run.tempOutput,
    PIECEWORK_NAME: run.chunk,
    PIECEWORK_FILE: run.files?.[0] ?? '',
    PIECEWORK_FILES: (run.files ?? []).join('\n'),
    PIECEWORK_JOB: run.job,
    PIECEWORK_ATTEMPT: String(run.attempt),
    PIECEWORK_LANE: String(run.lane),
    PIECEWORK_WORKER: run.worker,
  };

  run.stderr.reset();
  // A placeholder in the command's name itself: only the substituted name can be executed.
  const file = template.file.includes('{') ? argv[0]! : template.file;
  const command = (run.starter ?? nodeStarter).start({
    file,
    argv,
    env: template.env,
    chunkEnv,
    stdin: io.stdin,
    stdinSources: io.stdinSources,
    stdout: io.stdout,
    stderrFd: run.stderr.fd,
    cgroup: run.cgroup,
  });
  let timedOut = false;
  let aborted = false;
  const timers: NodeJS.Timeout[] = [];
  const stopTree = () => {
    command.killGroup('SIGTERM');
    const hard = setTimeout(() => command.killGroup('SIGKILL'), KILL_GRACE_MS);
    hard.unref();
    timers.push(hard);
  };
  const onAbort = () => {
    aborted = true;
    stopTree();
  };
  const forgetStop = run.stop.onStop(onAbort);
  if (run.timeoutMs !== undefined) {
    const timer = setTimeout(() => {
      timedOut = true;
      stopTree();
    }, run.timeoutMs);
    timer.unref();
    timers.push(timer);
  }
  const sizeCheck = setInterval(() => void run.stderr.limitSize().catch(() => {}), STDERR_CHECK_MS);
  sizeCheck.unref();
  timers.push(sizeCheck);

  const end = await command.ended;
  // Whatever the command started — setsid daemons included — ends before its output is committed.
  await run.cgroup?.killAll();
  for (const timer of timers) clearTimeout(timer);
  forgetStop();
  let result: Omit<ChunkRunResult, 'stderrTail'>;
  if (end.spawnError !== undefined) {
    result = { ok: false, exitCode: null, signal: null, timedOut, aborted, spawnError: end.spawnError, reason: spawnReason(argv[0]!, end.spawnError) };
  } else {
    // Whatever the command left running in its group would write into a chunk we are done with.
    command.killGroup('SIGKILL');
    const { exitCode, signal } = end;
    let reason = end.failure ?? describeExit(exitCode, signal);
    if (timedOut) reason = `timed out after ${((run.timeoutMs ?? 0) / 1000).toFixed(1)}s (${reason})`;
    result = { ok: exitCode === 0 && !timedOut && !aborted && end.failure === undefined, exitCode, signal, timedOut, aborted, reason };
  }
  // Kept for a failure record, and for a success too (logs/stderr/<chunk>): an empty file costs one
  // fstat. Not for a command that never started (a fork server's shell says "not found" there).
  const stderrTail = result.spawnError !== undefined ? '' : await run.stderr.tail(STDERR_TAIL_BYTES).catch(() => '');
  return { ...result, stderrTail };
}

export function spawnReason(command: string, code: string): string {
  if (code === 'ENOENT') return `command not found: ${command} (exit 127)`;
  if (code === 'EACCES') return `command not executable: ${command} (exit 126, check its permissions)`;
  return `could not start ${command}: ${code}`;
}
