/**
 * The worker's scheduler: which chunk each lane takes next, when to list the job again, and when
 * the work is over. Knows the worker only through SchedulingWorker.
 */
import type { EventSink } from '../events.js';
import { checkSplitAlive, watchForNewChunks } from '../follow.js';
import { chunkNames, readManifest, type JobManifest } from '../manifest.js';
import { listedOutputs, listFailures } from '../scan.js';
import type { JobStore } from '../store/job-store.js';
import { JobReplacedError } from '../errors.js';
import { parseRequeueRecord, REQUEUE_RECORD, type RequeueRecord } from '../requeue-record.js';

/** Never look up held chunks' outputs more often than this, whatever the chunks' length. */
const HELD_LOOKUP_MIN_MS = 100;
/** Held chunks looked up per round: about one per lane in the cluster; the rest take turns. */
const MAX_HELD_LOOKUPS = 16;
/**
 * At most one lookup per this many ms on average: many held chunks (claims of a dead host, not
 * yet stale) must not turn forty waiting workers into a load on the file server.
 */
const HELD_LOOKUP_SPACING_MS = 20;

/**
 * A pass lists the job once and deals out what was missing then; with many hosts, most of those
 * chunks are finished by others before this worker reaches them (each host's queue holds every
 * chunk: about hosts − 1 wasted claims or lookups per chunk). After this many chunks found done
 * by others since the last pass, the job is listed again...
 */
const RELIST_AFTER_FOUND_DONE = 16;
/** ...but never more often than this many times a pass's own length apart (a listing of a huge job costs seconds). */
const RELIST_SPACING_FACTOR = 10;

/** Why a worker stopped before the job was complete. */
/** 'halt': `work --halt-after N` saw N chunks fail for good (and wrote STOP for the others). */
export type StopReason = 'stop-file' | 'signal' | 'split-incomplete' | 'halt';

/** What the scheduler reads and calls of its worker. */
export interface SchedulingWorker {
  readonly store: JobStore;
  manifest: JobManifest;
  chunks: string[];
  readonly options: { follow?: boolean };
  readonly pollMs: number;
  readonly onEvent: EventSink;
  readonly stopReason: StopReason | undefined;
  readonly stopping: AbortController;
  readonly knownDone: Set<string>;
  readonly exhausted: Set<string>;
  readonly inProgress: Set<string>;
  /** How long this worker's commands usually take; undefined before the first has ended. */
  readonly typicalRunMs: number | undefined;
  /** Whether a chunk has its output, by a lookup of that one name (no listing). */
  outputExists(chunk: string): Promise<boolean>;
  checkStopFile(): Promise<void>;
  stop(reason: StopReason): void;
}

/**
 * Hands chunks to lanes. Each pass lists the job once (chunks while the split is unfinished,
 * outputs, failures), shuffles what is missing, and deals it out. When the queue runs dry it
 * looks again; when only other workers' claims remain it waits and looks again, so that claims
 * of dead workers are taken over once they go stale.
 */
export class Scheduler {
  readonly #worker: SchedulingWorker;
  #queue: string[] = [];
  /**
   * Chunks another worker held when we tried them, and when to try again. A mark outlives the
   * passes that start meanwhile: clearing it at each pass let lanes that share one scheduler
   * retry a held chunk hundreds of times a second.
   */
  #busyUntil = new Map<string, number>();
  #scanning: Promise<void> | undefined;
  #finished = false;
  #lastScan = 0;
  #lastScanMs = 0;
  #wakeUp: (() => void) | undefined;
  #stopFollowing: (() => void) | undefined;

  /**
   * `startedAtMount` settles once the worker is set up (its clock measured, its log open); the
   * first pass lists the job before that, and acts on what it found only after.
   */
  constructor(worker: SchedulingWorker, startedAtMount: Promise<number>) {
    this.#worker = worker;
    this.#startedAtMount = startedAtMount;
  }

  /** Stop watching the job marker: a watcher left open keeps the process alive after a failure. */
  close(): void {
    this.#stopFollowing?.();
    this.#stopFollowing = undefined;
  }

  /** Another worker holds this chunk: leave it until the next poll (its claim may go stale). */
  markBusy(chunk: string): void {
    this.#busyUntil.set(chunk, Date.now() + this.#retryIntervalMs());
  }

  get listingAgeMs(): number {
    return Date.now() - this.#lastScan;
  }

  /** A lane found a chunk's output already made by another worker. */
  foundDone(): void {
    this.#foundDoneSinceScan++;
  }

  #foundDoneSinceScan = 0;

  /** Whether what is queued is stale enough, by what lanes keep finding, to list the job again. */
  #queueOutrun(): boolean {
    return this.#foundDoneSinceScan >= RELIST_AFTER_FOUND_DONE && Date.now() - this.#lastScan >= RELIST_SPACING_FACTOR * this.#lastScanMs;
  }

  /** A lane finished a chunk: a scan waiting for our own last chunks may look again. */
  chunkFinished(): void {
    if (this.#waitingForOwnChunks) this.#wakeUp?.();
  }

  #waitingForOwnChunks = false;

  /** What the pass that found the work over read: the worker's final report needs no other. */
  get finishingPass(): { manifest: JobManifest; requeue: RequeueRecord | undefined } | undefined {
    return this.#finishingPass;
  }

  #finishingPass: { manifest: JobManifest; requeue: RequeueRecord | undefined } | undefined;

  /** Take the first pass now, before any lane asks (start-up overlaps it with other steps). */
  listAhead(): void {
    this.#scanning ??= this.#scan().finally(() => {
      this.#scanning = undefined;
    });
    this.#scanning.catch(() => {}); // a failure reaches the first lane that asks
  }

  async next(): Promise<string | undefined> {
    await this.#worker.checkStopFile();
    for (;;) {
      if (this.#worker.stopReason || this.#finished) {
        this.#stopFollowing?.();
        return undefined;
      }
      if (this.#queueOutrun()) this.#queue = [];
      const chunk = this.#queue.pop();
      if (chunk !== undefined) return chunk;
      this.listAhead();
      await this.#scanning;
    }
  }

  /**
   * Outputs this worker confirmed once may have been removed since by `verify --requeue` (on any
   * host): its record names them, and they are looked at again like any other chunk.
   */
  #forgetRequeued(requeue: RequeueRecord | undefined, startedAtMount: number): void {
    if (!requeue || requeue.at === this.#requeueSeen) return;
    const first = this.#requeueSeen === undefined;
    this.#requeueSeen = requeue.at;
    // A record older than this worker was read at start-up, before anything was confirmed.
    if (first && Date.parse(requeue.at) < startedAtMount) return;
    if (requeue.more) this.#worker.knownDone.clear();
    for (const chunk of requeue.chunks) this.#worker.knownDone.delete(chunk);
  }

  #requeueSeen: string | undefined;
  /** When this worker started, by the mount's clock (requeues before it are history). */
  readonly #startedAtMount: Promise<number>;

  /** How long to leave chunks others hold, and so how often to list a job we only wait on. */
  #retryIntervalMs(): number {
    // A pass over a huge job costs seconds: never spend more than half the time listing.
    return Math.max(this.#worker.pollMs, this.#lastScanMs * 2);
  }

  async #scan(): Promise<void> {
    const worker = this.#worker;
    const began = Date.now();
    this.#foundDoneSinceScan = 0;
    // The job marker is checked before every pass (invariant 6): a dropped mount must not look
    // like an empty job.
    // The listings go out together with it, on the bet that the manifest is unchanged (a round
    // trip or three less per pass on a network store); they are used only once it is read, and
    // taken again when it names other chunks (a split still running).
    const readRequeue = () => worker.store.read('top', REQUEUE_RECORD).then(parseRequeueRecord);
    const listAll = (manifest: JobManifest, chunks: string[]) => Promise.all([listedOutputs(worker.store, manifest, chunks), listFailures(worker.store, new Set(chunks)), readRequeue()]);
    // Every chunk done (seen by this worker) or running in our own lanes, none failed for good:
    // the listings could tell nothing new, only the requeue record can (a worker's last passes,
    // while its lanes finish, each cost a listing of out/ and failed/ otherwise).
    const accountedFor = (chunks: string[]) => worker.exhausted.size === 0 && chunks.every((c) => worker.knownDone.has(c) || worker.inProgress.has(c));
    const light = accountedFor(worker.chunks);
    const early = light ? readRequeue().then((requeue) => [new Set(worker.knownDone), new Set<string>(), requeue] as const) : listAll(worker.manifest, worker.chunks);
    early.catch(() => {}); // settled below, or dropped when the manifest read fails
    const manifest = await readManifest(worker.store);
    if (manifest.id !== worker.manifest.id) throw new JobReplacedError(worker.store.location, 'this worker');
    // The manifest names the chunks (invariant 8): a chunk file deleted by hand is still a chunk.
    const sameChunks = manifest.chunkCount === worker.manifest.chunkCount && manifest.groups.length === worker.manifest.groups.length && manifest.ext === worker.manifest.ext;
    if (!sameChunks) worker.chunks = chunkNames(manifest);
    worker.manifest = manifest;
    let listed = sameChunks ? await early : await listAll(manifest, worker.chunks);
    let fromListings = !light || !sameChunks;
    const startedAtMount = await this.#startedAtMount;
    this.#forgetRequeued(listed[2], startedAtMount);
    if (!fromListings && !accountedFor(worker.chunks)) {
      // A requeue took back outputs this worker had seen: a real pass after all.
      listed = await listAll(manifest, worker.chunks);
      fromListings = true;
    }
    const [outputs, failures] = listed;
    // (Without listings, nothing was exhausted when the pass began; what a lane added since stays.)
    if (fromListings) for (const chunk of worker.exhausted) if (!failures.has(chunk)) worker.exhausted.delete(chunk);

    const pending = worker.chunks.filter((c) => !outputs.has(c) && !worker.knownDone.has(c) && !worker.exhausted.has(c) && !worker.inProgress.has(c));
    const now = Date.now();
    for (const [chunk, until] of this.#busyUntil) if (until <= now || outputs.has(chunk)) this.#busyUntil.delete(chunk);
    const takeable = pending.filter((c) => !this.#busyUntil.has(c));
    this.#lastScan = now;
    this.#lastScanMs = now - began;
    worker.onEvent({ type: 'work:pass', pending: pending.length, done: outputs.size, failed: worker.exhausted.size, busy: pending.length - takeable.length });

    if (takeable.length > 0) {
      this.#queue = shuffle(takeable);
      return;
    }
    if (pending.length > 0) {
      // Only chunks other workers hold: wait, then look again — they finish them, or their
      // claims go stale and are taken over.
      worker.onEvent({ type: 'work:waiting', heldByOthers: pending.length, splitIncomplete: false });
      await this.#waitForHeldChunks(pending);
      return;
    }
    if (worker.inProgress.size > 0) {
      // Our own lanes still run the last chunks; a failure there may requeue one. Look again
      // when one of them ends.
      this.#waitingForOwnChunks = true;
      await this.#sleep(worker.pollMs);
      this.#waitingForOwnChunks = false;
      return;
    }
    if (manifest.complete) {
      this.#finished = true;
      this.#finishingPass = { manifest, requeue: listed[2] };
      return;
    }
    if (!worker.options.follow) {
      worker.stop('split-incomplete');
      return;
    }
    worker.onEvent({ type: 'work:waiting', heldByOthers: 0, splitIncomplete: true });
    await checkSplitAlive(worker.store, manifest);
    this.#stopFollowing ??= await watchForNewChunks(worker.store, () => this.#wakeUp?.());
    await this.#sleep(worker.pollMs);
  }

  /**
   * Wait while others hold the last chunks, looking up their outputs one by one every so often:
   * a listing can be 20 s old on sshfs, and so can the lock a finished worker removed, so neither
   * would show promptly that the job is done. The lookups run about twice per typical command
   * (a few round trips for a few names; more names, more spaced), so a worker leaves soon after
   * the last output lands; claims are tried again only when their busy marks expire.
   */
  async #waitForHeldChunks(pending: string[]): Promise<void> {
    const worker = this.#worker;
    const retryAt = Math.min(...pending.map((c) => this.#busyUntil.get(c) ?? 0));
    const batch = Math.min(pending.length, MAX_HELD_LOOKUPS);
    const halfACommand = Math.min(worker.pollMs, (worker.typicalRunMs ?? worker.pollMs) / 2);
    const lookEveryMs = Math.max(HELD_LOOKUP_MIN_MS, halfACommand, batch * HELD_LOOKUP_SPACING_MS);
    let waiting = pending;
    while (!worker.stopReason) {
      const untilRetry = retryAt - Date.now();
      if (untilRetry <= 0) return;
      await this.#sleep(Math.min(untilRetry, lookEveryMs));
      if (worker.stopReason) return;
      const found = await Promise.all(waiting.slice(0, batch).map(async (chunk) => ((await worker.outputExists(chunk)) ? chunk : undefined)));
      const done = found.filter((c): c is string => c !== undefined);
      for (const chunk of done) {
        worker.knownDone.add(chunk);
        this.#busyUntil.delete(chunk);
      }
      if (done.length > 0) return; // a pass now shows whether anything is left to wait for
      if (waiting.length > batch) waiting = [...waiting.slice(batch), ...waiting.slice(0, batch)];
    }
  }

  /** Sleep, cut short by a stop, a signal or a change to the job marker. */
  #sleep(ms: number): Promise<void> {
    const abort = this.#worker.stopping.signal;
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        abort.removeEventListener('abort', done);
        this.#wakeUp = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      abort.addEventListener('abort', done);
      this.#wakeUp = done;
    });
  }
}

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}
