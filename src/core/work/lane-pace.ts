/**
 * When a lane should claim its next chunk while the current one still runs.
 *
 * Preparing a chunk (claim, look again, open its input and temp output) costs several round trips
 * on a network mount; done while the previous command runs, it leaves the lane's critical path.
 * But a chunk claimed too early sits idle under our claim while other hosts may have nothing to
 * do, so the next chunk is prepared only shortly before the current one is expected to end —
 * and only when chunks are short enough for the overhead to matter at all.
 */

/** Chunks running longer than this on average are not prepared ahead: the saving is < 1 %. */
export const PREPARE_AHEAD_MAX_RUN_MS = 10_000;

/** Commands shorter than this on average: the next chunk is prepared as soon as one starts. */
export const PREPARE_AT_START_BELOW_RUN_MS = 1000;

/** Chunks a lane keeps ready at most: each is a claim held before its command runs. */
const MAX_PREPARE_DEPTH = 8;

/** Weight of the newest sample in the running averages. */
const WEIGHT = 0.2;

export class LanePace {
  #runMs: number | undefined;
  #prepareMs: number | undefined;

  /** The running average of a command's time in this worker; undefined before the first. */
  get typicalRunMs(): number | undefined {
    return this.#runMs;
  }

  recordRun(ms: number): void {
    this.#runMs = average(this.#runMs, ms);
  }

  recordPrepare(ms: number): void {
    this.#prepareMs = average(this.#prepareMs, ms);
  }

  /**
   * How long after a command starts to begin preparing the lane's next chunk; undefined: not
   * ahead at all (no history yet, or long chunks), only once the command has ended.
   */
  prepareAheadAfterMs(): number | undefined {
    if (this.#runMs === undefined || this.#runMs > PREPARE_AHEAD_MAX_RUN_MS) return undefined;
    // Short commands: at once. A claim taken that early waits one short command at most, which
    // costs other hosts nothing; waiting for "shortly before the end" of a 20 ms command missed
    // it whenever it ended early, and the lane then prepared after it, on the critical path.
    if (this.#runMs < PREPARE_AT_START_BELOW_RUN_MS) return 0;
    // Twice the usual preparation time before the expected end: slack for a slower round trip.
    return Math.max(0, this.#runMs - 2 * (this.#prepareMs ?? 0));
  }

  /** How many chunks to keep ready: enough for commands to cover one preparation (1 to 4). */
  prepareDepth(): number {
    if (this.#runMs === undefined || this.#prepareMs === undefined) return 1;
    return Math.min(MAX_PREPARE_DEPTH, Math.max(1, Math.ceil(this.#prepareMs / Math.max(this.#runMs, 1))));
  }
}

function average(previous: number | undefined, sample: number): number {
  return previous === undefined ? sample : previous + WEIGHT * (sample - previous);
}

/** Whether `promise` settles within `ms` (false at once for ms ≤ 0); the timer never lingers. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  if (ms <= 0) return false;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
