// `launch` to real hosts: three network-namespace hosts, each with its own sshd, mount the head's
// shared folder over sshfs and start detached workers; one host is unplugged half-way and the
// others finish; `stop --now` ends workers over SSH; host keys are checked for real.
// Needs root (namespaces, FUSE). Stale is 5 s (split --stale 5) so that takeovers are quick.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { runCleanups } from '../helpers/cleanup.js';
import { collect, runPiecework, startPiecework } from '../helpers/cli.js';
import { createHosts } from '../helpers/netns-hosts.js';
import { cleanHostState, logWithExit, makeSharedJob, pinBridgeAddress, mountArgs, pidsOnHost, sshArgs, workersOnHost, writeHostsFile } from '../helpers/remote-job.js';
import { waitUntil } from '../helpers/sshd.js';
import { makeTempDir } from '../helpers/tmp.js';
import type { HostResult } from '../../src/remote/launch.js';

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

void describe('launch to namespace hosts', () => {
  after(() => runCleanups());

  void test('three hosts mount the share and work; one is unplugged half-way; launch --wait sees the job complete; merge equals the serial run', async (t) => {
    t.after(() => runCleanups());
    // Made before the hosts, so removed after them (the hosts' mounts sit on it).
    const at = join(makeTempDir('mnt'), 'share');
    cleanHostState();
    const cluster = await createHosts(3);
    pinBridgeAddress();
    const { job, expected } = makeSharedJob(cluster.head.shareDir, 'upper', 120);
    const hostsFile = writeHostsFile(cluster.hosts);

    const started = Date.now();
    const launch = startPiecework(['launch', job, '--hosts', hostsFile, ...sshArgs(cluster), ...mountArgs(cluster, at), '-j', '2', '--wait', '--json', '--', 'sh', '-c', 'sleep 0.3; tr a-z A-Z']);
    const launched = collect(launch);
    const outDir = join(job, 'out');
    const done = (): number => (existsSync(outDir) ? readdirSync(outDir).length : 0);

    // Half-way: pull the plug on the third host (its workers, sshfs and sshd die; its link goes).
    const victim = cluster.hosts[2]!;
    await waitUntil(() => done() >= 40, 60_000, '40 of 120 outputs');
    const victimWorkers = workersOnHost(victim);
    assert.equal(victimWorkers.length, 1, 'the third host runs one worker before it is cut');
    const cutAt = Date.now();
    victim.cut();
    t.diagnostic(`launch + 40 chunks: ${seconds(cutAt - started)}; cut ${victim.name} with ${done()} outputs`);

    const result = await launched;
    t.diagnostic(`launch --wait returned after ${seconds(Date.now() - started)} (${seconds(Date.now() - cutAt)} after the cut)`);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /launch: job complete: 120 chunks done/);
    assert.match(result.stderr, /launch: \d+ of 120 done/, 'progress lines on stderr');
    const report = JSON.parse(result.stdout) as { hosts: HostResult[]; started: number };
    assert.equal(report.started, 3);
    for (const host of report.hosts) {
      assert.equal(host.status, 'started');
      assert.equal(host.lanes, 2);
      assert.equal(host.mount, 'new', `${host.host} mounted the share`);
      assert.match(host.log ?? '', new RegExp(`^${at}/`), 'the launch log is in the job as the hosts see it');
    }

    const verify = await runPiecework(['verify', job]);
    assert.equal(verify.code, 0, verify.stderr);
    const merged = await runPiecework(['merge', job]);
    assert.equal(merged.code, 0, merged.stderr);
    assert.equal(merged.stdout, expected, 'merge equals the serial run');

    // Each surviving host's worker saw the job complete and exited by itself.
    for (const host of cluster.hosts.slice(0, 2)) {
      await waitUntil(() => workersOnHost(host).length === 0, 15_000, `the workers on ${host.name} to exit`);
      const r = report.hosts.find((h) => h.host.includes(host.address))!;
      const local = await logWithExit(r.localLog);
      assert.match(local, /work: job complete \(120 chunks\)/);
      assert.match(local, /piecework-worker: exit=0\n$/);
      assert.equal(readFileSync(join(job, 'logs', r.log!.split('/').pop()!), 'utf8'), local, 'the job log and the local log agree');
    }
    // The cut host did work, and never said it finished: the others took its chunks over.
    const victimBeat = JSON.parse(readFileSync(join(job, 'workers', readdirSync(join(job, 'workers')).find((n) => n.endsWith(`.${victimWorkers[0]}.json`))!), 'utf8')) as { done: number; state: string };
    assert.ok(victimBeat.done > 0, 'the cut host committed outputs before it died');
    assert.notEqual(victimBeat.state, 'exited');
  });

  void test('stop --now ends the workers on every host it reaches over SSH and reports the one it cannot', async (t) => {
    t.after(() => runCleanups());
    const at = join(makeTempDir('mnt'), 'share');
    cleanHostState();
    const cluster = await createHosts(3);
    pinBridgeAddress();
    const { job } = makeSharedJob(cluster.head.shareDir, 'slow', 30);
    const hostsFile = writeHostsFile(cluster.hosts);
    const launch = await runPiecework(['launch', job, '--hosts', hostsFile, ...sshArgs(cluster), ...mountArgs(cluster, at), '-j', '2', '--json', '--', 'sh', '-c', 'sleep 120; cat']);
    assert.equal(launch.code, 0, launch.stderr);
    const report = JSON.parse(launch.stdout) as { hosts: HostResult[] };
    // Every lane holds a chunk whose command sleeps: nothing would end by itself for minutes.
    const sleepers = (host: (typeof cluster.hosts)[0]) => pidsOnHost(host, (argv) => argv[0] === 'sh' && argv[2] === 'sleep 120; cat');
    await waitUntil(() => cluster.hosts.every((h) => sleepers(h).length === 2), 20_000, 'two busy lanes on every host');
    const unplugged = cluster.hosts[2]!;
    unplugged.cut();

    const t0 = Date.now();
    const stop = await runPiecework(['stop', job, '--now', '--hosts', hostsFile, ...sshArgs(cluster), '--grace', '5']);
    t.diagnostic(`stop --now over 3 hosts (one unplugged): ${seconds(Date.now() - t0)}`);
    assert.equal(stop.code, 1, `one host could not be reached: ${stop.stderr}`);
    assert.match(stop.stderr, /STOP file written/);
    assert.ok(existsSync(join(job, 'STOP')), 'the core stop still writes the STOP file');
    const row = (host: (typeof cluster.hosts)[0]) => stop.stderr.split('\n').find((l) => l.startsWith(`root@${host.address}:`)) ?? '';
    for (const host of cluster.hosts.slice(0, 2)) assert.match(row(host), /\bstopped\s+1 worker, 1 ended on SIGTERM/, stop.stderr);
    assert.match(row(unplugged), /\bunreachable\b/, stop.stderr);
    assert.match(stop.stderr, /stop: 2 workers ended on 2 hosts; 1 host not reached/);

    for (const host of cluster.hosts.slice(0, 2)) {
      assert.deepEqual(workersOnHost(host), [], `no worker left on ${host.name}`);
      await waitUntil(() => sleepers(host).length === 0, 5000, `the commands on ${host.name} to end`);
      const r = report.hosts.find((h) => h.host.includes(host.address))!;
      assert.match(await logWithExit(r.localLog), /piecework-worker: exit=143\n$/, 'the worker ended on SIGTERM');
    }
    // Their claims were released on the way out: only the unplugged host's remain (to go stale).
    const locks = readdirSync(join(job, 'locks')).filter((n) => !n.endsWith('.owner') && !n.startsWith('.'));
    assert.ok(locks.length <= 2, `claims left: ${locks.join(' ')}`);

    // Nothing left to stop: a second --now finds no worker and says so.
    const again = await runPiecework(['stop', job, '--now', '--hosts', writeHostsFile(cluster.hosts.slice(0, 2)), ...sshArgs(cluster)]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /\bnone\s+no worker of this job running/);
  });

  void test('host keys: unknown refused without --accept-new-host-keys, changed always refused, unreachable reported; the others start', async (t) => {
    t.after(() => runCleanups());
    const at = join(makeTempDir('mnt'), 'share');
    cleanHostState();
    const cluster = await createHosts(3);
    pinBridgeAddress();
    const [h0, h1, h2] = cluster.hosts as [(typeof cluster.hosts)[0], (typeof cluster.hosts)[0], (typeof cluster.hosts)[0]];
    const { job, expected } = makeSharedJob(cluster.head.shareDir, 'keys', 12);
    const dir = makeTempDir('known');
    const known = (name: string, lines: string[]): string => {
      const path = join(dir, name);
      writeFileSync(path, lines.map((l) => `${l}\n`).join(''));
      return path;
    };
    const entry = (s: { sshd: { knownHostsPath: string } }): string => readFileSync(s.sshd.knownHostsPath, 'utf8').split('\n')[0]!;
    h2.cut();
    const hostsFile = writeHostsFile([h0, h1, h2]);
    const command = ['--', 'sh', '-c', 'sleep 0.2; tr a-z A-Z'];

    // h1 is not in known_hosts: refused, and nothing is written; h2 is gone: unreachable.
    const partial = known('partial', [entry(cluster.head), entry(h0)]);
    const before = readFileSync(partial, 'utf8');
    const first = await runPiecework(['launch', job, '--hosts', hostsFile, ...sshArgs(cluster, partial), ...mountArgs(cluster, at), '-j', '1', '--json', ...command]);
    assert.equal(first.code, 1, first.stderr);
    const firstReport = JSON.parse(first.stdout) as { hosts: HostResult[] };
    assert.deepEqual(firstReport.hosts.map((h) => h.status), ['started', 'host-key-unknown', 'unreachable'], first.stderr);
    assert.match(first.stderr, /host key of root@\S+ is not known \(ssh-ed25519 SHA256:/);
    assert.match(first.stderr, /hint: .*--accept-new-host-keys/);
    assert.equal(readFileSync(partial, 'utf8'), before, 'an unknown key is never recorded without the flag');

    // A changed key is refused even with --accept-new-host-keys, loudly.
    const wrong = readFileSync(h0.sshd.knownHostsPath, 'utf8').split('\n')[0]!.split(' ')[1]!;
    const changed = known('changed', [entry(cluster.head), `[${h1.address}]:${h1.sshd.port} ssh-ed25519 ${wrong}`]);
    const second = await runPiecework(['launch', job, '--hosts', writeHostsFile([h1]), ...sshArgs(cluster, changed), ...mountArgs(cluster, at), '-j', '1', '--accept-new-host-keys', ...command]);
    assert.equal(second.code, 1, second.stderr);
    assert.match(second.stderr, /host-key-changed\s+HOST KEY OF root@\S+ HAS CHANGED — refusing to connect/);
    assert.match(second.stderr, /hint: .*ssh-keygen -R/);

    // Accepting new keys: h1's key is recorded (hashed), and it starts.
    const third = await runPiecework(['launch', job, '--hosts', writeHostsFile([h1]), ...sshArgs(cluster, partial), ...mountArgs(cluster, at), '-j', '1', '--accept-new-host-keys', ...command]);
    assert.equal(third.code, 0, third.stderr);
    assert.match(third.stderr, /new host key recorded in .*partial \(ssh-ed25519 SHA256:/);
    assert.match(readFileSync(partial, 'utf8'), /^\|1\|\S+ ssh-ed25519 \S+$/m);

    await waitUntil(async () => (await runPiecework(['verify', job])).code === 0, 30_000, 'the job to complete');
    assert.equal((await runPiecework(['merge', job])).stdout, expected);
    for (const host of [h0, h1]) await waitUntil(() => workersOnHost(host).length === 0, 15_000, `the workers on ${host.name} to exit`);
  });
});
