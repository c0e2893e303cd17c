/**
 * The chaos run (chaos.test.ts) with workers over SFTP, against a real OpenSSH server on loopback:
 * on one job, workers on the folder itself, workers over sftp://, and workers over sftp:// through
 * a delaying TCP proxy (so requests are in flight when SIGKILL and SIGSTOP land) — one set of
 * claims and owner records for all. `verify --requeue` alternates between the folder and sftp://,
 * `merge --follow` runs over sftp:// through the proxy, and the worker that finishes the job after
 * the chaos is an SFTP worker. The invariants are those of the local run: exactly one complete,
 * right output per chunk; merge and the follower byte-identical to a serial run; no successful
 * chunk charged a failed attempt.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { chaosSeeds, runChaos, type Reach } from '../helpers/chaos.js';
import { markerEnv, registerCleanup, runCleanups } from '../helpers/cleanup.js';
import { startDelayProxy, type DelayProxy } from '../helpers/delay-proxy.js';
import { startSshd, type Sshd } from '../helpers/sshd.js';
import { makeTempDir } from '../helpers/tmp.js';

const SEEDS = chaosSeeds([1, 2]);
/** One way: a round trip through the proxy gains 2 × this. */
const PROXY_DELAY_MS = 3;

let sshd: Sshd;
let proxy: DelayProxy;
let knownHosts: string;
let root: string;

before(async () => {
  sshd = await startSshd();
  proxy = await startDelayProxy({ targetPort: sshd.port, delayMs: PROXY_DELAY_MS });
  registerCleanup(() => void proxy.close(), `close the delay proxy (${proxy.port})`);
  root = makeTempDir('chaos-sftp');
  knownHosts = path.join(makeTempDir('chaos-sftp-kh'), 'known_hosts');
  writeFileSync(knownHosts, [sshd.port, proxy.port].map((port) => `[127.0.0.1]:${port} ${sshd.hostPublicKey}\n`).join(''));
});
after(() => runCleanups());

function sftp(job: string, via: 'direct' | 'proxy'): Reach {
  const port = via === 'proxy' ? proxy.port : sshd.port;
  return {
    address: `sftp://root@127.0.0.1:${port}${job}`,
    kind: via === 'proxy' ? 'sftp+proxy' : 'sftp',
    options: { env: { ...markerEnv, PIECEWORK_SSH_IDENTITY: sshd.clientKeyPath, PIECEWORK_KNOWN_HOSTS: knownHosts, SSH_AUTH_SOCK: '' } },
  };
}

/** Workers in turn: over SFTP through the proxy, on the folder, over SFTP straight to sshd. */
function worker(job: string, n: number): Reach {
  if (n % 3 === 1) return { address: job, kind: 'posix', options: { env: markerEnv } };
  return sftp(job, n % 3 === 0 ? 'proxy' : 'direct');
}

for (const seed of SEEDS) {
  test(`chaos over SFTP, seed ${seed}: POSIX and SFTP workers (some through a delaying proxy) killed and frozen on one job, requeues, an SFTP follower — one output per chunk, merges equal a serial run`, async (t) => {
    const summary = await runChaos({
      name: `sftp-seed-${seed}`,
      seed,
      root,
      worker,
      verify: (job, n) => (n % 2 === 0 ? sftp(job, 'direct') : { address: job, kind: 'posix', options: { env: markerEnv } }),
      follower: (job) => sftp(job, 'proxy'),
      finisher: (job) => sftp(job, 'direct'),
      report: (line) => t.diagnostic(line),
    });
    // The SFTP workers did their share in the chaos, not just the finisher.
    const overSftp = (summary.committed['sftp'] ?? 0) + (summary.committed['sftp+proxy'] ?? 0);
    assert.ok(overSftp > 0, `SFTP workers committed outputs during the chaos: ${JSON.stringify(summary)}`);
  });
}
