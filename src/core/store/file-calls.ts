/**
 * The file calls on a worker's path from one chunk to the next (look up, read a failure record,
 * commit; the claim's calls are in inlineCallbackFs), in two ways: through libuv's thread pool, or inline on the event loop's thread.
 *
 * Why inline: on a local disk a mkdir, stat or rename takes microseconds, but handing it to the
 * thread pool and back wakes two threads; on these virtual machines each wake-up costs more than
 * the call (5000 warm chunks: 30 futex calls per chunk; inline, 16 % less CPU and 12 % less wall
 * time). Why not always: on a network mount a call can block for seconds (or for ever, on a dead
 * sshfs), and the event loop must stay free for the heartbeat and the hung-mount watchdog. So
 * inline calls are used only for a folder on a local disk file system (mounts.ts).
 */
import fs, { promises as fsp, type Stats } from 'node:fs';
import { settled } from '../concurrency.js';

export interface FileCalls {
  /** The entry's Stats, or undefined when it does not exist (ENOENT). */
  statOrMissing(file: string): Promise<Stats | undefined>;
  lstat(file: string): Promise<Stats>;
  /** The file's bytes, or undefined when it does not exist (ENOENT). */
  readFileOrMissing(file: string): Promise<Buffer | undefined>;
  rename(from: string, to: string): Promise<void>;
}

export const threadPoolCalls: FileCalls = {
  statOrMissing: (file) =>
    fsp.stat(file).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    }),
  lstat: (file) => fsp.lstat(file),
  readFileOrMissing: (file) =>
    fsp.readFile(file).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    }),
  rename: (from, to) => fsp.rename(from, to),
};


export const inlineCalls: FileCalls = {
  // No exception for the common "not there": a lookup after a claim usually finds nothing.
  statOrMissing: (file) => settled(() => fs.statSync(file, { throwIfNoEntry: false })),
  lstat: (file) => settled(() => fs.lstatSync(file)),
  // Looked at first: a worker reads each chunk's failure record, which is almost never there, and
  // a failed open costs an exception (~35 µs of the event loop, more than the call).
  readFileOrMissing: (file) => settled(() => (fs.statSync(file, { throwIfNoEntry: false }) ? readUnlessGone(file) : undefined)),
  rename: (from, to) => settled(() => fs.renameSync(from, to)),
};

function readUnlessGone(file: string): Buffer | undefined {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // removed since the look
    throw error;
  }
}

type Callback<T> = (error: NodeJS.ErrnoException | null, value?: T) => void;

/** Call back on the next tick, as an asynchronous call would: never from inside the caller. */
function later<T>(callback: Callback<T>, call: () => T): void {
  let value: T;
  try {
    value = call();
  } catch (error) {
    process.nextTick(callback, error);
    return;
  }
  process.nextTick(callback, null, value);
}

/**
 * node:fs with the calls proper-lockfile makes to claim (mkdir, stat) and to keep a claim fresh
 * (utimes) done inline; the rest unchanged, same callback shapes. Not its rmdir: freeing a
 * folder's block is the slowest call here (on a disk mounted with `discard` each one is a
 * synchronous trim: 110 µs against mkdir's 29), and a release is off the lane's critical path.
 */
export const inlineCallbackFs: typeof fs = {
  ...fs,
  mkdir: ((dir: string, ...rest: unknown[]) => {
    const callback = rest.at(-1) as Callback<void>;
    later(callback, () => {
      fs.mkdirSync(dir);
    });
  }) as typeof fs.mkdir,
  stat: ((file: string, ...rest: unknown[]) => {
    const callback = rest.at(-1) as Callback<Stats>;
    later(callback, () => fs.statSync(file));
  }) as typeof fs.stat,
  utimes: ((file: string, atime: Date, mtime: Date, callback: Callback<void>) => {
    later(callback, () => fs.utimesSync(file, atime, mtime));
  }) as typeof fs.utimes,
};
