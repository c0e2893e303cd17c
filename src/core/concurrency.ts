/**
 * Run `fn` over `items` with at most `limit` at once; results keep the input order. Per-file reads
 * of a job (claims, failure records) go through here: enough in flight to hide a mount's latency,
 * never so many that 100 000 failed chunks run the process out of file handles.
 */
export async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  return results;
}

/**
 * Work left to finish behind the caller's back (a skipped chunk's claim release, say), so that a
 * lane can go on; `settled()` waits for all of it before the worker reports. Errors go to onError.
 */
export class WorkBehind {
  readonly #pending = new Set<Promise<void>>();
  readonly #onError: (error: unknown) => void;

  constructor(onError: (error: unknown) => void) {
    this.#onError = onError;
  }

  add(work: Promise<unknown>): void {
    const tracked: Promise<void> = work.then(
      () => {},
      (error: unknown) => this.#onError(error),
    );
    this.#pending.add(tracked);
    void tracked.finally(() => this.#pending.delete(tracked));
  }

  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all(this.#pending);
  }
}

/**
 * A synchronous call as a settled promise (its error a rejection, never a throw): a call made
 * inline keeps the shape of its asynchronous kin (file-calls.ts, the stderr tail, SFTP staging).
 */
export function settled<T>(call: () => T): Promise<T> {
  try {
    return Promise.resolve(call());
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
}
