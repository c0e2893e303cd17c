/**
 * What kind of file system a path lives on. Watching (inotify) sees nothing of other hosts'
 * writes on a network mount, so followers must poll there.
 */
import { readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';

const networkTypes = /^(fuse\.sshfs|fuse\.s3fs|fuse\.gcsfuse|fuse\.rclone|fuse|nfs|nfs4|cifs|smb3|smbfs|9p|ceph|glusterfs|lustre|beegfs|gpfs|virtiofs)$/;

export function fileSystemTypeOf(target: string): string | undefined {
  let mounts: string;
  try {
    mounts = readFileSync('/proc/mounts', 'utf8');
  } catch {
    return undefined;
  }
  const absolute = path.resolve(target);
  let best: { point: string; type: string } | undefined;
  for (const line of mounts.split('\n')) {
    const [, point, type] = line.split(' ');
    if (!point || !type) continue;
    const decoded = point.replace(/\\040/g, ' ');
    const inside = absolute === decoded || absolute.startsWith(decoded.endsWith('/') ? decoded : decoded + '/');
    if (inside && (!best || decoded.length > best.point.length)) best = { point: decoded, type };
  }
  return best?.type;
}

export function isNetworkMount(target: string): boolean {
  const type = fileSystemTypeOf(target);
  return type !== undefined && networkTypes.test(type);
}

/** File systems on this host's own disks (or memory): a call there never waits on a network. */
const localDiskTypes = /^(ext2|ext3|ext4|xfs|btrfs|f2fs|zfs|bcachefs|jfs|reiserfs|tmpfs|ramfs|overlay)$/;

/**
 * Whether a folder is on a local disk file system, its symlinks followed (a link into an NFS
 * mount is not local). Anything unknown counts as not local.
 */
export function isOnLocalDisk(target: string): boolean {
  let real: string;
  try {
    real = realpathSync(target);
  } catch {
    return false;
  }
  const type = fileSystemTypeOf(real);
  return type !== undefined && localDiskTypes.test(type);
}
