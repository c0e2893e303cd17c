// A dropped mount is not an empty job (invariant 6), on real hosts: three namespace hosts work
// on the head's share through sshfs mounts that `launch --mount` made. On one host the sshfs
// process dies (the mount answers ENOTCONN); on another it dies and the dead mount is cleared
// (the mount point is a bare, empty folder again). Their workers must stop with a clear error
// (exit 4, naming the mount) that reaches the host's local log, never write into the bare
// folder, and the third host finishes the job with nothing lost. Needs root.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isAlive, runCleanups, runSync } from '../helpers/cleanup.js';
import { runPiecework } from '../helpers/cli.js';
import { createHosts } from '../helpers/netns-hosts.js';
import { cleanHostState, logWithExit, makeSharedJob, mountArgs, pinBridgeAddress, sshArgs, sshfsOnHost, workersOnHost, writeHostsFile } from '../helpers/remote-job.js';
import { waitUntil } from '../helpers/sshd.js';
import { makeTempDir } from '../helpers/tmp.js';
import type { HostResult } from '../../src/remote/launch.js';

after(() => runCleanups());

void test('workers on a host whose sshfs mount drops stop with exit 4 and a clear error, write nothing into the bare mount point, and the job completes elsewhere', async (t) => {
  t.after(() => runCleanups());
  const at = join(makeTempDir('mnt'), 'share');
  cleanHostState();
  const cluster = await createHosts(3);
  pinBridgeAddress();
  const [dead, bare, healthy] = cluster.hosts as [(typeof cluster.hosts)[0], (typeof cluster.hosts)[0], (typeof cluster.hosts)[0]];
  const { job, name, expected } = makeSharedJob(cluster.head.shareDir, 'drop', 120);
  const launch = await runPiecework(['launch', job, '--hosts', writeHostsFile(cluster.hosts), ...sshArgs(cluster), ...mountArgs(cluster, at), '-j', '2', '--json', '--', 'sh', '-c', 'sleep 0.3; tr a-z A-Z']);
  assert.equal(launch.code, 0, launch.stderr);
  const report = JSON.parse(launch.stdout) as { hosts: HostResult[] };
  const resultOf = (host: typeof dead): HostResult => report.hosts.find((h) => h.host.includes(`@${host.address}:`))!;
  // Seen from here (the root mount namespace) the mount point is the bare folder under every host's mount.
  assert.deepEqual(readdirSync(at), [], 'the bare mount point starts empty');

  const outDir = join(job, 'out');
  await waitUntil(() => existsSync(outDir) && readdirSync(outDir).length >= 20, 60_000, '20 outputs');
  const [deadSshfs] = sshfsOnHost(dead);
  const [bareSshfs] = sshfsOnHost(bare);
  assert.ok(deadSshfs && bareSshfs, 'each host has its sshfs');
  const droppedAt = Date.now();
  process.kill(deadSshfs, 'SIGKILL');
  // The other mount goes away altogether: detached where it lives (the mount namespace of the
  // host's sshd, which its sessions share), then its sshfs dies. Paths there now lead into the
  // bare folder.
  const cleared = runSync(['nsenter', '-t', String(bare.sshd.pid), '-m', '--', 'fusermount3', '-u', '-z', at]);
  assert.ok(cleared.ok, cleared.output);
  process.kill(bareSshfs, 'SIGKILL');

  for (const host of [dead, bare]) {
    const pid = resultOf(host).pid!;
    await waitUntil(() => !isAlive(pid), 20_000, `the worker on ${host.name} to stop`);
    t.diagnostic(`${host === dead ? 'ENOTCONN mount' : 'bare mount point'}: worker stopped ${((Date.now() - droppedAt) / 1000).toFixed(1)} s after the drop`);
    assert.deepEqual(workersOnHost(host), []);
    const log = await logWithExit(resultOf(host).localLog);
    assert.match(log, /piecework-worker: exit=4\n$/, `exit 4 on ${host.name}:\n${log}`);
    assert.match(log, /mount/, `the error names the mount:\n${log}`);
    t.diagnostic(`${host.name}: ${log.split('\n').find((l) => /no piecework job|mount looks/.test(l)) ?? ''}`);
  }
  assert.match(await logWithExit(resultOf(dead).localLog), /the file system answered (ENOTCONN|EIO|ECONNABORTED): the mount looks gone/);
  // Paths looked up after the lazy unmount lead into the bare folder (job.json is gone), but a
  // call on a file the worker had open there (its log, a chunk's input) reaches the dead sshfs:
  // whichever the worker meets first is its message. Both name the mount and exit 4.
  assert.match(await logWithExit(resultOf(bare).localLog), /no piecework job at .*(job\.json disappeared while working: the mount may have dropped|the file system answered (ENOTCONN|EIO|ECONNABORTED): the mount looks gone)/);

  // The healthy host takes over the chunks the others held (stale after 5 s) and finishes.
  await waitUntil(async () => {
    assert.deepEqual(readdirSync(at), [], 'nothing was written into the bare mount point');
    return (await runPiecework(['verify', job])).code === 0;
  }, 90_000, 'the job to complete from the healthy host');
  t.diagnostic(`job complete ${((Date.now() - droppedAt) / 1000).toFixed(1)} s after the drop`);
  assert.equal((await runPiecework(['merge', job])).stdout, expected, 'nothing lost: merge equals the serial run');
  assert.deepEqual(readdirSync(at), [], 'nothing was written into the bare mount point');
  assert.ok(!existsSync(join(at, name)));
  await waitUntil(() => workersOnHost(healthy).length === 0, 15_000, 'the healthy host\'s worker to exit');
  assert.match(await logWithExit(resultOf(healthy).localLog), /piecework-worker: exit=0\n$/);
});
