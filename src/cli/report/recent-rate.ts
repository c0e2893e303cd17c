/**
 * Completions per second over the last half minute: recent enough to follow a slowdown, long
 * enough that one slow chunk does not make the number jump.
 */
const WINDOW_MS = 30_000;

export class RecentRate {
  #times: number[] = [];
  #started: number;
  #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
    this.#started = now();
  }

  add(): void {
    this.#times.push(this.#now());
    this.#forgetOld();
  }

  perSecond(): number {
    this.#forgetOld();
    if (this.#times.length === 0) return 0;
    const span = Math.min(WINDOW_MS, this.#now() - this.#started);
    return this.#times.length / Math.max(span / 1000, 1);
  }

  #forgetOld(): void {
    const cutoff = this.#now() - WINDOW_MS;
    let drop = 0;
    while (drop < this.#times.length && this.#times[drop]! < cutoff) drop++;
    if (drop > 0) this.#times.splice(0, drop);
  }
}
