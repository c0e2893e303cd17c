/**
 * work: the worker. Claims chunks in shuffled order, runs the user's command on each, commits the
 * output atomically, and returns only when every chunk has an output or has failed for good.
 *
 * This file is the worker's life: start-up (the job's rules, the mount's clock, heartbeat, log),
 * the watchdog that notices a hung mount or a vanished job, the lanes (lane.ts, each attempt in
 * attempt.ts), and the final report — which is confirmed by lookups, never read off a listing.
 */
import { readFileSync } from 'node:fs';
import { errorCode, isMountGone, JobMissingError, JobReplacedError, PieceworkError, UsageError } from '../errors.js';
import { ignoreEvents, type EventSink } from '../events.js';
import { Heartbeat, readHeartbeats } from '../heartbeat.js';
import { liveWorkersWithOtherCommands } from '../worker-commands.js';
import { chunkNames, outputName, readManifest, type JobManifest } from '../manifest.js';
import { WorkBehind } from '../concurrency.js';
import { confirmOutputs } from '../scan.js';
import { parseRequeueRecord, REQUEUE_RECORD } from '../requeue-record.js';
import type { Claims, JobStore, LaneSpace } from '../store/job-store.js';
import { HOST, STOP_FILE, workerIdFor } from '../store/layout.js';
import type { MountClock } from '../store/mount-clock.js';
import { isRemoteAddress, openJobStore } from '../store/open-store.js';
import { defaultUpdateMs } from '../store/owner-record.js';
import { PACKAGE_VERSION } from '../version.js';
import { FreeSpaceGauge } from './free-space.js';
import type { AttemptContext, AttemptOutcome } from './attempt.js';
import { Lane } from './lane.js';
import { LocalLanes } from './local-lanes.js';
import { LanePace } from './lane-pace.js';
import { prepareCommand, type CommandTemplate } from './run-chunk.js';
import { Scheduler, type StopReason } from './scheduler.js';
import { StopSignal } from './stop-signal.js';
import { WorkerLog } from './worker-log.js';
import { warmLanesFor, type WarmLanes } from './warm-lanes.js';
import { checkWorkOptions, type WorkOptions } from './work-options.js';

export { CommandUnavailableError } from '../errors.js';
export type { WorkOptions } from './work-options.js';

export interface WorkReport {
  job: string;
  worker: string;
  /** Outputs this worker committed. */
  done: number;
  /** Failed attempts by this worker. */
  failedAttempts: number;
  chunks: number;
  /** Every chunk has an output (confirmed by lookups), and the split has finished. */
  complete: boolean;
  /** Chunks that failed for good (no output, no retries left), whoever ran them. */
  failedForGood: string[];
  /** Chunks with neither output nor a final failure when the worker returned. */
  remaining: number;
  stoppedBy?: StopReason;
  ms: number;
}

export async function work(options: WorkOptions): Promise<WorkReport> {
  const lanes = checkWorkOptions(options);
  const workerId = workerIdFor(HOST, process.pid);
  const opening = options.store ? Promise.resolve(options.store) : openJobStore(options.job);
  opening.catch(() => {}); // awaited below
  // This host's part of the lanes is made while a network store connects (local-lanes.ts).
  const localJob = isRemoteAddress(options.job) ? undefined : (await opening).localPath('top', '');
  const localLanes = LocalLanes.open({ lanes, workerId, env: process.env, warm: Boolean(options.warm), localJob });
  localLanes.catch(() => {}); // awaited by the worker, or settled below
  let store: JobStore;
  try {
    store = await opening;
  } catch (error) {
    await localLanes.then((made) => made.close(), () => {});
    throw error;
  }
  // The clock is measured while the job is read: neither needs the other, and each is round trips
  // on a network store. The job's own errors (not a job, a STOP file) are the ones reported.
  const clock = store.measureClock(workerId);
  clock.catch(() => {}); // awaited by the worker, or settled below
  try {
    const [manifest, stopRequested] = await Promise.all([readManifest(store), store.lookup('top', STOP_FILE)]);
    checkSharedSettings(manifest, options);
    if (stopRequested) {
      throw new PieceworkError(`the job has a STOP file, so workers take no chunk`, {
        hint: `run \`piecework stop --clear ${store.location}\` to let workers run again`,
        exitStatus: 3,
      });
    }
    return await new Worker(store, manifest, lanes, options).run(clock, localLanes);
  } finally {
    // The probes' removal is sent before the clock resolves: the store may close after it.
    await Promise.all([clock.catch(() => {}), localLanes.then((made) => made.close(), () => {})]);
    if (!options.store) await store.close();
  }
}

/**
 * Settings that decide what an output is called or when a claim is dead are the job's, not a
 * worker's: a worker with another --ext would run every chunk again under other names, and one
 * with a shorter --stale would take live claims from the others.
 */
function checkSharedSettings(manifest: JobManifest, options: WorkOptions): void {
  if (options.ext !== undefined) {
    const ext = options.ext === '' || options.ext.startsWith('.') ? options.ext : `.${options.ext}`;
    if (ext !== manifest.ext) {
      throw new UsageError(
        `--ext ${options.ext}: this job's outputs are named <chunk>${manifest.ext || ' (no extension)'}; a worker cannot name them otherwise`,
        manifest.ext ? `leave --ext out (or give --ext ${manifest.ext})` : 'the extension is part of the job: give it to split (`piecework split … --ext .json`), or leave --ext out',
      );
    }
  }
  if (options.staleSeconds !== undefined && options.staleSeconds !== manifest.staleSeconds) {
    throw new UsageError(
      `--stale ${options.staleSeconds}: this job's stale period is ${manifest.staleSeconds}s, and every worker must judge claims by the same`,
      'leave --stale out; the stale period is set when the job is made (`piecework split … --stale N`)',
    );
  }
}

/**
 * After a signal, a request to a network store not answered within this ends the link: the
 * worker then exits without releasing its claims (they go stale), well within a 10 s grace period.
 */
const SIGNAL_REQUEST_DEADLINE_MS = 4000;

class Worker {
  readonly store: JobStore;
  readonly options: WorkOptions;
  readonly lanes: number;
  readonly workerId = workerIdFor(HOST, process.pid);
  readonly onEvent: EventSink;
  readonly template: CommandTemplate;
  readonly staleMs: number;
  readonly maxAttempts: number;
  readonly pollMs: number;
  manifest: JobManifest;
  chunks: string[];
  clock!: MountClock;
  claims!: Claims;
  heartbeat!: Heartbeat;
  log!: WorkerLog;
  scheduler!: Scheduler;
  context!: AttemptContext;
  readonly pace = new LanePace();
  readonly startedAt = Date.now();
  /** --warm: each lane's long-lived process (issue 11); undefined in per-chunk mode. */
  readonly warm: WarmLanes | undefined;

  /** Set when the worker must stop taking chunks; `fatal` also ends it with an error. */
  stopReason: StopReason | undefined;
  fatal: Error | undefined;
  /** Stops every running command (signal, fatal error). */
  readonly killAll = new StopSignal();
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

  constructor(store: JobStore, manifest: JobManifest, lanes: number, options: WorkOptions) {
    this.store = store;
    this.manifest = manifest;
    this.chunks = chunkNames(manifest);
    this.lanes = lanes;
    this.options = options;
    const sink = options.onEvent ?? ignoreEvents;
    // The first pass runs while the worker is still starting (start-up overlaps it): what it
    // reports waits for work:start, so that consumers always see work:start first.
    let held: Parameters<EventSink>[0][] | undefined = [];
    this.onEvent = (event) => {
      if (held && (event.type === 'work:pass' || event.type === 'work:waiting')) {
        held.push(event);
        return;
      }
      sink(event);
      if (held && event.type === 'work:start') {
        const queued = held;
        held = undefined;
        for (const early of queued) sink(early);
      }
    };
    this.template = prepareCommand(options.command);
    this.staleMs = manifest.staleSeconds * 1000;
    this.maxAttempts = 1 + (options.retries ?? manifest.retries);
    this.pollMs = (options.pollSeconds ?? Math.min(5, this.staleMs / 4000)) * 1000;
    // The lanes' processes start on their first chunk, not here.
    const logWarm = (entry: { lane: number; chunk?: string; event: string; detail?: string }) => {
      this.log.line(entry);
      if (entry.event === 'warning') this.onEvent({ type: 'warning', message: `lane ${entry.lane}${entry.chunk ? `, chunk ${entry.chunk}` : ''}: ${entry.detail ?? ''}` });
    };
    this.warm = warmLanesFor(options.warm, this.template, { lanes, job: store.location, worker: this.workerId, maxChunksPerProcess: options.maxChunksPerProcess, log: logWarm });
  }

  /** `localLanes` is made and closed by the caller; closed here too, as soon as the lanes end. */
  async run(measuringClock: Promise<MountClock>, localLanes: Promise<LocalLanes>): Promise<WorkReport> {
    const started = this.startedAt;
    // Start-up steps that do not depend on each other overlap: each is round trips on a mount.
    const laneSpaces = Promise.all(Array.from({ length: this.lanes }, (_, lane) => this.store.openLaneSpace(this.workerId, lane)));
    // Awaited below; a failure meanwhile must not count as unhandled (it would end the process).
    laneSpaces.catch(() => {});
    // The first pass lists the job while the clock is measured (it only reads); it acts on what
    // it found only once the worker is set up below, and no chunk is claimed before the
    // heartbeat exists, since requeue judges our temp files by it.
    let setUpDone!: (mountNow: number) => void;
    let setUpFailed!: (error: unknown) => void;
    const startedAtMount = new Promise<number>((resolve, reject) => {
      setUpDone = resolve;
      setUpFailed = reject;
    });
    startedAtMount.catch(() => {}); // a failed start-up is thrown below, not by the pass
    this.scheduler = new Scheduler(this, startedAtMount);
    this.scheduler.listAhead();
    try {
      this.clock = await measuringClock;
    } catch (error) {
      setUpFailed(error);
      await laneSpaces.then((opened) => Promise.all(opened.map((space) => space.close()))).catch(() => {});
      throw error;
    }
    this.claims = await this.store.claims({ staleMs: this.staleMs, updateMs: defaultUpdateMs(this.staleMs) }, this.clock, { workerId: this.workerId, host: HOST, pid: process.pid, bootId: BOOT_ID });
    this.log = new WorkerLog(this.store, `${this.workerId}.log`, this.workerId, () => this.clock.now());
    this.heartbeat = new Heartbeat(this.store, this.clock, {
      worker: this.workerId,
      host: HOST,
      pid: process.pid,
      jobId: this.manifest.id,
      lanes: this.lanes,
      command: this.options.command,
      version: PACKAGE_VERSION,
      intervalMs: Math.min(5000, this.staleMs / 4),
    });
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the context reads the worker's newest manifest
    const worker = this;
    this.context = {
      store: this.store,
      get manifest() {
        return worker.manifest;
      },
      workerId: this.workerId,
      command: this.options.command,
      template: this.template,
      claims: this.claims,
      clock: this.clock,
      heartbeat: this.heartbeat,
      log: this.log,
      onEvent: this.onEvent,
      pace: this.pace,
      freeSpace: new FreeSpaceGauge(this.store),
      maxAttempts: this.maxAttempts,
      timeoutMs: this.options.timeoutSeconds === undefined ? undefined : this.options.timeoutSeconds * 1000,
      fsync: this.options.fsync ?? false,
      killAll: this.killAll,
      warm: this.warm,
      successExits: new Set(this.options.successExitCodes ?? []),
    };
    // A network store's dead link ends the worker now, not at its next request.
    this.store.onLinkLost?.((error) => this.fail(error));
    const onAbort = () => this.stop('signal');
    this.options.signal?.addEventListener('abort', onAbort);
    if (this.options.signal?.aborted) this.stop('signal');
    const ticker = setInterval(() => void this.tick(), this.heartbeat.record.intervalMs);
    ticker.unref();
    this.log.line({ event: 'start', detail: `lanes=${this.lanes} stale=${this.staleMs / 1000}s clock-offset=${this.clock.offsetMs / 1000}s command=${JSON.stringify(this.options.command)}` });

    let failure: unknown;
    let spaces: LaneSpace[] = [];
    let local: LocalLanes | undefined;
    let commandCheck: Promise<void> = Promise.resolve();
    setUpDone(this.clock.now());
    try {
      const setUp = await Promise.allSettled([laneSpaces.then((opened) => void (spaces = opened)), localLanes.then((made) => void (local = made)), this.heartbeat.write('running')]);
      const setUpFailure = setUp.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
      if (setUpFailure) throw setUpFailure.reason;
      this.onEvent({ type: 'work:start', job: this.store.location, worker: this.workerId, lanes: this.lanes, chunks: this.chunks.length, pending: this.chunks.length, clockOffsetMs: this.clock.offsetMs });
      commandCheck = this.warnOfOtherCommands();
      await Promise.all(spaces.map((space, lane) => new Lane(this, lane, space, local!.stderr[lane]!, local!.starters[lane]!, local!.cgroups[lane]).run()));
      await this.behind.settled();
      if (this.fatal) throw this.fatal;
    } catch (error) {
      failure = error;
      this.killAll.stop();
    } finally {
      // No lane sends another request: close the warm processes' stdin, grace period, kill.
      await this.warm?.close();
      await commandCheck;
      this.scheduler?.close();
      clearInterval(ticker);
      this.options.signal?.removeEventListener('abort', onAbort);
    }
    // Empty by now: every temp output was committed or removed. Removed while the final report
    // reads the job (on a network store, round trips that need not wait for each other).
    const closing = Promise.all([...spaces.map((space) => space.close()), local?.close()]);
    closing.catch(() => {}); // awaited below
    const report = await this.finalReport(started).catch((error: unknown) => {
      failure ??= error;
      return undefined;
    });
    const state = failure ? 'failed' : 'exited';
    const reason = failure instanceof Error ? failure.message : (this.stopReason ?? (report?.complete ? 'complete' : 'incomplete'));
    this.log.line({ event: state, ms: Date.now() - started, detail: `${reason}; committed ${this.done}, failed attempts ${this.failedAttempts}` });
    // The exit record and the log go out while the lanes' (empty) folders are removed: a round
    // trip less at the end of every run on a network store.
    const ending = Promise.all([this.heartbeat.write(state, reason).catch(() => {}), this.log.close()]);
    ending.catch(() => {}); // awaited below
    await closing;
    await ending;
    if (failure) throw await translateError(failure, this.store);
    this.onEvent({ type: 'work:done', done: this.done, failed: this.failedAttempts, ms: Date.now() - started });
    return report!;
  }

  /** Claim releases of skipped chunks, finished behind the lanes. */
  readonly behind = new WorkBehind((error) => this.fail(asError(error)));

  stop(reason: StopReason): void {
    // A signal while draining for a STOP file still stops the running commands, and a network
    // store must not keep the worker past its grace period waiting for a silent server.
    if (reason === 'signal') {
      this.killAll.stop();
      this.store.hurry?.(SIGNAL_REQUEST_DEADLINE_MS);
    }
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
      this.killAll.stop();
      return;
    }
    this.stopReason = 'signal';
    this.stopping.abort();
    this.killAll.stop();
  }

  attemptEnded(chunk: string, outcome: AttemptOutcome): void {
    if (outcome === 'done') this.done++;
    if (outcome === 'failed') this.failedAttempts++;
    this.heartbeat.chunkEnded(chunk, outcome === 'done' ? 'done' : outcome === 'failed' ? 'failed' : 'other');
    if (outcome === 'failed') this.haltIfTooManyFailed();
  }

  /**
   * --halt-after N, like GNU parallel's `--halt soon,fail=N`: no new chunk, running ones finish.
   * The STOP file stops every worker of the job, on every host: they would fail the same way.
   * Counted here after each failure and in `tick` (failures others recorded that our claims met).
   */
  haltIfTooManyFailed(): void {
    const limit = this.options.haltAfter;
    if (limit === undefined || this.exhausted.size < limit || this.stopReason) return;
    this.stop('halt');
    const record = { requestedAt: new Date(this.clock.now()).toISOString(), host: HOST, pid: process.pid, reason: `work --halt-after ${limit}: ${this.exhausted.size} chunks failed for good`, jobId: this.manifest.id };
    this.behind.add(this.store.write('top', STOP_FILE, JSON.stringify(record) + '\n'));
  }

  get typicalRunMs(): number | undefined {
    return this.pace.typicalRunMs;
  }

  async outputExists(chunk: string): Promise<boolean> {
    return (await this.store.lookup('out', outputName(this.manifest, chunk))) !== undefined;
  }

  /** work() looked for a STOP file just before it made this worker: the first chunk need not. */
  #stopCheckedAt = Date.now();

  /** Look for a STOP file before taking a chunk — at most once a second, not per chunk. */
  async checkStopFile(): Promise<void> {
    if (this.stopReason || Date.now() - this.#stopCheckedAt < 1000) return;
    this.#stopCheckedAt = Date.now();
    if (await this.store.lookup('top', STOP_FILE)) this.stop('stop-file');
  }

  /**
   * Says so when a live worker of this job runs another command: both commands' outputs would be
   * merged together. Read once, beside the first claims; never fails the worker.
   */
  async warnOfOtherCommands(): Promise<void> {
    try {
      const others = liveWorkersWithOtherCommands(await readHeartbeats(this.store), this.workerId, this.options.command, this.clock.now(), this.staleMs).filter((h) => h.jobId === this.manifest.id);
      if (others.length === 0) return;
      const [first] = others;
      const message = `${others.length === 1 ? 'a live worker' : `${others.length} live workers`} of this job run${others.length === 1 ? 's' : ''} another command: ${JSON.stringify(first!.command)} (${first!.worker}), this one ${JSON.stringify(this.options.command)} — the outputs of both are merged together; if that is not meant, stop one of them (\`piecework status\` lists the commands in use)`;
      this.log.line({ event: 'warning', detail: message });
      this.onEvent({ type: 'warning', message });
    } catch {
      // Only a warning: a listing that fails here fails the worker elsewhere if it matters.
    }
  }

  /** Every few seconds: heartbeat, STOP file, job marker, and the hung-mount watchdog. */
  async tick(): Promise<void> {
    const hungMs = this.heartbeat.pendingWriteMs;
    if (hungMs > Math.max(30_000, this.staleMs)) {
      this.fail(new PieceworkError(`the job folder has not answered for ${Math.round(hungMs / 1000)}s (writing this worker's heartbeat): the mount looks hung`, { hint: 'check the network and the mount on this host (mount, dmesg); the chunks this worker held will be taken over by others', exitStatus: 4 }));
      return;
    }
    if (hungMs > 10_000) this.log.line({ event: 'waiting', detail: `the heartbeat write has waited ${Math.round(hungMs / 1000)}s for the job folder` });
    this.haltIfTooManyFailed();
    try {
      if (this.warm) this.heartbeat.record.warm = await this.warm.memory();
      await this.heartbeat.write();
      await this.checkStopFile();
      if (!(await this.store.markerInfo())) this.fail(new JobMissingError(this.store.location, 'job.json disappeared while working: the mount may have dropped'));
    } catch (error) {
      if (error instanceof JobMissingError) this.fail(error);
      else if (isMountGone(error)) this.fail(new JobMissingError(this.store.location, `the file system answered ${errorCode(error)}: the mount looks gone`));
    }
  }

  /**
   * Which chunks are still missing, confirmed: a listing can be 20 s old in both directions, so
   * every chunk it calls missing is looked up — and if a `verify --requeue` removed outputs since
   * this worker started, the outputs it had confirmed are looked up again too.
   */
  async finalReport(started: number): Promise<WorkReport> {
    // The pass that found nothing left read both a moment ago; after a stop, both are read now,
    // at once (on a network store each is round trips at the end of every run).
    const finishing = this.scheduler.finishingPass;
    const [manifest, requeue] = finishing ? [finishing.manifest, finishing.requeue] : await Promise.all([readManifest(this.store), this.store.read('top', REQUEUE_RECORD).then(parseRequeueRecord)]);
    this.manifest = manifest;
    if (manifest.id !== this.context.manifest.id) throw new JobReplacedError(this.store.location, 'this worker');
    const chunks = chunkNames(manifest);
    const requeuedSinceStart = requeue !== undefined && Date.parse(requeue.at) >= this.clock.now() - (Date.now() - this.startedAt) - 2000;
    const trusted = requeuedSinceStart ? new Set<string>() : this.knownDone;
    const unconfirmed = chunks.filter((c) => !trusted.has(c));
    // Nothing to confirm (this worker saw every output): no listing of out/.
    const listed = unconfirmed.length === 0 ? new Set<string>() : await confirmOutputs(this.store, manifest, unconfirmed);
    const missing = unconfirmed.filter((c) => !listed.has(c));
    const failedForGood = missing.filter((c) => this.exhausted.has(c));
    return {
      job: this.store.location,
      worker: this.workerId,
      done: this.done,
      failedAttempts: this.failedAttempts,
      chunks: chunks.length,
      complete: missing.length === 0 && manifest.complete,
      failedForGood,
      remaining: missing.length - failedForGood.length,
      stoppedBy: this.stopReason,
      ms: Date.now() - started,
    };
  }
}

/** This boot of this host: a claim made under it by a pid that is gone is dead at once. */
const BOOT_ID = (() => {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
})();

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

async function translateError(error: unknown, store: JobStore): Promise<unknown> {
  if (error instanceof PieceworkError) return error;
  if (isMountGone(error)) return new JobMissingError(store.location, `the file system answered ${errorCode(error)}: the mount looks gone`);
  const code = errorCode(error);
  // An operation in the job that finds nothing: if the marker went too, the mount dropped; else
  // a folder of the job was removed (by hand) under the worker.
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    if (!(await store.markerInfo().catch(() => undefined))) return new JobMissingError(store.location, 'job.json disappeared while working: the mount may have dropped');
    // The error names the file the call was given (a rename: its source, a claim: its folder),
    // not what is missing: the folder of the job that went is looked up above either path.
    const { path: named, dest } = error as NodeJS.ErrnoException & { dest?: string };
    let where = named;
    for (const file of [dest, named]) {
      const missing = file ? await store.missingFolderAbove(file).catch(() => undefined) : undefined;
      if (missing) {
        where = missing;
        break;
      }
    }
    return new PieceworkError(`part of the job folder is missing${where ? ` (${where})` : ''}: a folder removed by hand while the job was in use?`, {
      hint: 'see `piecework status JOB`; make the missing folder again (mkdir) and start the worker again, or split the job anew',
      cause: error,
    });
  }
  if (errorCode(error) === 'ENOSPC') return new PieceworkError('the disk holding the job is full', { hint: 'free space and start the worker again: nothing partial was committed, and chunks not done are redone', cause: error });
  return error;
}
