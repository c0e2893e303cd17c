// Real sshfs (FUSE) mounts of a test sshd's folder, from the root namespace or from inside a
// namespace host.
//
// Mounts inside a network namespace: every `ip netns exec` unshares a fresh mount namespace, so a
// mount made by one `ip netns exec` is invisible to the next one (and to us). What works: keep one
// long-lived "anchor" process per namespace host (started by `ip netns exec`, so it owns that
// host's mount namespace) and run sshfs and every later command of that host with
// `nsenter -t ANCHOR -n -m`, which joins the anchor's network AND mount namespaces. Mounts then
// persist across commands, like on a real host. (Running sshfs and its user in one
// `ip netns exec NS sh -c '…'` also works, but only for that one shell.)
import { mkdirSync, readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isAlive, mountPoints, registerCleanup, unmountSync } from './cleanup.js';
import { spawnDaemon, sshOptions, waitUntil, type Sshd } from './sshd.js';

/** A process whose mount + network namespaces stand for a host (see netns-hosts.ts). */
export interface HostNamespace {
  anchorPid: number;
}

export interface MountSshfsOptions {
  sshd: Sshd;
  /** Default: the folder the sshd serves. */
  remotePath?: string;
  mountPoint: string;
  /** Extra sshfs `-o` options, e.g. ['cache=no']. Default none: sshfs's own caching, as users get it. */
  options?: string[];
  /** Connect here instead of sshd.port, e.g. a delay proxy (the host key is then checked by alias). */
  port?: number;
  /** Connect to this address instead of sshd.host (e.g. the head's address seen from a namespace). */
  host?: string;
  /** Mount inside this namespace host instead of the root namespace. */
  inHost?: HostNamespace;
  timeoutMs?: number;
}

export interface SshfsMount {
  mountPoint: string;
  /** The sshfs process (foreground mode, so we own it). */
  pid: number;
  /** Wall time from spawn until the mount answered a stat (includes the SSH handshake). */
  mountMs: number;
  logPath: string;
  unmount(): void;
}

export async function mountSshfs(o: MountSshfsOptions): Promise<SshfsMount> {
  mkdirSync(o.mountPoint, { recursive: true });
  const port = o.port ?? o.sshd.port;
  const host = o.host ?? o.sshd.host;
  const sshOpts = sshOptions(o.sshd, { viaPort: port, viaHost: host });
  const argv = [
    'sshfs',
    '-f', // foreground: the pid we spawn is the mount's daemon, so cleanup can kill it by pid
    '-p', String(port),
    '-o', sshOpts.join(','),
    ...(o.options ?? []).flatMap((opt) => ['-o', opt]),
    `root@${host}:${o.remotePath ?? o.sshd.root}`,
    o.mountPoint,
  ];
  const enter = o.inHost ? ['nsenter', '-t', String(o.inHost.anchorPid), '-n', '-m', '--'] : [];
  const logPath = join(o.sshd.dir, `sshfs-${process.hrtime.bigint()}.log`);
  const started = performance.now();
  // nsenter execs sshfs in place, so the pid is sshfs's and /proc/PID/mounts shows its namespace.
  const daemon = spawnDaemon([...enter, ...argv], logPath);
  // Registered after the daemon: runs first, so the mount goes before its process is killed.
  const nsPid = (): number | undefined => (o.inHost && isAlive(o.inHost.anchorPid) ? o.inHost.anchorPid : o.inHost ? daemon.pid : undefined);
  const undo = registerCleanup(() => {
    unmountSync(o.mountPoint, nsPid());
    daemon.stop();
  }, `unmount ${o.mountPoint}`);
  const timeoutMs = o.timeoutMs ?? 15_000;
  try {
    await waitUntil(() => {
      if (mountPoints(daemon.pid).includes(o.mountPoint)) return true;
      if (!isAlive(daemon.pid)) throw new Error(`sshfs exited: ${readFileSync(logPath, 'utf8').trim()}`);
      return false;
    }, timeoutMs, `sshfs mount at ${o.mountPoint}`);
    // sshfs 3.7 mounts first and connects on first use (~0.2 s on loopback, more through a delay
    // proxy): one stat of the root makes the mount ready, so tests do not time the SSH handshake.
    // Through /proc/PID/root the path resolves in sshfs's own mount namespace, even in a host's.
    await withTimeout(stat(`/proc/${daemon.pid}/root${o.mountPoint}`), timeoutMs, `sshfs at ${o.mountPoint} to answer`).catch((err: Error) => {
      throw new Error(`sshfs at ${o.mountPoint} does not answer (${err.message}): ${readFileSync(logPath, 'utf8').trim()}`);
    });
  } catch (err) {
    undo.run();
    throw err;
  }
  return { mountPoint: o.mountPoint, pid: daemon.pid, mountMs: performance.now() - started, logPath, unmount: () => undo.run() };
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
