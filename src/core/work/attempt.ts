/**
 * One attempt at one chunk, in the order of the protocol:
 *   check → claim → check again (the listing was a hint) → run → commit → release.
 * `prepareChunk` does the first three and opens the chunk's files; `runAttempt` runs the command;
 * `settleAttempt` commits the output or records the failure. Each returns what happened; the lane
 * decides what comes next, and releases the claim.
 */
import { CommandUnavailableError, errorCode, isMountGone, PieceworkError } from '../errors.js';
import type { EventSink } from '../events.js';
import { isExhausted, readFailure, writeFailure, type FailureRecord } from '../failures.js';
import type { Heartbeat } from '../heartbeat.js';
import { outputName, type JobManifest } from '../manifest.js';
import type { Claim, Claims, JobStore, LaneSpace, PendingOutput, StagedInput } from '../store/job-store.js';
import { HOST, stderrLogName } from '../store/layout.js';
import type { MountClock } from '../store/mount-clock.js';
import type { FreeSpaceGauge } from './free-space.js';
import type { LanePace } from './lane-pace.js';
import { openChunkIo, runChunk, type ChunkIo, type ChunkRunResult, type CommandTemplate } from './run-chunk.js';
import type { StderrCapture } from './stderr-capture.js';
import type { CommandStarter } from '../spawn/command-starter.js';
import type { ChunkCgroup } from './chunk-cgroup.js';
import { warmChunkIo, type WarmLanes } from './warm-lanes.js';
import type { WorkerLog } from './worker-log.js';
import { StopSignal } from './stop-signal.js';

/** What an attempt needs of its worker: the store, the command, the records, and a stop signal. */
export interface AttemptContext {
  readonly store: JobStore;
  readonly manifest: JobManifest;
  readonly workerId: string;
  readonly command: string[];
  readonly template: CommandTemplate;
  readonly claims: Claims;
  readonly clock: MountClock;
  readonly heartbeat: Heartbeat;
  readonly log: WorkerLog;
  readonly onEvent: EventSink;
  readonly pace: LanePace;
  /** Free space where outputs are written, asked before each commit. */
  readonly freeSpace: FreeSpaceGauge;
  readonly maxAttempts: number;
  readonly timeoutMs: number | undefined;
  readonly fsync: boolean;
  /** Stopped when every running command must stop (a signal, a fatal error). */
  readonly killAll: StopSignal;
  /** --warm: each lane's long-lived process; undefined in per-chunk mode. */
  readonly warm: WarmLanes | undefined;
  /** Exit statuses besides 0 that mean success (`--success-exit 0,1` for grep). */
  readonly successExits: ReadonlySet<number>;
}

/** A chunk claimed, looked up again and with its files open: ready for its lane to run. */
export interface ReadyChunk {
  chunk: string;
  claim: Claim;
  attempt: number;
  input: StagedInput | undefined;
  /** The input files of a --files chunk. */
  files: string[] | undefined;
  output: PendingOutput;
  io: ChunkIo | undefined;
  /** Why its files could not be opened: recorded as the attempt's failure, like a command's. */
  openError: unknown;
}

export type PrepareOutcome =
  | { kind: 'ready'; ready: ReadyChunk }
  /** Another worker holds the claim. */
  | { kind: 'busy' }
  /** Not ours to run: its output exists, or it failed for good. */
  | { kind: 'skipped'; reason: 'output-exists' | 'failed-for-good' };

export interface AttemptResult {
  result: ChunkRunResult;
  ms: number;
}

/** How an attempt ended, for the lane and the heartbeat. */
export type AttemptOutcome = 'done' | 'failed' | 'lost-claim' | 'interrupted';

/** check → claim → check again → open its files. */
export async function prepareChunk(context: AttemptContext, lane: number, chunk: string, space: LaneSpace, lookFirst: boolean): Promise<PrepareOutcome> {
  const { store, manifest } = context;
  const output = outputName(manifest, chunk);
  // An old listing (sshfs caches one for 20 s) misses what other hosts finished since; while
  // claims keep finding outputs already there, one lookup first is cheaper than a claim.
  if (lookFirst && (await store.lookup('out', output))) return { kind: 'skipped', reason: 'output-exists' };
  // The chunk's files are opened while it is being claimed, on the bet that it will run, which it
  // almost always does: the temp output has a unique name in this lane's own folder, so an early
  // open harms no one and is undone if the bet is lost.
  const pending = space.newOutput(chunk, manifest.ext);
  const opening = openFiles(context, chunk, pending, space);
  opening.catch(() => {}); // awaited below
  const discard = async () => {
    const opened = await opening.catch(() => undefined);
    await opened?.io?.close();
    await opened?.input?.release();
    await pending.discard();
  };
  let claim: Claim | undefined;
  try {
    claim = await context.claims.claim(chunk, lane);
  } finally {
    if (!claim) void discard().catch(() => {});
  }
  if (!claim) return { kind: 'busy' };
  // After the claim, the output and the failure record are looked up again, at once (one round
  // trip of latency on a mount): the listing was a hint, and a missed failure record would let a
  // chunk run past its retry limit.
  const [lookups, opened] = await Promise.allSettled([Promise.all([store.lookup('out', output), readFailure(store, chunk)]), opening]);
  if (lookups.status === 'rejected' || opened.status === 'rejected') {
    await discard().catch(() => {});
    await claim.release().catch(() => {});
    throw lookups.status === 'rejected' ? lookups.reason : (opened as PromiseRejectedResult).reason;
  }
  const [existing, previous] = lookups.value;
  if (existing || (previous && isExhausted(previous))) {
    await discard().catch(() => {});
    await claim.release();
    return { kind: 'skipped', reason: existing ? 'output-exists' : 'failed-for-good' };
  }
  return { kind: 'ready', ready: { chunk, claim, attempt: (previous?.attempts ?? 0) + 1, output: pending, ...opened.value } };
}

/** Stage a chunk's input and open its files; an error other than a dropped mount is kept, not thrown. */
async function openFiles(context: AttemptContext, chunk: string, output: PendingOutput, space: LaneSpace): Promise<Pick<ReadyChunk, 'input' | 'files' | 'io' | 'openError'>> {
  let input: StagedInput | undefined;
  let files: string[] | undefined;
  try {
    input = await context.store.stageInput(chunk);
    files = context.manifest.split.mode === 'files' ? await readFileList(context.store, chunk) : undefined;
    // A warm process is sent the paths: no descriptor is opened for the chunk.
    const open = () => (context.warm ? Promise.resolve(warmChunkIo) : openChunkIo(context.template, { chunkPath: input!.path, files, tempOutput: output.path, onLocalDisk: !files && input!.onLocalDisk === true && output.onLocalDisk === true }));
    const io = await open().catch(async (error: unknown) => {
      // The lane's folder went (a `verify --requeue` that took this worker for dead): again.
      if (errorCode(error) !== 'ENOENT' || (error as NodeJS.ErrnoException).path !== output.path) throw error;
      await space.recreate();
      return open();
    });
    return { input, files, io, openError: undefined };
  } catch (error) {
    if (isMountGone(error) || error instanceof PieceworkError) throw error;
    // Recorded as this attempt's failure when the lane gets to it (an input may be missing).
    return { input, files, io: undefined, openError: error };
  }
}

/** The input files of a --files chunk: absolute paths as listed, others relative to the job. */
async function readFileList(store: JobStore, chunk: string): Promise<string[]> {
  const data = await store.read('chunks', chunk);
  if (data === undefined) throw Object.assign(new Error(`input missing: chunks/${chunk}`), { code: 'ENOENT', path: `chunks/${chunk}` });
  const root = store.localPath('top', '');
  return data
    .toString('utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => (line.startsWith('/') || root === undefined ? line : `${root}/${line}`));
}

/** Run the command of a ready chunk. Never throws: what happened is in the result. */
export async function runAttempt(context: AttemptContext, ready: ReadyChunk, lane: number, stderr: StderrCapture, starter: CommandStarter, cgroup: ChunkCgroup | undefined): Promise<AttemptResult> {
  const { chunk, claim, attempt } = ready;
  context.onEvent({ type: 'chunk:claimed', chunk, lane, attempt });
  context.heartbeat.chunkStarted(lane, chunk);
  const started = Date.now();
  const stopChunk = new StopSignal();
  const forgetKillAll = context.killAll.onStop(() => stopChunk.stop());
  claim.onLost(() => stopChunk.stop());
  try {
    if (claim.lost) return { result: { ok: false, exitCode: null, signal: null, timedOut: false, aborted: true, stderrTail: '', reason: claim.lost.message }, ms: 0 };
    if (ready.openError !== undefined || !ready.io || !ready.input) return { result: couldNotStart(ready.openError, chunk), ms: Date.now() - started };
    const invocation = {
      chunk,
      chunkPath: ready.input.path,
      files: ready.files,
      tempOutput: ready.output.path,
      job: context.store.location,
      attempt,
      lane,
      worker: context.workerId,
      timeoutMs: context.timeoutMs,
      stop: stopChunk,
      stderr,
      starter,
      cgroup,
    };
    // --warm: the lane's process gets a request; a lost claim kills it at once, a stop lets the
    // chunk finish for a while.
    const result = acceptExit(context, context.warm ? await context.warm.run(lane, invocation, () => claim.lost !== undefined) : await runChunk(context.template, invocation, ready.io));
    const ms = Date.now() - started;
    if (result.ok) context.pace.recordRun(ms);
    return { result, ms };
  } catch (error) {
    return { result: couldNotStart(error, chunk), ms: Date.now() - started };
  } finally {
    forgetKillAll();
  }
}

/** Commit the output or record the failure. The caller releases the claim. */
export async function settleAttempt(context: AttemptContext, ready: ReadyChunk, { result: initial, ms }: AttemptResult, lane: number): Promise<AttemptOutcome> {
  const { chunk, claim, attempt, output } = ready;
  const { log, onEvent } = context;
  let result = initial;
  await ready.io?.close();
  await ready.input?.release();

  if (claim.lost || (result.aborted && !result.timedOut)) {
    await output.discard();
    if (claim.lost) {
      onEvent({ type: 'claim:lost', chunk, lane, reason: claim.lost.message });
      log.line({ lane, chunk, event: 'claim-lost', ms, detail: claim.lost.message });
      return 'lost-claim';
    }
    log.line({ lane, chunk, event: 'interrupted', ms });
    return 'interrupted';
  }

  if (result.ok) {
    // A claim old enough to have been taken over is confirmed before its output goes in.
    if (claim.oldEnoughToCheck && !(await claim.stillOurs())) {
      await output.discard();
      onEvent({ type: 'claim:lost', chunk, lane, reason: 'taken over while running' });
      log.line({ lane, chunk, event: 'claim-lost', ms, detail: 'taken over while running; output discarded' });
      return 'lost-claim';
    }
    // A command that exited 0 on a full disk may have lost writes it never checked: no commit.
    await stopIfDiskFull(context, chunk, 'the command exited 0, but');
    const committed = await output.commit({ fsync: context.fsync });
    if (committed === 'committed') {
      await keepStderr(context, chunk, result.stderrTail, lane);
      onEvent({ type: 'chunk:done', chunk, lane, ms, output: outputName(context.manifest, chunk) });
      log.line({ lane, chunk, event: 'done', ms, detail: attempt > 1 ? `attempt ${attempt}` : undefined });
      return 'done';
    }
    // A warm program and a command given {out} write the output themselves and may not have.
    const commandWritesOutput = context.warm !== undefined || context.template.writesOutputByPlaceholder;
    // Its stdout was wired to the temp file, so the command cannot have failed to write it: someone
    // removed it. A requeue that took this frozen worker for dead removes its claims first: then
    // it is not the chunk's fault, no failure is recorded, the chunk is simply not done. With the
    // claim still ours it was the command itself, or a cleaner of temp files — the same on every
    // attempt, so it counts as a failed one instead of running the chunk again for ever.
    const stdoutRemoved = committed === 'missing' && !commandWritesOutput;
    if (committed === 'lane-folder-removed' || (stdoutRemoved && !(await claim.stillOurs()))) {
      onEvent({ type: 'claim:lost', chunk, lane, reason: 'its temp output was removed while it ran' });
      log.line({ lane, chunk, event: 'claim-lost', ms, detail: 'temp output removed by another process (verify --requeue?); chunk left for a new attempt' });
      return 'lost-claim';
    }
    const said = context.warm ? 'the program answered ok' : 'the command exited 0';
    const where = context.warm ? 'the request\'s "out" path' : '{out}';
    const why =
      committed === 'not-a-file' ? `${said} but made something other than a file at ${where} (a folder?)`
      : stdoutRemoved ? `${said}, but the file its stdout went to was removed while it ran, with the claim still held (by the command, or by a cleaner of temp files? .tmp/ is piecework's)`
      : `${said} but wrote no output to ${where}`;
    result = { ...result, ok: false, reason: why };
  }

  // A full disk is the host's trouble, not the chunk's: stop instead of burning its retries.
  // (Looked at before the temp output is removed, which frees the space it filled.)
  try {
    await stopIfDiskFull(context, chunk, `${result.reason};`);
  } finally {
    await output.discard();
  }
  const record: FailureRecord = {
    chunk,
    attempts: attempt,
    maxAttempts: context.maxAttempts,
    exitCode: result.exitCode,
    signal: result.signal,
    timedOut: result.timedOut,
    reason: result.reason,
    stderrTail: result.stderrTail,
    host: HOST,
    worker: context.workerId,
    at: new Date(context.clock.now()).toISOString(),
    command: context.command,
  };
  await writeFailure(context.store, record);
  const final = attempt >= context.maxAttempts;
  onEvent({ type: 'chunk:failed', chunk, lane, ms, attempt, final, reason: result.reason });
  log.line({ lane, chunk, event: final ? 'failed-for-good' : 'failed', ms, detail: `attempt ${attempt}/${context.maxAttempts}: ${result.reason}${result.stderrTail ? `\nstderr: ${result.stderrTail.trimEnd()}` : ''}` });
  // A warm command that keeps dying before its first answer cannot run on this host.
  if (result.stopWorker) throw result.stopWorker;
  if (result.spawnError === 'ENOENT' || result.spawnError === 'EACCES') {
    throw new CommandUnavailableError(`${result.reason} on this host`, {
      hint: `${commandHint(context.command[0] ?? '', result.spawnError)}; chunk ${chunk} was recorded as failed`,
      exitStatus: result.spawnError === 'ENOENT' ? 127 : 126,
    });
  }
  return 'failed';
}

/** An exit status the user called success (`--success-exit`) makes the attempt a success. */
function acceptExit(context: AttemptContext, result: ChunkRunResult): ChunkRunResult {
  if (result.ok || result.exitCode === null || result.signal !== null || result.timedOut || result.aborted || result.spawnError !== undefined) return result;
  return context.successExits.has(result.exitCode) ? { ...result, ok: true } : result;
}

/**
 * The stderr of a successful attempt, its tail, goes to logs/stderr/<chunk> (only when there is
 * some), as GNU parallel's --results keeps it. Losing it is not worth failing a committed chunk.
 */
async function keepStderr(context: AttemptContext, chunk: string, tail: string, lane: number): Promise<void> {
  if (tail === '') return;
  try {
    await context.store.write('logs', stderrLogName(chunk), tail);
  } catch (error) {
    if (isMountGone(error)) throw error;
    context.log.line({ lane, chunk, event: 'warning', detail: `could not keep its stderr: ${(error as Error).message}` });
  }
}

/**
 * What to do about a command that is not there. `-- 'sort | uniq -c'` is one argument, taken as a
 * program's name, because commands run without a shell: say so, with the shell line to write.
 */
function commandHint(program: string, spawnError: string): string {
  if (spawnError === 'ENOENT' && /[\s|&;<>()$`*?~]/.test(program)) {
    return `commands run without a shell, so "${program}" was taken as the name of one program: for a pipeline or other shell syntax write -- sh -c '${program.replaceAll("'", "'\\''")}'`;
  }
  return 'install it on every worker host, or give its full path';
}

/** Less free space than a small write needs: the worker stops, the chunk is not counted failed. */
const DISK_FULL_BELOW_BYTES = 64 * 1024;

async function stopIfDiskFull(context: AttemptContext, chunk: string, what: string): Promise<void> {
  const free = await context.freeSpace.freeBytes();
  if (free === undefined || free >= DISK_FULL_BELOW_BYTES) return;
  throw new PieceworkError(`the disk holding the job is full (${what} chunk ${chunk} was not committed)`, {
    hint: 'free space and start the worker again: nothing partial was committed, and the chunk was not counted as failed',
  });
}

/** A ready chunk that will not run (the worker is stopping): close, clean up, release. */
export async function dropReady(ready: ReadyChunk): Promise<void> {
  await ready.io?.close();
  await ready.input?.release().catch(() => {});
  await ready.output.discard();
  await ready.claim.release().catch(() => {});
}

/** A chunk whose command could not be started: an input missing, or the spawn itself failed. */
function couldNotStart(error: unknown, chunk: string): ChunkRunResult {
  const code = errorCode(error);
  const reason = code === 'ENOENT' ? `input missing: ${(error as NodeJS.ErrnoException).path ?? chunk} (the manifest names this chunk, but its file is gone)` : `could not start the chunk: ${(error as Error)?.message ?? String(error)}`;
  return { ok: false, exitCode: null, signal: null, timedOut: false, aborted: false, stderrTail: '', reason };
}
