// A private, real OpenSSH server for tests: its own keys, config, pid file and log under a temp
// folder, on a free port, optionally inside a network namespace. Nothing under /etc/ssh is used.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { isAlive, killTree, markerEnv, registerCleanup, runTag } from './cleanup.js';
import { makeTempDir } from './tmp.js';
import { waitUntil } from './wait.js';

export { waitUntil };

export interface SshdOptions {
  /** Default: a free port (probed on loopback; a fresh namespace has every port free anyway). */
  port?: number;
  /** Default 127.0.0.1. Inside a namespace, one of that namespace's addresses. */
  listenAddress?: string;
  /** Network namespace to run in (via `ip netns exec`). */
  netns?: string;
  /** The folder this server serves: the sftp start folder, so `root@host:` mounts it. Default: a new temp dir. */
  root?: string;
  /** Reuse this client key (authorized here) instead of generating one; lets one key reach many servers. */
  clientKeyPath?: string;
  logLevel?: 'QUIET' | 'ERROR' | 'INFO' | 'VERBOSE' | 'DEBUG';
}

export interface Sshd {
  port: number;
  host: string;
  root: string;
  /** Temp folder holding config, keys, pid file and sshd.log. */
  dir: string;
  pid: number;
  hostKeyPath: string;
  hostPublicKey: string;
  clientKeyPath: string;
  /** Holds `[host]:port KEY` and `hostKeyAlias KEY`. */
  knownHostsPath: string;
  /** Name under which the host key is also known: lets a client reach this server through a proxy port. */
  hostKeyAlias: string;
  logPath: string;
  stop(): void;
}

export async function startSshd(options: SshdOptions = {}): Promise<Sshd> {
  // sshd refuses to start without its privilege-separation folder.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const host = options.listenAddress ?? '127.0.0.1';
  const dir = makeTempDir('sshd');
  const root = options.root ?? makeTempDir('sshd-root');
  const hostKeyPath = join(dir, 'host_ed25519_key');
  await keygen(hostKeyPath);
  const hostPublicKey = readFileSync(`${hostKeyPath}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
  let clientKeyPath = options.clientKeyPath;
  if (clientKeyPath === undefined) {
    clientKeyPath = join(dir, 'client_ed25519_key');
    await keygen(clientKeyPath);
  }
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${clientKeyPath}.pub`));

  // Retry on a lost port race (probed free, then taken before sshd bound it).
  for (let attempt = 0; ; attempt++) {
    const port = options.port ?? (await freePort());
    try {
      return await launch({ dir, root, host, port, hostKeyPath, hostPublicKey, clientKeyPath, options });
    } catch (err) {
      if (options.port !== undefined || attempt >= 4 || !/Address already in use/.test(String(err))) throw err;
    }
  }
}

interface LaunchArgs {
  dir: string;
  root: string;
  host: string;
  port: number;
  hostKeyPath: string;
  hostPublicKey: string;
  clientKeyPath: string;
  options: SshdOptions;
}

async function launch(a: LaunchArgs): Promise<Sshd> {
  const { dir, host, port } = a;
  const configPath = join(dir, 'sshd_config');
  const logPath = join(dir, `sshd-${port}.log`);
  writeFileSync(
    configPath,
    [
      `Port ${port}`,
      `ListenAddress ${host}`,
      `HostKey ${a.hostKeyPath}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      // temp folders are not owned the way StrictModes wants
      'StrictModes no',
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'UseDNS no',
      'PrintMotd no',
      `Subsystem sftp internal-sftp -d ${a.root}`,
      // sessions keep their per-user state (launch's local logs) in the test's folder, not in ~
      `SetEnv XDG_STATE_HOME=${a.dir}/state XDG_CACHE_HOME=${a.dir}/cache`,
      // the stock 10:30:100 and 10 drop bursts of connections/channels that cluster tests make
      'MaxStartups 100',
      'MaxSessions 50',
      `LogLevel ${a.options.logLevel ?? 'INFO'}`,
      '',
    ].join('\n'),
  );
  const hostKeyAlias = `${runTag}-sshd-${port}`;
  const knownHostsPath = join(dir, 'known_hosts');
  writeFileSync(knownHostsPath, `[${host}]:${port} ${a.hostPublicKey}\n${hostKeyAlias} ${a.hostPublicKey}\n`);

  const sshdArgv = ['/usr/sbin/sshd', '-D', '-e', '-f', configPath];
  const argv = a.options.netns === undefined ? sshdArgv : ['ip', 'netns', 'exec', a.options.netns, ...sshdArgv];
  const { pid, stop } = spawnDaemon(argv, logPath);

  // sshd logs "Server listening on" after listen(): reliable even inside a namespace we cannot reach.
  try {
    await waitUntil(() => {
      const log = readFileSync(logPath, 'utf8');
      if (/Server listening on/.test(log)) return true;
      if (!isAlive(pid)) throw new Error(`sshd exited: ${log.trim()}`);
      return false;
    }, 10_000, `sshd on ${host}:${port}`);
  } catch (err) {
    stop();
    throw err;
  }
  return { port, host, root: a.root, dir, pid, hostKeyPath: a.hostKeyPath, hostPublicKey: a.hostPublicKey, clientKeyPath: a.clientKeyPath, knownHostsPath, hostKeyAlias, logPath, stop };
}

/**
 * Client options (for ssh, or for sshfs's `-o`) that authenticate with the test key and verify the
 * host key strictly. Pass `viaPort` to go through a proxy: the key is then checked under the alias.
 */
export function sshOptions(sshd: Sshd, opts: { viaPort?: number; viaHost?: string; knownHostsPath?: string; extra?: string[] } = {}): string[] {
  const o = [
    // a host that is cut must fail the test quickly, not hang it
    'ConnectTimeout=5',
    `IdentityFile=${sshd.clientKeyPath}`,
    `UserKnownHostsFile=${opts.knownHostsPath ?? sshd.knownHostsPath}`,
    'StrictHostKeyChecking=yes',
    'IdentitiesOnly=yes',
    'BatchMode=yes',
    'GlobalKnownHostsFile=/dev/null',
  ];
  if ((opts.viaPort !== undefined && opts.viaPort !== sshd.port) || (opts.viaHost !== undefined && opts.viaHost !== sshd.host)) {
    o.push(`HostKeyAlias=${sshd.hostKeyAlias}`);
  }
  // ssh keeps the FIRST value it sees for an option, so the caller's extras go first.
  return [...(opts.extra ?? []), ...o];
}

/** argv for `ssh` running `remote` (one shell string, as ssh always joins it) on this server. */
export function sshArgv(sshd: Sshd, remote: string, opts: Parameters<typeof sshOptions>[1] = {}): string[] {
  // -F none: ignore ~/.ssh/config, so the test does not depend on the machine it runs on.
  return ['ssh', '-F', 'none', '-p', String(opts.viaPort ?? sshd.port), ...sshOptions(sshd, opts).flatMap((o) => ['-o', o]), `root@${opts.viaHost ?? sshd.host}`, remote];
}

// ---------------------------------------------------------------------------------------------

async function keygen(path: string): Promise<void> {
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${runTag}-testbed`, '-f', path]);
}

/** A port nobody listens on right now (for daemons that must be told one). */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr !== null ? resolvePort(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Start a long-running process in its own process group, output to a log file (a pipe nobody
 * reads would fill and block it), marked with the run's environment, killed (with its descendants)
 * by runCleanups(). Unref'd: a forgotten cleanup must not keep the test process alive; the exit
 * hook still kills it.
 */
export function spawnDaemon(argv: readonly string[], logPath: string, env: Record<string, string> = {}): { pid: number; stop: () => void } {
  const fd = openSync(logPath, 'a');
  const [cmd, ...args] = argv;
  const child = spawn(cmd!, args, { detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, ...markerEnv, ...env } });
  closeSync(fd);
  child.on('error', () => {}); // reported through the log / isAlive
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot spawn ${cmd}`);
  const handle = registerCleanup(() => killTree(pid), `kill ${cmd} (${pid})`);
  return { pid, stop: () => handle.run() };
}

