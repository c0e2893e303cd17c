/**
 * A process and its descendants, read from /proc (Linux): each thread's `children` file names the
 * processes it started. Used to look at a warm program as a whole — it may have started helpers.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Processes looked at, at most: a program with more descendants is not judged. */
export const MAX_PROCESSES = 64;

/**
 * Calls `visit` with the pid and each of its thread ids, then walks on to the processes they
 * started; stops as soon as `visit` returns false. Throws where /proc cannot be read, or when the
 * tree has more than MAX_PROCESSES processes: the caller then judges nothing.
 */
export function walkProcessTree(pid: number, visit: (pid: number, threads: string[]) => boolean): void {
  const pending = [pid];
  for (let seen = 0; pending.length > 0; seen++) {
    if (seen >= MAX_PROCESSES) throw new Error(`more than ${MAX_PROCESSES} processes`);
    const member = pending.pop()!;
    const threads = readdirSync(`/proc/${member}/task`);
    if (!visit(member, threads)) return;
    for (const thread of threads) {
      for (const child of readFileSync(`/proc/${member}/task/${thread}/children`, 'utf8').trim().split(' ')) if (child) pending.push(Number(child));
    }
  }
}
