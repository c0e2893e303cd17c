// Network pieces for the scenarios, built from the testbed helpers in test/helpers/: a private
// sshd on loopback, a delaying TCP proxy in its own process, sshfs mounts through it, and a count
// of the SFTP requests (= round trips) a mount made, from sshfs's own debug log.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnDaemon, startSshd, waitUntil, type Sshd } from '../test/helpers/sshd.js';
import { mountSshfs, type SshfsMount } from '../test/helpers/sshfs.js';
import { makeTempDir } from '../test/helpers/tmp.js';
import { repoRoot } from './lib.js';

export interface DelayedShare {
  sshd: Sshd;
  /** The proxy's port: sshfs connects here, and each byte waits `oneWayMs` each way. */
  proxyPort: number;
  oneWayMs: number;
  /** Mount the share through the proxy (sshfs's default caching unless `options` say otherwise). */
  mount(label: string, options?: string[]): Promise<SshfsMount>;
}

/** A share served by a private sshd on loopback, reached through a delay proxy (its own process). */
export async function startDelayedShare(oneWayMs: number): Promise<DelayedShare> {
  const sshd = await startSshd();
  const { port: proxyPort } = await startDelayProxyProcess({ targetPort: sshd.port, oneWayMs, logPath: join(sshd.dir, 'delay-proxy.log') });
  return {
    sshd,
    proxyPort,
    oneWayMs,
    mount: async (label, options = []) => mountSshfs({ sshd, port: proxyPort, mountPoint: join(makeTempDir(`mnt-${label}`), 'share'), options }),
  };
}

/**
 * A delay proxy in its own process (registered for cleanup) in front of `targetHost:targetPort`,
 * listening on `listenHost` (default loopback): its port and pid. Never in this process: a synchronous
 * file call on a mount through it would block the proxy that must carry its reply — a deadlock.
 */
export async function startDelayProxyProcess(o: { targetPort: number; targetHost?: string; listenHost?: string; oneWayMs: number; logPath: string }): Promise<{ port: number; pid: number }> {
  const tsx = import.meta.resolve('tsx');
  const hosts = [...(o.targetHost ? ['--target-host', o.targetHost] : []), ...(o.listenHost ? ['--listen-host', o.listenHost] : [])];
  const { pid } = spawnDaemon([process.execPath, '--import', tsx, join(repoRoot, 'test', 'helpers', 'delay-proxy.ts'), '--target', String(o.targetPort), '--delay', String(o.oneWayMs), ...hosts], o.logPath);
  let port = 0;
  await waitUntil(() => {
    const m = /^(\d+)$/m.exec(readFileSync(o.logPath, 'utf8'));
    if (m) port = Number(m[1]);
    return port > 0;
  }, 15_000, 'the delay proxy to listen');
  return { port, pid };
}

/**
 * SFTP requests a mount sends, from its `-o sshfs_debug` log (one "[NNNNN] TYPE" line each).
 * Call `mark()` before a run and `since(mark)` after it.
 */
export class SftpCounter {
  constructor(readonly mount: SshfsMount) {}

  mark(): number {
    return statSync(this.mount.logPath).size;
  }

  since(offset: number): Map<string, number> {
    const text = readFileSync(this.mount.logPath).subarray(offset).toString('latin1');
    const counts = new Map<string, number>();
    for (const m of text.matchAll(/^\[\d+\] ([A-Z_]+)/gm)) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
    return counts;
  }
}
