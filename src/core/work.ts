/**
 * work: the worker. Claims chunks in shuffled order, runs the user's command on each, commits the
 * output atomically, and returns only when every chunk has an output or has failed for good.
 *
 * Per chunk the loop reads like the protocol:
 *   listing says missing → claim → look again (the listing was a hint) → run → commit → release.
 */
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { promises as fs } from 'node:fs';
import { ClaimBook, defaultUpdateMs, type Claim } from './claim.js';
import { errorCode, isMountGone, JobMissingError, PieceworkError, UsageError } from './errors.js';
import { ignoreEvents, type EventSink } from './events.js';
import { isExhausted, readFailure, writeFailure, type FailureRecord } from './failures.js';
import { Heartbeat } from './heartbeat.js';
import { HOST, JobLayout, makeGroupFolder, workerIdFor } from './job-folder.js';
import { readManifest, type JobManifest } from './manifest.js';
import { measureMountClock, type MountClock } from './mount-clock.js';
import { openChunkIo, prepareCommand, runChunk, type ChunkIo, type ChunkRunResult, type CommandTemplate } from './run-chunk.js';
import { exists, listChunks, listOutputs } from './scan.js';
import { WorkerLog } from './worker-log.js';
import { PACKAGE_VERSION } from './version.js';
import { Scheduler, type StopReason } from './scheduler.js';
import { mapBounded, WorkBehind } from './concurrency.js';
import { LanePace, settlesWithin } from './lane-pace.js';
import { StderrCapture } from './stderr-capture.js';
import { openLaneStarter } from './spawn/choose-starter.js';
import type { CommandStarter } from './spawn/command-starter.js';

export interface WorkOptions {
  job: string;
  command: string[];
  /** Chunks run at once on this host (default: its cores). */
  lanes?: number;
  /** Override the job's stale period; every worker of a job should use the same. */
  staleSeconds?: number;
  /** Override the job's retry count. */
  retries?: number;
  timeoutSeconds?: number;
  /** Output extension, with or without the dot. */
  ext?: string;
  /** Wait for chunks while the split is still streaming in. */
  follow?: boolean;
  /** fsync each output before committing it. */
  fsync?: boolean;
  /** Abort to stop: no new chunks, running commands are killed, claims released. */
  signal?: AbortSignal;
  onEvent?: EventSink;
  /** How often to look again when other workers hold the remaining chunks. */
  pollSeconds?: number;
}

export interface WorkReport {
  job: string;
  worker: string;
  /** Outputs this worker committed. */
  done: number;
  /** Failed attempts by this worker. */
  failedAttempts: number;
  chunks: number;
  /** Every chunk has an output. */
  complete: boolean;
  /** Chunks that failed for good (no output, no retries left), whoever ran them. */
  failedForGood: string[];
  /** Chunks with neither output nor a final failure when the worker returned. */
  remaining: number;
  stoppedBy?: StopReason;
  ms: number;
}

/** How long a listing of out/ is taken at its word before a chunk is looked up first. */
const LISTING_TRUST_MS = 2000;
/** Chunks a lane may have committing behind the one it runs. */
const MAX_COMMITS_BEHIND = 4;
/** How long after a claim found an output already there to keep looking before claiming. */
const LOOK_FIRST_AFTER_SKIP_MS = 10_000;

/** The host cannot run the command at all: stop this worker rather than burn the job's retries. */
export class CommandUnavailableError extends PieceworkError {}

export async function work(options: WorkOptions): Promise<WorkReport> {
  if (options.command.length === 0) throw new UsageError('no command to run', 'give the command after --, e.g. piecework work JOB -- tr a-z A-Z');
  const layout = new JobLayout(options.job);
  const lanes = options.lanes ?? availableParallelism();
  if (!Number.isInteger(lanes) || lanes < 1) throw new UsageError(`-j ${options.lanes}: the number of lanes must be a whole number of at least 1`);
  const [manifest, stopRequested] = await Promise.all([readManifest(layout), exists(layout.stopFile)]);
  if (stopRequested) {
    throw new PieceworkError(`the job has a STOP file, so workers take no chunk`, {
      hint: `run \`piecework stop --clear ${layout.root}\` to let workers run again`,
      exitStatus: 3,
    });
  }
  const worker = new Worker(layout, manifest, lanes, options);
  return worker.run();
}

class Worker {
  readonly layout: JobLayout;
  readonly options: WorkOptions;
  readonly lanes: number;
  readonly workerId = workerIdFor(HOST, process.pid);
  readonly onEvent: EventSink;
  readonly template: CommandTemplate;
  readonly staleMs: number;
  readonly maxAttempts: number;
  readonly ext: string;
  readonly pollMs: number;
  manifest: JobManifest;
  chunks: string[] = [];
  clock!: MountClock;
  claims!: ClaimBook;
  heartbeat!: Heartbeat;
  log!: WorkerLog;
  scheduler!: Scheduler;
  readonly pace = new LanePace();
  /** Claim releases of skipped chunks, finished behind the lanes. */
  readonly behind = new WorkBehind((error) => this.fail(asError(error)));

  /** Set when the worker must stop taking chunks; `fatal` also ends it with an error. */
  stopReason: StopReason | undefined;
  fatal: Error | undefined;
  /** Aborts every running command (signal, fatal error). */
  readonly killAll = new AbortController();
  /** Aborted on any stop: wakes lanes that sleep while waiting for work. */
  readonly stopping = new AbortController();

  /** Chunks known to have failed for good; dropped when their record disappears (requeue). */
  readonly exhausted = new Set<string>();
  readonly inProgress = new Set<string>();
  /**
   * Outputs confirmed by a direct lookup or our own commit. A listing can lag by 20 s on sshfs;
   * without this, every pass would claim and release chunks that other hosts already finished.
   */
  readonly knownDone = new Set<string>();
  done = 0;
  failedAttempts = 0;
  readonly madeOutputDirs = new Set<string>();
  /** Each lane's own folder for temp outputs (see JobLayout.laneTempDir). */
  readonly laneTempDirs: string[];
  /** Each lane's file for its commands' stderr. */
  stderrFiles: StderrCapture[] = [];
  /** How each lane starts its commands: a fork server, or node's spawn (issue 11). */
  starters: CommandStarter[] = [];
  /** When a claim last found its chunk's output already there (another host finished it). */
  #claimFoundDoneAt = 0;

  constructor(layout: JobLayout, manifest: JobManifest, lanes: number, options: WorkOptions) {
    this.layout = layout;
    this.manifest = manifest;
    this.lanes = lanes;
    this.options = options;
    this.onEvent = options.onEvent ?? ignoreEvents;
    this.template = prepareCommand(options.command);
    this.staleMs = (options.staleSeconds ?? manifest.staleSeconds) * 1000;
    this.maxAttempts = 1 + (options.retries ?? manifest.retries);
    this.ext = options.ext ? (options.ext.startsWith('.') ? options.ext : `.${options.ext}`) : '';
    if (this.ext.includes('/')) throw new UsageError(`--ext ${options.ext}: an extension cannot contain "/"`);
    this.pollMs = (options.pollSeconds ?? Math.min(5, this.staleMs / 4000)) * 1000;
    this.laneTempDirs = Array.from({ length: lanes }, (_, lane) => layout.laneTempDir(this.workerId, lane));
  }

  async run(): Promise<WorkReport> {
    const started = Date.now();
    // Start-up steps that do not depend on each other overlap: each is round trips on a mount.
    const listing = listChunks(this.layout);
    listing.catch(() => {}); // awaited below, inside the try
    this.clock = await measureMountClock([this.layout.workersDir, this.layout.logsDir, this.layout.tmpDir], this.workerId);
    this.claims = new ClaimBook(this.layout, { staleMs: this.staleMs, updateMs: defaultUpdateMs(this.staleMs) }, this.clock, { workerId: this.workerId, host: HOST, pid: process.pid });
    this.log = new WorkerLog(this.layout.logPath(this.workerId), this.workerId, () => this.clock.now());
    this.heartbeat = new Heartbeat(this.layout, this.clock, {
      worker: this.workerId,
      host: HOST,
      pid: process.pid,
      jobId: this.manifest.id,
      lanes: this.lanes,
      command: this.options.command,
      version: PACKAGE_VERSION,
      intervalMs: Math.min(5000, this.staleMs / 4),
    });
    const onAbort = () => this.stop('signal');
    this.options.signal?.addEventListener('abort', onAbort);
    if (this.options.signal?.aborted) this.stop('signal');
    const ticker = setInterval(() => void this.tick(), this.heartbeat.record.intervalMs);
    ticker.unref();
    this.log.line({ event: 'start', detail: `lanes=${this.lanes} stale=${this.staleMs / 1000}s clock-offset=${this.clock.offsetMs / 1000}s command=${JSON.stringify(this.options.command)}` });

    let failure: unknown;
    try {
      const stderrFiles = Promise.all(this.laneTempDirs.map(() => StderrCapture.open()));
      [this.chunks, this.stderrFiles] = await Promise.all([listing, stderrFiles, this.heartbeat.write('running'), ...this.laneTempDirs.map((dir) => makeFolder(dir))]);
      this.starters = this.stderrFiles.map((stderr, lane) => openLaneStarter({ env: this.template.env, lane, worker: this.workerId, stderrFd: stderr.fd, job: this.layout.root }));
      this.onEvent({ type: 'work:start', job: this.layout.root, worker: this.workerId, lanes: this.lanes, chunks: this.chunks.length, pending: this.chunks.length, clockOffsetMs: this.clock.offsetMs });
      this.scheduler = new Scheduler(this);
      await Promise.all(Array.from({ length: this.lanes }, (_, lane) => this.runLane(lane)));
      await this.behind.settled();
      if (this.fatal) throw this.fatal;
    } catch (error) {
      failure = error;
      this.killAll.abort();
    } finally {
      clearInterval(ticker);
      this.options.signal?.removeEventListener('abort', onAbort);
    }
    // Empty by now: every temp output was committed or removed. rmdir, not rm -r, all the same.
    await Promise.all([...this.laneTempDirs.map((dir) => fs.rmdir(dir).catch(() => {})), ...this.stderrFiles.map((file) => file.close().catch(() => {})), ...this.starters.map((starter) => starter.close().catch(() => {}))]);

    const report = await this.finalReport(started).catch((error: unknown) => {
      failure ??= error;
      return undefined;
    });
    const state = failure ? 'failed' : 'exited';
    const reason = failure instanceof Error ? failure.message : (this.stopReason ?? (report?.complete ? 'complete' : 'incomplete'));
    this.log.line({ event: state, ms: Date.now() - started, detail: `${reason}; committed ${this.done}, failed attempts ${this.failedAttempts}` });
    await Promise.all([this.heartbeat.write(state, reason).catch(() => {}), this.log.close()]);
    if (failure) throw await translateFsError(failure, this.layout);
    this.onEvent({ type: 'work:done', done: this.done, failed: this.failedAttempts, ms: Date.now() - started });
    return report!;
  }

  stop(reason: StopReason): void {
    // A signal while draining for a STOP file still stops the running commands.
    if (reason === 'signal') this.killAll.abort();
    if (this.stopReason) {
      if (reason === 'signal') this.stopReason = 'signal';
      return;
    }
    this.stopReason = reason;
    this.stopping.abort();
    this.onEvent({ type: 'work:stopping', reason });
    this.log.line({ event: 'stopping', detail: reason });
  }

  /** A fatal error: stop everything now; the error itself is what the user will read. */
  fail(error: Error): void {
    this.fatal ??= error;
    if (this.stopReason) {
      this.killAll.abort();
      return;
    }
    this.stopReason = 'signal';
    this.stopping.abort();
    this.killAll.abort();
  }

  get typicalRunMs(): number | undefined {
    return this.pace.typicalRunMs;
  }

  outputExists(chunk: string): Promise<boolean> {
    return exists(this.layout.outputPath(chunk, this.ext));
  }

  #stopCheckedAt = 0;

  /** Look for a STOP file before taking a chunk — at most once a second, not per chunk. */
  async checkStopFile(): Promise<void> {
    if (this.stopReason || Date.now() - this.#stopCheckedAt < 1000) return;
    this.#stopCheckedAt = Date.now();
    if (await exists(this.layout.stopFile)) this.stop('stop-file');
  }

  /** Every few seconds: heartbeat, STOP file, job marker, and the hung-mount watchdog. */
  async tick(): Promise<void> {
    const hungMs = this.heartbeat.pendingWriteMs;
    if (hungMs > Math.max(30_000, this.staleMs)) {
      this.fail(new PieceworkError(`the job folder has not answered for ${Math.round(hungMs / 1000)}s: the mount looks hung`, { hint: 'check the network and the mount on this host (mount, dmesg); the chunks this worker held will be taken over by others', exitStatus: 4 }));
      return;
    }
    try {
      await this.heartbeat.write();
      await this.checkStopFile();
      if (!(await exists(this.layout.jobFile))) this.fail(new JobMissingError(this.layout.root, 'job.json disappeared while working: the mount may have dropped'));
    } catch (error) {
      if (isMountGone(error)) this.fail(new JobMissingError(this.layout.root, `the file system answered ${errorCode(error)}: the mount looks gone`));
    }
  }

  /**
   * One lane: chunks run one after another, and around each runs the slow file-system work of its
   * neighbours. Shortly before the current command is expected to end, the next chunks are
   * claimed and opened — as many as it takes to cover the time a preparation takes: one on a local
   * disk, a few on a slow mount — and finished chunks are committed and released while the next
   * one runs. A lane never runs two commands at once.
   */
  async runLane(lane: number): Promise<void> {
    const ready: Promise<ReadyChunk | undefined>[] = [];
    const committing = new Set<Promise<void>>();
    const prepareNext = () => {
      const next = this.nextReady(lane);
      next.catch(() => {}); // awaited in turn; a rejection must not count as unhandled meanwhile
      ready.push(next);
    };
    prepareNext();
    try {
      while (ready.length > 0) {
        // The first ready, not the first asked for: a preparation waiting for this worker's own
        // last chunks to end must not hold up one of those chunks queued behind it.
        const index = await Promise.race(ready.map((next, i) => next.then(() => i, () => i)));
        const current = await ready.splice(index, 1)[0]!;
        if (!current) continue; // nothing left to take; chunks readied meanwhile still run
        if (this.stopReason) {
          await this.drop(current);
          return;
        }
        const running = this.runCommand(current, lane);
        const aheadMs = this.pace.prepareAheadAfterMs();
        if (aheadMs !== undefined && !(await settlesWithin(running, aheadMs))) {
          while (ready.length < this.pace.prepareDepth() && !this.stopReason) prepareNext();
        }
        const result = await running;
        // Commits overlap as well, a few at most: each holds its claim until its rename is done.
        if (committing.size >= MAX_COMMITS_BEHIND) await Promise.race(committing);
        const commit = this.finish(current, result, lane).catch((error: unknown) => this.fail(asError(error)));
        committing.add(commit);
        void commit.finally(() => committing.delete(commit));
        // A command that cannot start at all ends the worker: let that land before the next chunk.
        if (result.result.spawnError !== undefined) await commit;
        if (this.stopReason) return; // chunks readied ahead are dropped below
        if (ready.length === 0) prepareNext();
      }
    } catch (error) {
      this.fail(asError(error));
    } finally {
      for (const next of ready.splice(0)) {
        const early = await next.catch(() => undefined);
        if (early) await this.drop(early);
      }
      await Promise.all(committing);
    }
  }

  /** The next chunk this lane can run, claimed and with its files open; undefined at the end. */
  async nextReady(lane: number): Promise<ReadyChunk | undefined> {
    const scheduler = this.scheduler;
    for (;;) {
      const chunk = await scheduler.next();
      if (chunk === undefined) return undefined;
      this.inProgress.add(chunk);
      let prepared: ReadyChunk | undefined;
      try {
        prepared = await this.prepare(chunk, lane);
      } finally {
        if (!prepared) {
          this.inProgress.delete(chunk);
          scheduler.chunkFinished();
        }
      }
      if (prepared) return prepared;
    }
  }

  /** check → claim → check again → open its files. Undefined when the chunk is not ours to run. */
  async prepare(chunk: string, lane: number): Promise<ReadyChunk | undefined> {
    const began = Date.now();
    // An old listing (sshfs caches one for 20 s) misses what other hosts finished since. While
    // claims keep finding outputs already there, one lookup before claiming is cheaper than a
    // claim, a lookup and a release; otherwise it would be a wasted round trip per chunk.
    const lookFirst = this.scheduler.listingAgeMs > LISTING_TRUST_MS && Date.now() - this.#claimFoundDoneAt < LOOK_FIRST_AFTER_SKIP_MS;
    if (lookFirst && (await exists(this.layout.outputPath(chunk, this.ext)))) {
      this.knownDone.add(chunk);
      this.onEvent({ type: 'chunk:skipped', chunk, lane, reason: 'output-exists' });
      return undefined;
    }
    // The chunk's files are opened while it is being claimed, on the bet that it will run, which
    // it almost always does: the temp output has a unique name in this lane's own folder, so an
    // early open harms no one and is undone if the bet is lost.
    const temp = this.layout.tempPath(chunk, this.ext, this.laneTempDirs[lane]);
    const opening = this.openFiles(chunk, temp);
    opening.catch(() => {}); // awaited below
    const discardFiles = async () => {
      const opened = await opening.catch(() => undefined);
      if (!opened?.io) return;
      await opened.io.close();
      await fs.unlink(temp).catch(() => {});
    };
    let claim: Claim | undefined;
    try {
      claim = await this.claims.claim(chunk, lane);
    } finally {
      if (!claim) this.behind.add(discardFiles());
    }
    if (!claim) {
      this.scheduler.markBusy(chunk);
      return undefined;
    }
    // After the claim, the output and the failure record are looked up again, at once (one round
    // trip of latency on a mount): the listing was a hint, and can be 20 s old on sshfs; a missed
    // failure record would let a chunk run past its retry limit.
    const [lookups, opened] = await Promise.allSettled([Promise.all([exists(this.layout.outputPath(chunk, this.ext)), readFailure(this.layout, chunk)]), opening]);
    if (lookups.status === 'rejected' || opened.status === 'rejected') {
      await discardFiles().catch(() => {});
      await claim.release().catch(() => {});
      throw lookups.status === 'rejected' ? lookups.reason : (opened as PromiseRejectedResult).reason;
    }
    const [outputExists, previous] = lookups.value;
    if (outputExists || (previous && isExhausted(previous))) {
      if (outputExists) {
        this.knownDone.add(chunk);
        this.#claimFoundDoneAt = Date.now();
      } else this.exhausted.add(chunk);
      this.onEvent({ type: 'chunk:skipped', chunk, lane, reason: outputExists ? 'output-exists' : 'failed-for-good' });
      this.behind.add(discardFiles().then(() => claim.release()));
      return undefined;
    }
    this.pace.recordPrepare(Date.now() - began);
    return { chunk, claim, attempt: (previous?.attempts ?? 0) + 1, temp, ...opened.value };
  }

  /** Open a chunk's input and temp output; an error other than a dropped mount is kept, not thrown. */
  async openFiles(chunk: string, temp: string): Promise<Pick<ReadyChunk, 'files' | 'io' | 'openError'>> {
    let files: string[] | undefined;
    try {
      files = this.manifest.split.mode === 'files' ? await this.readFileList(chunk) : undefined;
      const open = () => openChunkIo(this.template, { chunkPath: this.layout.chunkPath(chunk), files, tempOutput: temp });
      const io = await open().catch(async (error: unknown) => {
        // The lane's folder went (a `verify --requeue` that took this worker for dead): again.
        if (errorCode(error) !== 'ENOENT' || (error as NodeJS.ErrnoException).path !== temp) throw error;
        await makeFolder(path.dirname(temp));
        return open();
      });
      return { files, io, openError: undefined };
    } catch (error) {
      if (isMountGone(error)) throw error;
      // Recorded as this attempt's failure when the lane gets to it (an input may be missing).
      return { files, io: undefined, openError: error };
    }
  }

  /** Run the command of a ready chunk. Never throws: what happened is in the result. */
  async runCommand(ready: ReadyChunk, lane: number): Promise<ChunkOutcome> {
    const { chunk, claim, attempt } = ready;
    this.onEvent({ type: 'chunk:claimed', chunk, lane, attempt });
    this.heartbeat.chunkStarted(lane, chunk);
    const started = Date.now();
    const stopChunk = new AbortController();
    const onKillAll = () => stopChunk.abort();
    this.killAll.signal.addEventListener('abort', onKillAll);
    if (this.killAll.signal.aborted) stopChunk.abort();
    claim.onLost(() => stopChunk.abort());
    try {
      if (claim.lost) return { result: { ok: false, exitCode: null, signal: null, timedOut: false, aborted: true, stderrTail: '', reason: claim.lost.message }, ms: 0 };
      if (ready.openError !== undefined || !ready.io) return { result: couldNotStart(ready.openError, chunk), ms: Date.now() - started };
      const result = await runChunk(
        this.template,
        {
          chunk,
          chunkPath: this.layout.chunkPath(chunk),
          files: ready.files,
          tempOutput: ready.temp,
          job: this.layout.root,
          attempt,
          lane,
          worker: this.workerId,
          timeoutMs: this.options.timeoutSeconds === undefined ? undefined : this.options.timeoutSeconds * 1000,
          signal: stopChunk.signal,
          stderr: this.stderrFiles[lane]!,
          starter: this.starters[lane],
        },
        ready.io,
      );
      const ms = Date.now() - started;
      if (result.ok) this.pace.recordRun(ms);
      return { result, ms };
    } catch (error) {
      return { result: couldNotStart(error, chunk), ms: Date.now() - started };
    } finally {
      this.killAll.signal.removeEventListener('abort', onKillAll);
    }
  }

  /** After the command: commit or record the failure, then release the claim. */
  async finish(ready: ReadyChunk, { result, ms }: ChunkOutcome, lane: number): Promise<void> {
    let outcome: 'done' | 'failed' | 'other' = 'other';
    try {
      await ready.io?.close();
      outcome = await this.settle(ready, result, ms, lane);
    } finally {
      this.heartbeat.chunkEnded(ready.chunk, outcome);
      try {
        await ready.claim.release();
      } finally {
        this.inProgress.delete(ready.chunk);
        this.scheduler.chunkFinished();
      }
    }
  }

  /** A ready chunk that will not run (the worker is stopping): close, clean up, release. */
  async drop(ready: ReadyChunk): Promise<void> {
    await ready.io?.close();
    await fs.rm(ready.temp, { force: true }).catch(() => {});
    await ready.claim.release().catch(() => {});
    this.inProgress.delete(ready.chunk);
  }

  async settle(ready: ReadyChunk, initial: ChunkRunResult, ms: number, lane: number): Promise<'done' | 'failed' | 'other'> {
    const { chunk, claim, attempt, temp } = ready;
    let result = initial;

    if (claim.lost || (result.aborted && !result.timedOut)) {
      await fs.rm(temp, { force: true });
      if (claim.lost) {
        this.onEvent({ type: 'claim:lost', chunk, lane, reason: claim.lost.message });
        this.log.line({ lane, chunk, event: 'claim-lost', ms, detail: claim.lost.message });
      } else {
        this.log.line({ lane, chunk, event: 'interrupted', ms });
      }
      return 'other';
    }

    if (result.ok) {
      // A claim old enough to have been taken over is confirmed before its output goes in.
      if (claim.oldEnoughToCheck && !(await claim.stillOurs())) {
        await fs.rm(temp, { force: true });
        this.onEvent({ type: 'claim:lost', chunk, lane, reason: 'taken over while running' });
        this.log.line({ lane, chunk, event: 'claim-lost', ms, detail: 'taken over while running; output discarded' });
        return 'other';
      }
      const committed = await this.commit(chunk, temp);
      if (committed) {
        this.knownDone.add(chunk);
        this.done++;
        this.onEvent({ type: 'chunk:done', chunk, lane, ms, output: this.layout.outputPath(chunk, this.ext) });
        this.log.line({ lane, chunk, event: 'done', ms, detail: attempt > 1 ? `attempt ${attempt}` : undefined });
        return 'done';
      }
      result = { ...result, ok: false, reason: `the command exited 0 but wrote no output to {out}` };
    }

    // A full disk is the host's trouble, not the chunk's: stop instead of burning its retries.
    // (Looked at before the temp output is removed, which frees the space it filled.)
    const diskFull = await diskIsFull(this.layout.tmpDir);
    await fs.rm(temp, { force: true });
    if (diskFull) {
      throw new PieceworkError(`the disk holding the job is full (chunk ${chunk}: ${result.reason})`, {
        hint: 'free space and start the worker again: nothing partial was committed, and the chunk was not counted as failed',
      });
    }
    this.failedAttempts++;
    const record: FailureRecord = {
      chunk,
      attempts: attempt,
      maxAttempts: this.maxAttempts,
      exitCode: result.exitCode,
      signal: result.signal,
      timedOut: result.timedOut,
      reason: result.reason,
      stderrTail: result.stderrTail,
      host: HOST,
      worker: this.workerId,
      at: new Date(this.clock.now()).toISOString(),
      command: this.options.command,
    };
    await writeFailure(this.layout, record);
    const final = attempt >= this.maxAttempts;
    if (final) this.exhausted.add(chunk);
    this.onEvent({ type: 'chunk:failed', chunk, lane, ms, attempt, final, reason: result.reason });
    this.log.line({ lane, chunk, event: final ? 'failed-for-good' : 'failed', ms, detail: `attempt ${attempt}/${this.maxAttempts}: ${result.reason}${result.stderrTail ? `\nstderr: ${result.stderrTail.trimEnd()}` : ''}` });
    if (result.spawnError === 'ENOENT' || result.spawnError === 'EACCES') {
      throw new CommandUnavailableError(`${result.reason} on this host`, {
        hint: 'install it on every worker host, or give its full path; chunk ' + chunk + ' was recorded as failed',
        exitStatus: result.spawnError === 'ENOENT' ? 127 : 126,
      });
    }
    return 'failed';
  }

  /** Rename the temp output into out/: the one step that makes an output exist (invariant 1). */
  async commit(chunk: string, temp: string): Promise<boolean> {
    const target = this.layout.outputPath(chunk, this.ext);
    if (this.options.fsync) {
      const handle = await fs.open(temp, 'r+').catch(() => undefined);
      if (handle) {
        await handle.sync();
        await handle.close();
      }
    }
    try {
      await fs.rename(temp, target);
      return true;
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error;
      // Either the command wrote no {out}, or the group folder under out/ does not exist yet.
      const dir = path.dirname(target);
      if (this.madeOutputDirs.has(dir) || !(await exists(temp))) return false;
      await makeGroupFolder(this.layout.outDir, dir);
      this.madeOutputDirs.add(dir);
      await fs.rename(temp, target);
      return true;
    }
  }

  async readFileList(chunk: string): Promise<string[]> {
    const text = await fs.readFile(this.layout.chunkPath(chunk), 'utf8');
    return text
      .split('\n')
      .filter((line) => line.length > 0)
      .map((line) => path.resolve(this.layout.root, line));
  }

  async finalReport(started: number): Promise<WorkReport> {
    const [listed, chunks] = await Promise.all([listOutputs(this.layout), listChunks(this.layout)]);
    // The listing is a hint: confirm what it says is missing with direct lookups (few, bounded).
    const unlisted = chunks.filter((c) => !listed.has(c) && !this.knownDone.has(c));
    const found = await mapBounded(unlisted, 16, (c) => exists(this.layout.outputPath(c, this.ext)));
    const missing = unlisted.filter((_, i) => !found[i]);
    const failedForGood = missing.filter((c) => this.exhausted.has(c));
    const remaining = missing.length - failedForGood.length;
    return {
      job: this.layout.root,
      worker: this.workerId,
      done: this.done,
      failedAttempts: this.failedAttempts,
      chunks: chunks.length,
      complete: missing.length === 0 && this.manifest.complete,
      failedForGood,
      remaining,
      stoppedBy: this.stopReason,
      ms: Date.now() - started,
    };
  }
}

/** A chunk claimed, looked up again and with its files open: ready for its lane to run. */
interface ReadyChunk {
  chunk: string;
  claim: Claim;
  attempt: number;
  /** The input files of a --files chunk. */
  files: string[] | undefined;
  temp: string;
  io: ChunkIo | undefined;
  /** Why its files could not be opened: recorded as the attempt's failure, like a command's. */
  openError: unknown;
}

interface ChunkOutcome {
  result: ChunkRunResult;
  ms: number;
}

/** A chunk whose command could not be started: an input missing, or the spawn itself failed. */
function couldNotStart(error: unknown, chunk: string): ChunkRunResult {
  const code = errorCode(error);
  const reason = code === 'ENOENT' ? `input missing: ${(error as NodeJS.ErrnoException).path ?? chunk}` : `could not start the chunk: ${(error as Error)?.message ?? String(error)}`;
  return { ok: false, exitCode: null, signal: null, timedOut: false, aborted: false, stderrTail: '', reason };
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** mkdir of one folder whose parent must exist (never `-p`: invariant 6); there already is fine. */
async function makeFolder(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir);
  } catch (error) {
    if (errorCode(error) !== 'EEXIST') throw error;
  }
}

/** Less free space than a small write needs (statfs; unsupported file systems say "not full"). */
async function diskIsFull(dir: string): Promise<boolean> {
  try {
    const stats = await fs.statfs(dir);
    return stats.bavail * stats.bsize < 64 * 1024;
  } catch {
    return false;
  }
}

async function translateFsError(error: unknown, layout: JobLayout): Promise<unknown> {
  if (error instanceof PieceworkError) return error;
  if (isMountGone(error)) return new JobMissingError(layout.root, `the file system answered ${errorCode(error)}: the mount looks gone`);
  const code = errorCode(error);
  // A job folder operation that finds nothing: if the marker went too, the mount dropped.
  if ((code === 'ENOENT' || code === 'ENOTDIR') && !(await exists(layout.jobFile).catch(() => false))) {
    return new JobMissingError(layout.root, 'job.json disappeared while working: the mount may have dropped');
  }
  if (code === 'ENOSPC') return new PieceworkError('the disk holding the job is full', { hint: 'free space and start the worker again: nothing partial was committed, and chunks not done are redone', cause: error });
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return new PieceworkError(`cannot write in ${layout.root}: ${(error as Error).message}`, { hint: 'check the permissions of the job folder and that the mount is writable', cause: error });
  return error;
}
