// Several "hosts" on one machine: each is a network namespace with its own sshd, joined to the
// root namespace ("head") by a veth pair on a bridge. The head serves a shared folder over sshd
// at the bridge's address; hosts mount it over sshfs. Cutting a host drops its link and kills
// everything in it, like pulling the plug.
//
// Addressing: one /24 out of 10.213.0.0/16, picked from the pid, skipped if any address or route
// here already uses it, and claimed with a file so two concurrent runs never share it. Namespaces
// get no default route: they can reach only this /24, i.e. each other and the head.
import { closeSync, openSync, readFileSync, readlinkSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa, type Options, type ResultPromise } from 'execa';
import { deleteLinkSync, deleteNetnsSync, isAlive, killNetnsProcesses, markerEnv, registerCleanup, runSync, runTag } from './cleanup.js';
import { spawnDaemon, startSshd, waitUntil, type Sshd } from './sshd.js';
import { mountSshfs, type HostNamespace, type SshfsMount } from './sshfs.js';
import { makeTempDir } from './tmp.js';

export interface NsHost extends HostNamespace {
  index: number;
  /** Network namespace name, `pw<pid>h<i>`. */
  name: string;
  address: string;
  sshd: Sshd;
  /** A temp folder for this host's mount points and files. */
  dir: string;
  /** Run a command on the host: its network and its mount namespace (sees its sshfs mounts). */
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type -- execa's own default, so results are typed as strings
  exec<O extends Options = {}>(argv: readonly string[], options?: O): ResultPromise<O>;
  /** Mount the head's shared folder on this host (default at `<dir>/share`; `port`: through a proxy on the head's address). */
  mountShare(opts?: { mountPoint?: string; options?: string[]; port?: number }): Promise<SshfsMount>;
  /** Pull the plug: delete the host's link, SIGKILL every process in its namespace. */
  cut(): void;
}

export interface Cluster {
  /** e.g. 10.213.57.0/24 */
  subnet: string;
  head: { address: string; sshd: Sshd; shareDir: string };
  hosts: NsHost[];
  /** One client key, authorized on every sshd (head and hosts). */
  clientKeyPath: string;
  /** Entries for every sshd of the cluster. */
  knownHostsPath: string;
}

export async function createHosts(n: number): Promise<Cluster> {
  if (n < 1 || n > 200) throw new Error('createHosts: 1..200 hosts');
  const prefix = claimSubnet();
  const bridge = `${runTag}br`;
  // Create, then register its undo, one step at a time: a failure half-way still cleans up.
  mustRun(['ip', 'link', 'add', bridge, 'type', 'bridge']);
  registerCleanup(() => deleteLinkSync(bridge), `ip link del ${bridge}`);
  mustRun(['ip', 'addr', 'add', `${prefix}.1/24`, 'dev', bridge]);
  mustRun(['ip', 'link', 'set', bridge, 'up']);

  const shareDir = makeTempDir('share');
  const headSshd = await startSshd({ listenAddress: `${prefix}.1`, root: shareDir });
  const hosts: NsHost[] = [];
  for (let i = 0; i < n; i++) hosts.push(await createHost(i, prefix, bridge, headSshd, shareDir));
  // A bridge takes the lowest MAC of its ports unless given one: cutting the host that owned it
  // would change the head's address and stall every other host's mount until ARP expires.
  const bridgeMac = readFileSync(`/sys/class/net/${bridge}/address`, 'utf8').trim();
  mustRun(['ip', 'link', 'set', bridge, 'address', bridgeMac]);

  const knownHostsPath = join(headSshd.dir, 'cluster_known_hosts');
  writeFileSync(knownHostsPath, [headSshd, ...hosts.map((h) => h.sshd)].map((s) => readFileSync(s.knownHostsPath, 'utf8')).join(''));
  return { subnet: `${prefix}.0/24`, head: { address: `${prefix}.1`, sshd: headSshd, shareDir }, hosts, clientKeyPath: headSshd.clientKeyPath, knownHostsPath };
}

async function createHost(i: number, prefix: string, bridge: string, head: Sshd, shareDir: string): Promise<NsHost> {
  const name = `${runTag}h${i}`;
  const veth = `${runTag}v${i}`;
  const address = `${prefix}.${10 + i}`;
  mustRun(['ip', 'netns', 'add', name]);
  registerCleanup(() => deleteNetnsSync(name), `ip netns del ${name}`);
  // The peer is created directly inside the namespace, so it can be called eth0 there.
  mustRun(['ip', 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name]);
  registerCleanup(() => deleteLinkSync(veth), `ip link del ${veth}`);
  mustRun(['ip', 'link', 'set', veth, 'master', bridge, 'up']);
  mustRun(['ip', '-n', name, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
  mustRun(['ip', '-n', name, 'link', 'set', 'eth0', 'up']);
  mustRun(['ip', '-n', name, 'link', 'set', 'lo', 'up']);

  const dir = makeTempDir(`h${i}`);
  // The anchor holds the host's mount namespace open; see sshfs.ts for why this is needed.
  const anchor = spawnDaemon(['ip', 'netns', 'exec', name, 'sleep', 'infinity'], join(dir, 'anchor.log'));
  const ourNet = readlinkSync('/proc/self/ns/net');
  await waitUntil(() => {
    if (!isAlive(anchor.pid)) throw new Error(`namespace anchor for ${name} died: ${readFileSync(join(dir, 'anchor.log'), 'utf8')}`);
    // Only after exec is it in its namespaces; nsenter before that would join ours.
    return readFileSync(`/proc/${anchor.pid}/comm`, 'utf8').trim() === 'sleep' && readlinkSync(`/proc/${anchor.pid}/ns/net`) !== ourNet;
  }, 5000, `anchor of ${name}`);

  const sshd = await startSshd({ netns: name, listenAddress: address, clientKeyPath: head.clientKeyPath });
  const self: HostNamespace = { anchorPid: anchor.pid };
  return {
    index: i,
    name,
    address,
    sshd,
    dir,
    anchorPid: anchor.pid,
    // eslint-disable-next-line @typescript-eslint/no-empty-object-type -- as above
    exec<O extends Options = {}>(argv: readonly string[], options?: O): ResultPromise<O> {
      const opts = { ...options, env: { ...markerEnv, ...options?.env } } as O;
      return execa('nsenter', ['-t', String(anchor.pid), '-n', '-m', '--', ...argv], opts) as unknown as ResultPromise<O>;
    },
    mountShare: (opts = {}) =>
      mountSshfs({ sshd: head, remotePath: shareDir, mountPoint: opts.mountPoint ?? join(dir, 'share'), options: opts.options, port: opts.port, inHost: self }),
    cut() {
      deleteLinkSync(veth);
      killNetnsProcesses(name);
    },
  };
}

/** Pick a free 10.213.X.0/24: derived from the pid, not in use here, and claimed against concurrent runs. */
function claimSubnet(): string {
  const inUse = runSync(['ip', '-o', '-4', 'addr', 'show']).output + runSync(['ip', '-4', 'route', 'show', 'table', 'all']).output;
  for (let k = 0; k < 256; k++) {
    const x = (process.pid + k) % 254 + 1;
    const prefix = `10.213.${x}`;
    if (inUse.includes(`${prefix}.`)) continue;
    const claim = join(tmpdir(), `piecework-testbed-subnet-${prefix}`);
    try {
      const fd = openSync(claim, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
    } catch {
      // Claimed: reuse only if its owner is dead (empty = its owner is still writing it).
      const owner = Number(safeRead(claim));
      if (owner === 0 || isAlive(owner)) continue;
      writeFileSync(claim, String(process.pid));
    }
    registerCleanup(() => {
      if (safeRead(claim) === String(process.pid)) unlinkSync(claim);
    }, `release ${claim}`);
    return prefix;
  }
  throw new Error('no free 10.213.X.0/24 subnet');
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
}

function mustRun(argv: string[]): void {
  const r = runSync(argv);
  if (!r.ok) throw new Error(`${argv.join(' ')}: ${r.output}`);
}
