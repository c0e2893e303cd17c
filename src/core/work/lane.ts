/**
 * One lane: chunks run one after another, and around each runs the slow file-system work of its
 * neighbours. Shortly before the current command is expected to end, the next chunks are claimed
 * and opened — as many as it takes to cover the time a preparation takes: one on a local disk, a
 * few on a slow mount — and finished chunks are committed and released while the next one runs.
 * A lane never runs two commands at once.
 */
import { dropReady, prepareChunk, runAttempt, settleAttempt, type AttemptContext, type AttemptOutcome, type ReadyChunk } from './attempt.js';
import { settlesWithin } from './lane-pace.js';
import type { Scheduler } from './scheduler.js';
import type { LaneSpace } from '../store/job-store.js';
import type { StderrCapture } from './stderr-capture.js';
import type { CommandStarter } from '../spawn/command-starter.js';
import type { ChunkCgroup } from './chunk-cgroup.js';

/** Chunks a lane may have committing behind the one it runs. */
const MAX_COMMITS_BEHIND = 16;
/** How long a listing of out/ is taken at its word before a chunk is looked up first. */
const LISTING_TRUST_MS = 2000;
/** How long after a claim found an output already there to keep looking before claiming. */
const LOOK_FIRST_AFTER_SKIP_MS = 10_000;

/** What a lane needs of its worker besides the attempt context. */
export interface LaneHost {
  readonly context: AttemptContext;
  readonly scheduler: Scheduler;
  /** Set once the worker takes no new chunk. */
  readonly stopReason: string | undefined;
  readonly knownDone: Set<string>;
  readonly exhausted: Set<string>;
  readonly inProgress: Set<string>;
  /** A fatal error: the worker stops, and this is what the user reads. */
  fail(error: Error): void;
  /** An attempt ended (heartbeat, counts). */
  attemptEnded(chunk: string, outcome: AttemptOutcome): void;
}

export class Lane {
  readonly #host: LaneHost;
  readonly #lane: number;
  readonly #space: LaneSpace;
  readonly #stderr: StderrCapture;
  readonly #starter: CommandStarter;
  readonly #cgroup: ChunkCgroup | undefined;
  /** When a claim last found its chunk's output already there (another host finished it). */
  #claimFoundDoneAt = 0;

  constructor(host: LaneHost, lane: number, space: LaneSpace, stderr: StderrCapture, starter: CommandStarter, cgroup: ChunkCgroup | undefined) {
    this.#host = host;
    this.#lane = lane;
    this.#space = space;
    this.#stderr = stderr;
    this.#starter = starter;
    this.#cgroup = cgroup;
  }

  async run(): Promise<void> {
    const host = this.#host;
    const ready: Promise<ReadyChunk | undefined>[] = [];
    const committing = new Set<Promise<void>>();
    const prepareNext = () => {
      const next = this.#nextReady();
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
        if (host.stopReason) {
          await this.#drop(current);
          return;
        }
        const running = runAttempt(host.context, current, this.#lane, this.#stderr, this.#starter, this.#cgroup);
        const aheadMs = host.context.pace.prepareAheadAfterMs();
        if (aheadMs !== undefined && !(await settlesWithin(running, aheadMs))) {
          while (ready.length < host.context.pace.prepareDepth() && !host.stopReason) prepareNext();
        }
        const result = await running;
        // Commits overlap as well, a few at most: each holds its claim until its rename is done.
        if (committing.size >= MAX_COMMITS_BEHIND) await Promise.race(committing);
        const commit = this.#finish(current, result).catch((error: unknown) => host.fail(asError(error)));
        committing.add(commit);
        void commit.finally(() => committing.delete(commit));
        // A command that cannot start at all ends the worker: let that land before the next chunk.
        if (result.result.spawnError !== undefined || result.result.stopWorker) await commit;
        if (host.stopReason) return; // chunks readied ahead are dropped below
        if (ready.length === 0) prepareNext();
      }
    } catch (error) {
      host.fail(asError(error));
    } finally {
      for (const next of ready.splice(0)) {
        const early = await next.catch(() => undefined);
        if (early) await this.#drop(early);
      }
      await Promise.all(committing);
    }
  }

  /** The next chunk this lane can run, claimed and with its files open; undefined at the end. */
  async #nextReady(): Promise<ReadyChunk | undefined> {
    const host = this.#host;
    for (;;) {
      const chunk = await host.scheduler.next();
      if (chunk === undefined) return undefined;
      host.inProgress.add(chunk);
      let ready: ReadyChunk | undefined;
      try {
        const began = Date.now();
        const lookFirst = host.scheduler.listingAgeMs > LISTING_TRUST_MS && Date.now() - this.#claimFoundDoneAt < LOOK_FIRST_AFTER_SKIP_MS;
        const outcome = await prepareChunk(host.context, this.#lane, chunk, this.#space, lookFirst);
        if (outcome.kind === 'ready') {
          host.context.pace.recordPrepare(Date.now() - began);
          ready = outcome.ready;
        } else if (outcome.kind === 'busy') {
          host.scheduler.markBusy(chunk);
        } else {
          if (outcome.reason === 'output-exists') {
            host.knownDone.add(chunk);
            host.scheduler.foundDone();
            this.#claimFoundDoneAt = Date.now();
          } else {
            host.exhausted.add(chunk);
          }
          host.context.onEvent({ type: 'chunk:skipped', chunk, lane: this.#lane, reason: outcome.reason });
        }
      } finally {
        if (!ready) {
          host.inProgress.delete(chunk);
          host.scheduler.chunkFinished();
        }
      }
      if (ready) return ready;
    }
  }

  /** After the command: commit or record the failure, then release the claim. */
  async #finish(ready: ReadyChunk, result: Awaited<ReturnType<typeof runAttempt>>): Promise<void> {
    const host = this.#host;
    let outcome: AttemptOutcome = 'interrupted';
    try {
      outcome = await settleAttempt(host.context, ready, result, this.#lane);
    } finally {
      if (outcome === 'done') host.knownDone.add(ready.chunk);
      if (outcome === 'failed' && ready.attempt >= host.context.maxAttempts) host.exhausted.add(ready.chunk);
      host.attemptEnded(ready.chunk, outcome);
      try {
        await ready.claim.release();
      } finally {
        host.inProgress.delete(ready.chunk);
        host.scheduler.chunkFinished();
      }
    }
  }

  async #drop(ready: ReadyChunk): Promise<void> {
    await dropReady(ready);
    this.#host.inProgress.delete(ready.chunk);
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
