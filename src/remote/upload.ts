/**
 * Getting the bundled CLI (dist/piecework.mjs) onto a host over SFTP, into a cache folder keyed
 * by version: `~/.cache/piecework/<version>/piecework.mjs`. Uploaded only when missing or of a
 * different size, under a temporary name and then renamed, so that a worker (or a second
 * launcher) never runs half a file.
 */
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { posix } from 'node:path';
import type { NodeSSH } from 'node-ssh';
import type { SFTPWrapper, Stats } from 'ssh2';

/** Where the CLI goes on a host (and on the head, for hosts that fetch it): relative to the home folder. */
export function toolCachePath(version: string): string {
  return posix.join('.cache', 'piecework', version, 'piecework.mjs');
}

export interface UploadOutcome {
  remotePath: string;
  uploaded: boolean;
  bytes: number;
}

/** `target`: an absolute path to put it at instead (the head's copy for hosts that fetch it). */
export async function uploadTool(
  ssh: NodeSSH,
  localPath: string,
  version: string,
  onUpload?: (info: { remotePath: string; bytes: number }) => void,
  target?: string,
): Promise<UploadOutcome> {
  const bytes = (await stat(localPath)).size;
  const sftp = await ssh.requestSFTP();
  try {
    // The SFTP server starts in the user's home: '.' resolves to it.
    const remotePath = target ?? posix.join(await call<string>((cb) => sftp.realpath('.', cb)), toolCachePath(version));
    const dir = posix.dirname(remotePath);
    const existing = await call<Stats>((cb) => sftp.stat(remotePath, cb)).catch(() => undefined);
    if (existing?.size === bytes) return { remotePath, uploaded: false, bytes };

    onUpload?.({ remotePath, bytes });
    await ssh.mkdir(dir, 'sftp', sftp);
    const temporary = `${remotePath}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await ssh.putFile(localPath, temporary, sftp);
      await renameOver(sftp, temporary, remotePath);
    } catch (error) {
      await call<void>((cb) => sftp.unlink(temporary, cb)).catch(() => undefined);
      throw error;
    }
    return { remotePath, uploaded: true, bytes };
  } finally {
    sftp.end();
  }
}

/** Replace `to` atomically: OpenSSH's posix-rename extension, else unlink + rename. */
async function renameOver(sftp: SFTPWrapper, from: string, to: string): Promise<void> {
  try {
    await call<void>((cb) => sftp.ext_openssh_rename(from, to, cb));
  } catch {
    await call<void>((cb) => sftp.unlink(to, cb)).catch(() => undefined);
    await call<void>((cb) => sftp.rename(from, to, cb));
  }
}

function call<T>(start: (callback: (error: Error | undefined | null, value: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    start((error, value) => (error ? reject(error) : resolve(value)));
  });
}
