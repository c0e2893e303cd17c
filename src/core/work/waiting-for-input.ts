/**
 * Is a warm program waiting for its next request without having answered the one it has? Then
 * its answer sits in an output buffer (Python's print without flush, Perl without `$| = 1`, awk,
 * C stdio: all fully buffered on a pipe) and the program and its lane would wait for each other
 * for ever.
 *
 * Read from /proc (Linux), for the process and every descendant: each thread's state and the
 * system call it sleeps in. Judged "waiting" only when nothing can move without more input: at
 * least one thread blocked in a read of the request pipe, and every other thread asleep in a
 * read of it, in wait4/waitid for a child, or in a futex wait with no timeout. A thread that runs,
 * sleeps on a timer, polls, reads anything else, or is stopped, and nothing is judged — as on
 * another architecture, or where /proc cannot be read.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { walkProcessTree } from './process-tree.js';

/** System call numbers, by architecture. */
const SYSCALLS: Partial<Record<NodeJS.Architecture, { read: number[]; wait: number[]; futex: number }>> = {
  x64: { read: [0, 19], wait: [61, 247], futex: 202 },
  arm64: { read: [63, 65], wait: [260, 95], futex: 98 },
};
/** The futex operation without its PRIVATE and CLOCK_REALTIME flags. */
const FUTEX_CMD_MASK = 0x7f;
const FUTEX_WAIT = 0;
const FUTEX_WAIT_BITSET = 9;

/**
 * What the process's stdin is as /proc names it (`socket:[123]`: Node's child pipes are socket
 * pairs), read once after its start; undefined if unknown.
 */
export function requestPipeOf(pid: number): string | undefined {
  try {
    const link = readlinkSync(`/proc/${pid}/fd/0`);
    return link.startsWith('pipe:') || link.startsWith('socket:') ? link : undefined;
  } catch {
    return undefined;
  }
}

export function waitingForInput(pid: number, requestPipe: string | undefined): boolean {
  const calls = SYSCALLS[process.arch];
  if (!calls || !requestPipe) return false;
  let readers = 0;
  let waiting = true;
  /** Whether a thread of `member` cannot move without more input; false ends the walk. */
  const threadWaits = (member: number, thread: string): boolean => {
    const task = `/proc/${member}/task/${thread}`;
    const state = statState(readFileSync(`${task}/stat`, 'utf8'));
    if (state === 'Z' || state === 'X') return true;
    if (state !== 'S') return false;
    const [number, ...args] = readFileSync(`${task}/syscall`, 'utf8').trim().split(' ');
    const call = Number(number);
    if (calls.read.includes(call)) {
      readers++;
      return readlinkSync(`/proc/${member}/fd/${Number(args[0])}`) === requestPipe;
    }
    if (call === calls.futex) {
      const op = Number(args[1]) & FUTEX_CMD_MASK;
      return (op === FUTEX_WAIT || op === FUTEX_WAIT_BITSET) && Number(args[3]) === 0;
    }
    return calls.wait.includes(call);
  };
  try {
    walkProcessTree(pid, (member, threads) => (waiting = threads.every((thread) => threadWaits(member, thread))));
    return waiting && readers > 0;
  } catch {
    // It ended, or /proc tells nothing here: not judged.
    return false;
  }
}

/** The state letter of a /proc stat line (after the command name, which may hold spaces and parentheses). */
function statState(line: string): string {
  return line.slice(line.lastIndexOf(')') + 2, line.lastIndexOf(')') + 3);
}
