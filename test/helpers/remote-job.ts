// What the cluster tests of `launch` share: a job in the head's shared folder, a hosts file for
// namespace hosts, the launch/stop argv that mounts the share on them, and finding the workers
// that run on a host. The namespace hosts share this machine's root file system (only network
// and mounts differ), so what the bootstrap leaves in root's home (the worker's local log, the
// head's known_hosts copy) is removed here too.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { hasTag, isAlive, registerCleanup, runSync, runTag } from './cleanup.js';
import { piecework } from './cli.js';
import type { Cluster, NsHost } from './netns-hosts.js';
import { makeTempDir } from './tmp.js';

export interface TestJob {
  /** The job folder on the head (this machine). */
  job: string;
  /** Its name, carrying the run's tag (so that the hosts' local logs can be found and removed). */
  name: string;
  /** The serial run: the command applied to each chunk in order, as one string. */
  expected: string;
}

/**
 * A job of `chunks` one-line chunks in the share, split with `--stale` seconds, whose expected
 * output (for `tr a-z A-Z`) is the input upper-cased.
 */
export function makeSharedJob(shareDir: string, label: string, chunks: number, staleSeconds = 5): TestJob {
  const name = `${label}-${runTag}`;
  const job = join(shareDir, name);
  const input = join(makeTempDir('input'), 'input.txt');
  const text = Array.from({ length: chunks }, (_, i) => `line ${i} of ${label}\n`).join('');
  writeFileSync(input, text);
  execFileSync(process.execPath, [piecework, 'split', input, '--into', job, '--lines', '1', '--stale', String(staleSeconds), '--quiet']);
  // The serial run, as a shell loop would do it, over the chunks in their natural order.
  const serial = execFileSync('sh', ['-c', 'for f in "$1"/chunks/*; do tr a-z A-Z <"$f"; done', 'sh', job], { encoding: 'utf8' });
  return { job, name, expected: serial };
}

export function writeHostsFile(hosts: readonly NsHost[], extraLines: readonly string[] = []): string {
  const path = join(makeTempDir('hosts'), 'hosts.txt');
  writeFileSync(path, ['# namespace hosts', ...hosts.map((h) => `root@${h.address}:${h.sshd.port}`), ...extraLines, ''].join('\n'));
  return path;
}

/** `--mount … --at …` for the head's share, authenticated with the cluster's key. */
export function mountArgs(cluster: Cluster, at: string): string[] {
  return ['--mount', `root@${cluster.head.address}:${cluster.head.shareDir}`, '--mount-port', String(cluster.head.sshd.port), '--mount-identity', cluster.clientKeyPath, '--at', at];
}

/** `--identity … --known-hosts …` for the hosts. */
export function sshArgs(cluster: Cluster, knownHosts = cluster.knownHostsPath): string[] {
  return ['--identity', cluster.clientKeyPath, '--known-hosts', knownHosts, '--connect-timeout', '5'];
}

/** Pids of processes in a host's network namespace whose argv matches. */
export function pidsOnHost(host: Pick<NsHost, 'name'>, match: (argv: string[]) => boolean): number[] {
  const pids = runSync(['ip', 'netns', 'pids', host.name]).output.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number);
  return pids.filter((pid) => {
    if (!isAlive(pid)) return false;
    try {
      return match(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'));
    } catch {
      return false;
    }
  });
}

/** piecework workers (`… piecework.mjs work JOB …`) on a host. */
export function workersOnHost(host: Pick<NsHost, 'name'>): number[] {
  return pidsOnHost(host, (argv) => argv[2] === 'work' && /piecework(\.mjs)?$/.test(argv[1] ?? ''));
}

export function sshfsOnHost(host: Pick<NsHost, 'name'>): number[] {
  return pidsOnHost(host, (argv) => /(^|\/)sshfs$/.test(argv[0] ?? ''));
}

/**
 * A Linux bridge takes the lowest MAC address of its ports unless it was given one: cutting the
 * host whose veth that was changes the head's MAC, and the other hosts' packets to the head go
 * to the old address until their ARP entries expire — every mount stalls for seconds. Pinning
 * the bridge's current address (an explicitly set address stays) makes a cut affect only the
 * host that was cut.
 */
export function pinBridgeAddress(): void {
  const bridge = `${runTag}br`;
  const mac = readFileSync(`/sys/class/net/${bridge}/address`, 'utf8').trim();
  const r = runSync(['ip', 'link', 'set', bridge, 'address', mac]);
  if (!r.ok) throw new Error(`ip link set ${bridge} address ${mac}: ${r.output}`);
}

const stateLogs = join(process.env['XDG_STATE_HOME'] ?? join(homedir(), '.local', 'state'), 'piecework', 'logs');
const knownHostsCopy = join(process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache'), 'piecework', 'known_hosts.mount');
const sftpKnownHostsCopy = join(dirname(knownHostsCopy), 'known_hosts.sftp');

/** The local log a bootstrap wrote on a host (by the launch report's `localLog`), or ''. */
export function readLocalLog(path: string | undefined): string {
  try {
    return path ? readFileSync(path, 'utf8') : '';
  } catch {
    return '';
  }
}

/**
 * The local log once the supervisor has written the worker's exit status (it does so right after
 * reaping the worker, so a test that saw the worker go must still wait a moment for it).
 */
export async function logWithExit(path: string | undefined, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = readLocalLog(path);
    if (/piecework-worker: exit=\d+\n$/.test(text) || Date.now() > deadline) return text;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Remove what bootstraps on namespace hosts leave in root's home: the local worker logs (and a
 * fifo of a worker that was killed) of this run's jobs, and the head's known_hosts copies (sshfs's,
 * the SFTP workers') if this run made them. Register before launching.
 */
export function cleanHostState(): void {
  const hadKnownHosts = existsSync(knownHostsCopy);
  const hadSftpKnownHosts = existsSync(sftpKnownHostsCopy);
  // The folders too, when this run makes them (deepest first; only if left empty).
  const madeDirs = [stateLogs, dirname(stateLogs), dirname(knownHostsCopy)].filter((d) => !existsSync(d));
  registerCleanup(() => {
    if (!hadKnownHosts) rmSync(knownHostsCopy, { force: true });
    if (!hadSftpKnownHosts) rmSync(sftpKnownHostsCopy, { force: true });
    let names: string[] = [];
    try {
      names = readdirSync(stateLogs);
    } catch {
      // never made
    }
    for (const name of names) if (hasTag(name)) rmSync(join(stateLogs, name), { force: true });
    for (const dir of madeDirs) {
      try {
        rmdirSync(dir);
      } catch {
        // not empty (another run uses it) or already gone
      }
    }
  }, 'remove the hosts\' local piecework logs');
}
