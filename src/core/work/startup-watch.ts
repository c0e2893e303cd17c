/**
 * Shared by a worker's warm lanes: a command whose processes keep dying before they answer their
 * first request (an import error, a missing model file) cannot run on this host. Each of those
 * deaths fails the attempt of the chunk it was given — the chunk may be the cause — but after a
 * few in a row, on any lane, the worker stops instead of burning the whole job's retries.
 */
export const STARTUP_FAILURES_BEFORE_STOP = 3;

export class StartupWatch {
  readonly limit: number;
  #inARow = 0;

  constructor(limit = STARTUP_FAILURES_BEFORE_STOP) {
    this.limit = limit;
  }

  /** A process answered a request: the command can start here. */
  answered(): void {
    this.#inARow = 0;
  }

  /** A process died before its first answer; true when that makes too many in a row. */
  diedBeforeFirstReply(): boolean {
    this.#inARow++;
    return this.#inARow >= this.limit;
  }

  get inARow(): number {
    return this.#inARow;
  }
}
