/**
 * The free-space check asked before every commit. A `statfs` (or an SFTP round trip) on every
 * chunk is a tenth of piecework's own cost per chunk on a local disk: an answer with plenty of
 * room is reused for a second; a low one is asked again every time, so a filling disk is seen
 * before the write that would not fit.
 */
import type { JobStore } from '../store/job-store.js';

/** How long a roomy answer is reused. */
const REUSE_MS = 1000;
const PLENTY_OF_ROOM_BYTES = 1024 ** 3;

export class FreeSpaceGauge {
  readonly #store: JobStore;
  #last: { at: number; bytes: Promise<number | undefined> } | undefined;

  constructor(store: JobStore) {
    this.#store = store;
  }

  /** Free bytes where outputs are written; undefined when the file system does not say. */
  freeBytes(): Promise<number | undefined> {
    const last = this.#last;
    if (last && Date.now() - last.at < REUSE_MS) return last.bytes;
    const bytes = this.#store.freeBytes();
    this.#last = { at: Date.now(), bytes };
    void bytes.then(
      (n) => {
        if (n !== undefined && n < PLENTY_OF_ROOM_BYTES && this.#last?.bytes === bytes) this.#last = undefined;
      },
      () => {
        if (this.#last?.bytes === bytes) this.#last = undefined;
      },
    );
    return bytes;
  }
}
