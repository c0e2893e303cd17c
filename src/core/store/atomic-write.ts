/**
 * The one atomic-write rule: write a temp file on the destination's file system, optionally
 * fsync it, then rename over the destination. A reader on any host sees the old file or the
 * new one, never a mix (rename is atomic on local disks, NFS and sshfs with posix-rename).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { randomHex } from '../random-hex.js';
import { HOST } from './layout.js';

export interface AtomicWriteOptions {
  /** Folder for the temp file; must be on the same file system as the destination. */
  tempDir?: string;
  /** fsync the file before rename (and the folder after), for data that must survive a server crash. */
  durable?: boolean;
}

export async function writeFileAtomic(destination: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  const tempDir = options.tempDir ?? path.dirname(destination);
  // `.<name>.<host>.<pid>.<random>`: whoever finds it after a crash can tell whether its writer lives.
  const temp = path.join(tempDir, `.${path.basename(destination)}.${HOST}.${process.pid}.${randomHex(4)}`);
  const handle = await fs.open(temp, 'w');
  try {
    await handle.writeFile(data);
    // An fsync error is a write error (the data may not be on disk): never swallowed.
    if (options.durable) await handle.sync();
  } catch (error) {
    await handle.close().catch(() => {});
    await fs.rm(temp, { force: true }).catch(() => {});
    throw error;
  }
  await handle.close();
  try {
    await fs.rename(temp, destination);
  } catch (error) {
    await fs.rm(temp, { force: true }).catch(() => {});
    throw error;
  }
  if (options.durable) await fsyncDir(path.dirname(destination));
}

/** Make a rename durable; some network file systems refuse to open a folder, which is fine. */
export async function fsyncDir(dir: string): Promise<void> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(dir, 'r');
    await handle.sync();
  } catch {
    // EISDIR/EINVAL/EPERM on some mounts: the server orders its own metadata there.
  } finally {
    await handle?.close();
  }
}
