/**
 * Outputs read ahead for a merge that cannot hand cat(1) local paths (an sftp:// job): while one
 * output is written, the next ones are opened and their first bytes read, within a window of
 * outputs and a budget of bytes. Over SFTP an output costs about three round trips (open, read,
 * close); one after another, 10 000 outputs at 10 ms would wait five minutes on the network.
 * Memory stays bounded: an output larger than the budget is read ahead only up to it, and the
 * rest is streamed when its turn comes. Order is never changed: outputs are copied in the order
 * asked for, each whole, before the next.
 */
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { errorCode, PieceworkError } from './errors.js';
import type { JobStore } from './store/job-store.js';

export const READ_AHEAD_OUTPUTS = 32;
export const READ_AHEAD_BYTES = 32 * 1024 * 1024;

interface Pending {
  name: string;
  opened: Promise<Readable | undefined>;
  stream: Readable | undefined;
  iterator: AsyncIterator<Buffer> | undefined;
  buffered: Buffer[];
  ended: boolean;
  /** Its copy has begun: the read-ahead stops pulling from it. */
  taken: boolean;
  /** The read-ahead's current pull, if any: a copy waits for it before reading on. */
  pulling: Promise<void> | undefined;
  error: Error | undefined;
}

export class OutputReadAhead {
  readonly #store: JobStore;
  readonly #names: readonly string[];
  readonly #window: number;
  readonly #budget: number;
  readonly #pending = new Map<string, Pending>();
  /** Index in #names of the next output to start reading ahead. */
  #next = 0;
  #bufferedBytes = 0;

  constructor(store: JobStore, names: readonly string[], options: { window?: number; budgetBytes?: number } = {}) {
    this.#store = store;
    this.#names = names;
    this.#window = options.window ?? READ_AHEAD_OUTPUTS;
    this.#budget = options.budgetBytes ?? READ_AHEAD_BYTES;
  }

  /**
   * Copy every output, in the order given, into `sink`; `onCopied` hears after each one how many
   * were copied and their bytes so far. Whatever was read ahead and not copied is closed, also
   * when a copy fails.
   */
  async copyAll(sink: Writable, onCopied: (outputs: number, bytes: number) => void): Promise<number> {
    let bytes = 0;
    try {
      for (let index = 0; index < this.#names.length; index++) {
        bytes += await this.#copy(index, sink);
        onCopied(index + 1, bytes);
      }
    } finally {
      this.close();
    }
    return bytes;
  }

  /** Copy the output at `index` into `sink`: its bytes. Called with 0, 1, 2… */
  async #copy(index: number, sink: Writable): Promise<number> {
    const name = this.#names[index]!;
    this.#fill(index);
    const pending = this.#pending.get(name)!;
    pending.taken = true;
    let bytes = 0;
    try {
      await pending.pulling;
      if (pending.error) throw pending.error;
      const stream = await pending.opened;
      if (!stream) throw disappeared(name);
      for (const data of pending.buffered.splice(0)) {
        this.#bufferedBytes -= data.length;
        bytes += data.length;
        if (!sink.write(data)) await once(sink, 'drain');
      }
      // Room in the budget again: the outputs behind this one read on while it finishes.
      this.#fill(index + 1);
      if (!pending.ended) {
        const iterator = (pending.iterator ??= stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>);
        for (;;) {
          const piece = await iterator.next();
          if (piece.done) break;
          bytes += piece.value.length;
          if (!sink.write(piece.value)) await once(sink, 'drain');
        }
      }
    } catch (error) {
      if (errorCode(error) === 'ENOENT') throw disappeared(name);
      throw error;
    } finally {
      this.#pending.delete(name);
      this.#discard(pending);
    }
    this.#fill(index + 1);
    return bytes;
  }

  /** Stop reading ahead: close what was opened and not copied (a merge that failed or stopped). */
  close(): void {
    for (const pending of this.#pending.values()) this.#discard(pending);
    this.#pending.clear();
  }

  /** Start the outputs from `from` up to the window; pull more of each while the budget allows. */
  #fill(from: number): void {
    this.#next = Math.max(this.#next, from);
    while (this.#next < this.#names.length && this.#next < from + this.#window) {
      const name = this.#names[this.#next++]!;
      const pending: Pending = { name, opened: this.#store.readStream('out', name), stream: undefined, iterator: undefined, buffered: [], ended: false, taken: false, pulling: undefined, error: undefined };
      pending.opened.then(
        (stream) => {
          pending.stream = stream;
          if (!stream) pending.ended = true;
        },
        (error: unknown) => {
          pending.error = asError(error);
          pending.ended = true;
        },
      );
      this.#pending.set(name, pending);
    }
    for (const pending of this.#pending.values()) this.#pull(pending);
  }

  /** Read on in one output until it ends, its copy begins, or the budget is spent. */
  #pull(pending: Pending): void {
    if (pending.pulling || pending.taken || pending.ended) return;
    pending.pulling = (async () => {
      try {
        const stream = await pending.opened;
        if (!stream) return;
        const iterator = (pending.iterator ??= stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>);
        while (!pending.taken && this.#bufferedBytes < this.#budget) {
          const piece = await iterator.next();
          if (piece.done) {
            pending.ended = true;
            return;
          }
          pending.buffered.push(piece.value);
          this.#bufferedBytes += piece.value.length;
        }
      } catch (error) {
        pending.error = asError(error);
        pending.ended = true;
      } finally {
        pending.pulling = undefined;
      }
    })();
  }

  #discard(pending: Pending): void {
    for (const data of pending.buffered.splice(0)) this.#bufferedBytes -= data.length;
    const close = (stream: Readable | undefined) => stream?.destroy();
    if (pending.stream) close(pending.stream);
    else pending.opened.then(close, () => {});
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function disappeared(name: string): PieceworkError {
  return new PieceworkError(`out/${name} disappeared during the merge`, { hint: 'something removed an output (verify --requeue?); run the merge again' });
}
