/** Run a step now and then every interval until it says stop or the signal fires. */
import { setTimeout as sleep } from 'node:timers/promises';

export async function repeatEvery(intervalMs: number, signal: AbortSignal | undefined, step: () => Promise<boolean>): Promise<void> {
  for (;;) {
    const started = Date.now();
    if (!(await step()) || signal?.aborted) return;
    // Never rescan back to back: a scan that takes longer than the interval (a million chunks
    // over a slow mount) waits as long again, which bounds the load on the file server.
    const wait = Math.max(intervalMs, Date.now() - started);
    try {
      await sleep(wait, undefined, { signal });
    } catch {
      return; // aborted: Ctrl-C ends a watch normally
    }
  }
}
