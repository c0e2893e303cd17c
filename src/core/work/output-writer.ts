/**
 * Does a warm program still hold its output open for writing when it answers `ok`? A file it
 * forgot to close keeps the end of the output in the program's buffer (Python's 8 KiB): committed
 * then, the output would lack that end until the program closes the file — at its next request,
 * or never, if the host goes away first. In per-chunk mode the process's exit flushes it; a warm
 * process does not exit.
 *
 * Read from /proc (Linux), for the process and its descendants: each open file's path as the
 * kernel names it (`readlink /proc/PID/fd/N`, no call to the file system, so none to a mount) and,
 * for the output, its access mode (`/proc/PID/fdinfo/N`). Where /proc tells nothing, nothing is
 * found.
 */
import { readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { walkProcessTree } from './process-tree.js';

/** O_ACCMODE, and O_RDONLY within it. */
const ACCESS_MODE = 0o3;
const READ_ONLY = 0o0;

/**
 * The kernel names a file by its real path: the output's folder is resolved once per folder (a
 * lane keeps one), not once per chunk.
 */
const realFolders = new Map<string, string>();

function realPathOf(file: string): string | undefined {
  const folder = path.dirname(file);
  let real = realFolders.get(folder);
  if (real === undefined) {
    try {
      real = realpathSync(folder);
    } catch {
      return undefined;
    }
    if (realFolders.size > 1024) realFolders.clear();
    realFolders.set(folder, real);
  }
  return path.join(real, path.basename(file));
}

/** The pid of a process in `pid`'s tree that has `file` open for writing, if any. */
export function outputWriter(pid: number, file: string): number | undefined {
  const target = realPathOf(file);
  if (target === undefined) return undefined;
  let writer: number | undefined;
  try {
    walkProcessTree(pid, (member) => {
      for (const fd of readdirSync(`/proc/${member}/fd`)) {
        let link: string;
        try {
          link = readlinkSync(`/proc/${member}/fd/${fd}`);
        } catch {
          continue; // closed since the listing
        }
        if (link !== target) continue;
        const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/${member}/fdinfo/${fd}`, 'utf8'))?.[1];
        if (flags !== undefined && (parseInt(flags, 8) & ACCESS_MODE) !== READ_ONLY) {
          writer = member;
          return false;
        }
      }
      return true;
    });
  } catch {
    // It ended, or /proc tells nothing here.
  }
  return writer;
}
