// `launch --via sftp` to namespace hosts that have no /dev/fuse and no sshfs: the workers reach
// the head's job over SFTP (the head needs only its sshd). One host's link is dropped half-way —
// its processes are not killed: its worker must notice the silent link and exit with a clear
// message within the documented bound. The job completes from the others; verify and merge run
// over sftp:// from this machine, as from a laptop, and merge equals the serial run.
// Needs root (namespaces). Stale is 5 s (split --stale 5) so that takeovers are quick.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { isAlive, runCleanups, runSync, runTag } from '../helpers/cleanup.js';
import { collect, runPiecework, startPiecework } from '../helpers/cli.js';
import { createHosts, type NsHost } from '../helpers/netns-hosts.js';
import { cleanHostState, logWithExit, makeSharedJob, pinBridgeAddress, sshArgs, sshfsOnHost, workersOnHost, writeHostsFile } from '../helpers/remote-job.js';
import { waitUntil } from '../helpers/sshd.js';
import type { HostResult } from '../../src/remote/launch.js';

/** The documented bound for a silent link (README): keep-alives end it within ~20 s; margin for a loaded machine. */
const SILENT_BOUND_MS = 30_000;
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/**
 * Take FUSE and sshfs away from a host: bind /dev/null over /dev/fuse and over the sshfs binary in
 * the mount namespace of the host's sshd (`ip netns exec` made it a private one, so nothing here
 * changes). Everything launch runs on the host runs under that sshd.
 */
function withoutFuse(host: NsHost): void {
  const enter = ['nsenter', '-t', String(host.sshd.pid), '-m', '--'];
  const sshfs = runSync(['sh', '-c', 'command -v sshfs']).output.trim();
  for (const target of ['/dev/fuse', ...(sshfs ? [sshfs] : [])]) {
    if (!existsSync(target)) continue;
    const r = runSync([...enter, 'mount', '--bind', '/dev/null', target]);
    if (!r.ok) throw new Error(`cannot hide ${target} on ${host.name}: ${r.output}`);
  }
}

void describe('launch --via sftp to namespace hosts without FUSE', () => {
  after(() => runCleanups());

  void test('three hosts without FUSE or sshfs work over SFTP; one link dropped half-way: its worker exits with a clear message within the bound; the job completes; merge equals the serial run', async (t) => {
    t.after(() => runCleanups());
    cleanHostState();
    const cluster = await createHosts(3);
    pinBridgeAddress();
    for (const host of cluster.hosts) withoutFuse(host);
    const { job, expected } = makeSharedJob(cluster.head.shareDir, 'sftp', 120);
    const hostsFile = writeHostsFile(cluster.hosts);
    const head = `root@${cluster.head.address}:${cluster.head.sshd.port}`;
    const address = `sftp://${head}${job}`;

    // What the hosts lack, seen from a host's own shell (as launch's sessions see it).
    const probe = runSync(['ssh', '-F', 'none', '-p', String(cluster.hosts[0]!.sshd.port), '-o', `IdentityFile=${cluster.clientKeyPath}`, '-o', `UserKnownHostsFile=${cluster.knownHostsPath}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', `root@${cluster.hosts[0]!.address}`, 'if sshfs -V >/dev/null 2>&1; then echo sshfs-runs; else echo no-sshfs; fi; stat -c fuse=%t:%T /dev/fuse']);
    t.diagnostic(`host 0 says: ${probe.output.replace(/\n/g, ' ')}`);
    assert.match(probe.output, /no-sshfs/);
    assert.match(probe.output, /fuse=1:3/, '/dev/fuse is /dev/null there (the FUSE device is 10:e5)');

    const started = Date.now();
    const launch = startPiecework(['launch', job, '--hosts', hostsFile, ...sshArgs(cluster), '--via', 'sftp', '--head', head, '--head-identity', cluster.clientKeyPath, '-j', '2', '--wait', '--json', '--', 'sh', '-c', 'sleep 0.3; tr a-z A-Z']);
    const launched = collect(launch);
    let ended: Awaited<typeof launched> | undefined;
    void launched.then((r) => (ended = r));
    const outDir = join(job, 'out');
    const done = (): number => (existsSync(outDir) ? readdirSync(outDir).length : 0);

    // Half-way: drop the third host's link (its processes live on).
    const victim = cluster.hosts[2]!;
    await waitUntil(() => {
      if (ended) throw new Error(`launch ended (${ended.code}) before 40 outputs: ${ended.stderr}\n${ended.stdout}`);
      return done() >= 40;
    }, 90_000, '40 of 120 outputs');
    const [victimWorker] = workersOnHost(victim);
    assert.ok(victimWorker !== undefined, 'the third host runs a worker before its link drops');
    for (const host of cluster.hosts) assert.deepEqual(sshfsOnHost(host), [], `no sshfs on ${host.name}`);
    const cutAt = Date.now();
    const drop = runSync(['ip', 'link', 'set', `${runTag}v${victim.index}`, 'down']);
    assert.ok(drop.ok, drop.output);
    t.diagnostic(`launch + 40 chunks: ${seconds(cutAt - started)}; dropped ${victim.name}'s link with ${done()} outputs`);

    // The cut-off worker notices by itself (keep-alives), within the bound, and leaves nothing.
    await waitUntil(() => !isAlive(victimWorker), SILENT_BOUND_MS + 10_000, 'the cut-off worker to exit');
    const tookMs = Date.now() - cutAt;
    t.diagnostic(`the cut-off worker exited ${seconds(tookMs)} after its link dropped`);
    assert.ok(tookMs < SILENT_BOUND_MS, `within the bound (${seconds(tookMs)})`);
    await waitUntil(() => workersOnHost(victim).length === 0, 5000, 'no worker left on the cut host');

    const result = await launched;
    t.diagnostic(`launch --wait returned after ${seconds(Date.now() - started)}`);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /launch: job complete: 120 chunks done/);
    const report = JSON.parse(result.stdout) as { hosts: HostResult[]; started: number };
    assert.equal(report.started, 3);
    for (const host of report.hosts) {
      assert.equal(host.status, 'started');
      assert.equal(host.mount, undefined, `${host.host} mounted nothing`);
    }
    const victimReport = report.hosts.find((h) => h.host.includes(victim.address))!;
    const victimLog = await logWithExit(victimReport.localLog);
    assert.match(victimLog, /piecework: lost the SFTP connection to .*; the job sftp:\/\/.* is out of reach/, victimLog);
    assert.match(victimLog, /piecework-worker: exit=4\n$/);
    assert.doesNotMatch(victimLog, /\n\s+at /, 'no stack trace');

    // From "a laptop": verify and merge over sftp://, nothing mounted.
    const env = { PIECEWORK_SSH_IDENTITY: cluster.clientKeyPath, PIECEWORK_KNOWN_HOSTS: cluster.knownHostsPath, SSH_AUTH_SOCK: '' };
    const verify = await runPiecework(['verify', address], { env });
    assert.equal(verify.code, 0, verify.stderr);
    const merged = await runPiecework(['merge', address], { env });
    assert.equal(merged.code, 0, merged.stderr);
    assert.equal(merged.stdout, expected, 'merge over sftp:// equals the serial run');
    for (const host of cluster.hosts.slice(0, 2)) {
      await waitUntil(() => workersOnHost(host).length === 0, 15_000, `the workers on ${host.name} to exit`);
    }
  });
});
