/**
 * Invariant 5: hosts' clocks may disagree by minutes, so a claim's age is judged against the
 * mount's own clock — the time the file server stamps on files — never this host's.
 *
 * We measure the offset once per worker: create a probe file, read back the mtime the server
 * stamped, and compare it with our clock around the write. The offset is rounded to whole
 * seconds because network file systems keep one-second mtimes (sshfs truncates), and
 * proper-lockfile compares the mtime it wrote with the one it reads back: a fractional offset
 * would make its own lock look compromised.
 */
import { promises as fs } from 'node:fs';
import type { Stats } from 'node:fs';
import gracefulFs from 'node:fs';

export interface MountClock {
  /** mount time minus local time, in ms (a multiple of 1000). */
  readonly offsetMs: number;
  /** Now, by the mount's clock. */
  now(): number;
}

export function fixedMountClock(offsetMs: number): MountClock {
  return { offsetMs, now: () => Date.now() + offsetMs };
}

export async function measureMountClock(probeDirs: string | string[], label: string): Promise<MountClock> {
  const dirs = typeof probeDirs === 'string' ? [probeDirs] : probeDirs;
  // Three probes at once: each is a few round trips on a mount, and each brackets its own write.
  // In different folders when given: creates in one folder queue on its lock in the kernel.
  const samples = await Promise.all(
    [0, 1, 2].map(async (i) => {
      const probe = `${dirs[i % dirs.length]}/.clock-${label}-${i}`;
      const before = Date.now();
      await fs.writeFile(probe, '');
      const after = Date.now();
      const stamped = (await fs.stat(probe)).mtimeMs;
      await fs.unlink(probe).catch(() => {});
      // With one-second server precision the stamp is the write time truncated: compare with
      // the middle of the write window, then move half a second for the truncation.
      const truncated = stamped % 1000 === 0;
      return stamped + (truncated ? 500 : 0) - (before + after) / 2;
    }),
  );
  samples.sort((a, b) => a - b);
  const median = samples[1]!;
  return fixedMountClock(Math.round(median / 1000) * 1000);
}

type Callback<T> = (error: NodeJS.ErrnoException | null, value?: T) => void;

/**
 * A file system for proper-lockfile that speaks mount time: the mtimes it reads are moved to
 * this host's clock, and the mtimes it writes are moved to the mount's. Its staleness test
 * (`mtime < Date.now() - stale`) then compares mount time with mount time on every host.
 * One object per job (per mount): proper-lockfile caches the mtime precision on it.
 */
export function mountTimeFs(clock: MountClock, base: typeof gracefulFs = gracefulFs): typeof gracefulFs {
  const shift = clock.offsetMs;
  const toLocal = (stat: Stats): Stats => {
    if (shift === 0) return stat;
    const mtimeMs = stat.mtimeMs - shift;
    // Stats fields are plain properties; a shallow copy keeps isDirectory() and friends. The Date
    // is rounded as node rounds it: utimes stores times through a float, and proper-lockfile
    // compares the Date it wrote with the one it reads back, to the millisecond.
    return Object.assign(Object.create(Object.getPrototypeOf(stat) as object) as Stats, stat, {
      mtimeMs,
      mtime: new Date(Math.round(mtimeMs)),
    });
  };
  const wrapped = {
    ...base,
    stat(file: string, callback: Callback<Stats>) {
      base.stat(file, (error, stat) => callback(error, error ? undefined : toLocal(stat)));
    },
    utimes(file: string, atime: Date, mtime: Date, callback: (error: NodeJS.ErrnoException | null) => void) {
      base.utimes(file, new Date(atime.getTime() + shift), new Date(mtime.getTime() + shift), callback);
    },
  };
  return wrapped as unknown as typeof gracefulFs;
}
