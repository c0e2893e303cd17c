/**
 * The local folders where SFTP workers stage inputs and outputs (`$TMPDIR/piecework-sftp-PID-XXXXXX`).
 * A worker removes its own when it closes its store; one that was killed (SIGKILL, the OOM killer,
 * a second Ctrl-C) cannot, and its folder may hold chunk inputs of any size. So the next SFTP store
 * opened on the host removes the folders of workers that are gone.
 *
 * Gone means: the pid in the name is not running here, and nothing in the folder changed for
 * STALE_STAGING_MS. The second test is for a /tmp shared with another pid namespace (a container),
 * where a live worker's pid looks unused from here; a live worker writes there with every chunk.
 */
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { processIsGone } from '../processes.js';

export const STAGING_PREFIX = 'piecework-sftp-';
export const STALE_STAGING_MS = 10 * 60_000;

const STAGING_NAME = /^piecework-sftp-(\d+)-[A-Za-z0-9]{6}$/;

/** Remove the staging folders of workers that are gone; their paths. Never throws. */
export async function removeStaleStaging(parent = tmpdir(), now = Date.now()): Promise<string[]> {
  const removed: string[] = [];
  const names = await fs.readdir(parent).catch(() => [] as string[]);
  for (const name of names) {
    const pid = Number(STAGING_NAME.exec(name)?.[1]);
    if (!pid || pid === process.pid || !processIsGone(pid)) continue;
    const folder = path.join(parent, name);
    try {
      const info = await fs.lstat(folder);
      // Someone else's folder is not ours to remove (and rm would fail on it anyway).
      if (!info.isDirectory() || info.uid !== process.getuid?.()) continue;
      if (now - (await newestChange(folder, info.mtimeMs)) < STALE_STAGING_MS) continue;
      await fs.rm(folder, { recursive: true, force: true });
      removed.push(folder);
    } catch {
      // Removed by another worker sweeping at the same time, or unreadable: not this one's to fix.
    }
  }
  return removed;
}

/** The latest mtime of the folder and of what is directly in it (lanes write into subfolders). */
async function newestChange(folder: string, folderMtimeMs: number): Promise<number> {
  let newest = folderMtimeMs;
  for (const entry of await fs.readdir(folder)) {
    const info = await fs.lstat(path.join(folder, entry)).catch(() => undefined);
    if (info) newest = Math.max(newest, info.mtimeMs);
  }
  return newest;
}
