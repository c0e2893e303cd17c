// The store contract over SFTP against a real OpenSSH server on loopback: directly, then through
// a delay proxy (10 ms round trips). Also: bad addresses, unknown host keys, failed auth.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PieceworkError, UsageError } from '../../src/core/errors.js';
import { fixedMountClock } from '../../src/core/store/mount-clock.js';
import { openSftpStore, parseSftpAddress, type SftpJobStore } from '../../src/core/store/sftp-store.js';
import { runCleanups } from '../helpers/cleanup.js';
import { startDelayProxy, type DelayProxy } from '../helpers/delay-proxy.js';
import { startSshd, type Sshd } from '../helpers/sshd.js';
import { makeTempDir } from '../helpers/tmp.js';
import { storeContract, type StoreFixture } from './contract.js';

let sshd: Sshd;
let proxy: DelayProxy;
let knownHosts: string;

before(async () => {
  sshd = await startSshd();
  proxy = await startDelayProxy({ targetPort: sshd.port, delayMs: 5 });
  // The proxy's port, known under the server's key as well.
  knownHosts = path.join(makeTempDir('sftp-kh'), 'known_hosts');
  writeFileSync(knownHosts, `[127.0.0.1]:${sshd.port} ${sshd.hostPublicKey}\n[127.0.0.1]:${proxy.port} ${sshd.hostPublicKey}\n`);
});
after(async () => {
  await proxy?.close();
  await runCleanups();
});

function fixture(port: () => number): () => StoreFixture {
  return () => ({
    open: (address) => openSftpStore(address, { identityFile: sshd.clientKeyPath, knownHostsFile: knownHosts }),
    newJob: (name) => ({ address: `sftp://root@127.0.0.1:${port()}${sshd.root}/jobs/${name}`, backing: path.join(sshd.root, 'jobs', name) }),
    closeEndsOperations: true,
    stagesCopies: true,
  });
}

describe('sftp store, loopback', () => storeContract(fixture(() => sshd.port)));
describe('sftp store, 10 ms round trips', () => storeContract(fixture(() => proxy.port)));

describe('sftp addresses and connections', () => {
  test('addresses parse; malformed ones are usage errors with a hint', () => {
    assert.deepEqual(parseSftpAddress('sftp://root@host:2222/srv/job/'), { user: 'root', host: 'host', port: 2222, path: '/srv/job' });
    assert.deepEqual(parseSftpAddress('sftp://[::1]/a%20b'), { user: undefined, host: '::1', port: 22, path: '/a b' });
    for (const bad of ['sftp://host', 'sftp://host/', 'sftp://host:x/job', 'sftp://host:99999/job', 'sftp:///job', 'sftp://host/../x']) {
      assert.throws(() => parseSftpAddress(bad), (e: unknown) => e instanceof UsageError && e.hint !== undefined, bad);
    }
  });

  test('an unknown host key is refused with a hint; a wrong key fails authentication', async () => {
    const empty = path.join(makeTempDir('sftp-kh-empty'), 'known_hosts');
    writeFileSync(empty, '');
    await assert.rejects(openSftpStore(`sftp://root@127.0.0.1:${sshd.port}/tmp/x`, { identityFile: sshd.clientKeyPath, knownHostsFile: empty }), (e: unknown) => e instanceof PieceworkError && /not known/.test(e.message) && e.hint !== undefined);
    await assert.rejects(openSftpStore(`sftp://root@127.0.0.1:${sshd.port}/tmp/x`, { identityFile: sshd.hostKeyPath, knownHostsFile: knownHosts }), (e: unknown) => e instanceof PieceworkError && /authentication failed/.test(e.message) && e.hint !== undefined);
  });

  test('a cut link fails pending and later requests with JobMissingError (exit 4), at once', async () => {
    const cut = await startDelayProxy({ targetPort: sshd.port, delayMs: 0 });
    writeFileSync(knownHosts, `[127.0.0.1]:${cut.port} ${sshd.hostPublicKey}\n`, { flag: 'a' });
    const store = await openSftpStore(`sftp://root@127.0.0.1:${cut.port}${sshd.root}/cut${process.pid}`, { identityFile: sshd.clientKeyPath, knownHostsFile: knownHosts });
    await store.createJobFolders();
    const started = Date.now();
    const pending = store.lookup('out', '000001');
    await cut.close();
    await Promise.allSettled([pending]);
    await assert.rejects(store.read('top', 'job.json'), (e: unknown) => e instanceof PieceworkError && e.exitStatus === 4 && /lost the SFTP connection/.test(e.message));
    assert.ok(Date.now() - started < 5000);
    await store.close();
  });

  test('a claim released between the refused mkdir and the look that follows is claimed, not an error', async () => {
    // OpenSSH answers mkdir of an existing name with code 4 (failure), so the claim looks whether
    // the lock exists; its holder may release it in between (the chaos run over SFTP caught it:
    // "unexpected error: mkdir …/locks/000225: Failure", the worker exited 1).
    const backing = path.join(sshd.root, `race${process.pid}`);
    const store = await openSftpStore(`sftp://root@127.0.0.1:${sshd.port}${backing}`, { identityFile: sshd.clientKeyPath, knownHostsFile: knownHosts });
    try {
      await store.createJobFolders();
      const lock = path.join(backing, 'locks', '000001');
      mkdirSync(lock); // held by someone else
      const sftp = store as SftpJobStore;
      const mkdirPath = sftp.mkdirPath.bind(sftp);
      sftp.mkdirPath = async (p: string) => {
        try {
          await mkdirPath(p);
        } finally {
          if (p.endsWith('/locks/000001')) rmSync(lock, { recursive: true, force: true }); // … and released just now
        }
      };
      const claims = await store.claims({ staleMs: 4000, updateMs: 1000 }, fixedMountClock(0), { workerId: `a.${process.pid}`, host: 'a', pid: process.pid, bootId: '' });
      const claim = await claims.claim('000001', 0);
      assert.ok(claim, 'the released chunk is claimed');
      assert.equal(await claim.stillOurs(), true);
      await claim.release();
    } finally {
      await store.close();
    }
  });

  test('a server that answers every claim with a bare Failure (a full disk: ENOSPC) is reported after a few claims, not taken for busy chunks for ever', async (t) => {
    const address = `sftp://root@127.0.0.1:${sshd.port}${sshd.root}/jobs/full-disk`;
    const backing = path.join(sshd.root, 'jobs', 'full-disk');
    const store = await openSftpStore(address, { identityFile: sshd.clientKeyPath, knownHostsFile: knownHosts });
    const locks = path.join(backing, 'locks');
    let mounted = false;
    try {
      await store.createJobFolders();
      // locks/ on a file system with no inode left: every mkdir there fails with ENOSPC.
      try {
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,nr_inodes=1', 'pw-full', locks], { stdio: 'ignore' });
        mounted = true;
      } catch {
        return t.skip('cannot mount a tmpfs here (needs root)');
      }
      const claims = await store.claims({ staleMs: 4000, updateMs: 1000 }, fixedMountClock(0), { workerId: `a.${process.pid}`, host: 'a', pid: process.pid, bootId: '' });
      let refused: unknown;
      let busy = 0;
      for (let i = 0; i < 20 && refused === undefined; i++) {
        try {
          if ((await claims.claim(String(i).padStart(6, '0'), 0)) === undefined) busy++;
        } catch (error) {
          refused = error;
        }
      }
      assert.ok(refused instanceof PieceworkError, `after ${busy} chunks taken for busy, no error`);
      assert.match(refused.message, /refuses to make claim folders in locks\/ .*"Failure"/);
      assert.match(refused.hint ?? '', /full disk/);
      assert.ok(busy < 10, `${busy} claims taken for busy first`);
    } finally {
      if (mounted) execFileSync('umount', [locks]);
      await store.close();
    }
  });

});
