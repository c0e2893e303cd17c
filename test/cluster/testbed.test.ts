// Proves the testbed helpers against the real thing: sshd, sshfs/FUSE, network namespaces.
// Needs root. Timing assertions are lower bounds only (a busy machine is slower, never faster).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { isAlive, leftovers, listProcesses, mountPoints, reapLeftovers, runCleanups, runTag, type Leftovers } from '../helpers/cleanup.js';
import { startDelayProxy } from '../helpers/delay-proxy.js';
import { createHosts } from '../helpers/netns-hosts.js';
import { spawnDaemon, sshArgv, startSshd, waitUntil } from '../helpers/sshd.js';
import { mountSshfs } from '../helpers/sshfs.js';
import { makeTempDir } from '../helpers/tmp.js';

const helpersDir = fileURLToPath(new URL('../helpers/', import.meta.url));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1] ?? NaN;
const ms = (x: number): string => `${x.toFixed(1)} ms`;

void describe('testbed', () => {
  // Safety net; each test also cleans after itself, pass or fail.
  after(() => runCleanups());

  void test('two sshfs mounts of one folder: a file written via A is found by stat via B; mkdir races give one EEXIST', async (t) => {
    t.after(() => runCleanups());
    const sshd = await startSshd();
    const a = await mountSshfs({ sshd, mountPoint: join(makeTempDir('a'), 'mnt') });
    const b = await mountSshfs({ sshd, mountPoint: join(makeTempDir('b'), 'mnt') });
    t.diagnostic(`sshfs mount (loopback): ${ms(a.mountMs)}, ${ms(b.mountMs)}`);

    writeFileSync(join(a.mountPoint, 'from-a'), 'hello');
    assert.equal(statSync(join(b.mountPoint, 'from-a')).size, 5);
    assert.equal(readFileSync(join(sshd.root, 'from-a'), 'utf8'), 'hello', 'the mounts serve sshd.root');

    // Sequential: the name exists on the server, so B must refuse.
    await mkdir(join(a.mountPoint, 'lock-seq'));
    await assert.rejects(mkdir(join(b.mountPoint, 'lock-seq')), { code: 'EEXIST' });

    // Racing: for each name exactly one of the two mounts wins, the other gets EEXIST.
    for (let i = 0; i < 20; i++) {
      const results = await Promise.allSettled([mkdir(join(a.mountPoint, `lock-${i}`)), mkdir(join(b.mountPoint, `lock-${i}`))]);
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, `lock-${i}: one winner`);
      const lost = results.find((r) => r.status === 'rejected');
      assert.equal((lost?.reason as NodeJS.ErrnoException | undefined)?.code, 'EEXIST');
    }
  });

  void test('delay proxy adds at least 2 × delayMs per round trip, keeps bytes in order, and works as a child process', async (t) => {
    t.after(() => runCleanups());
    const echo = await listen(createServer((s) => s.pipe(s)));
    t.after(() => echo.close());
    const echoPort = portOf(echo);

    // In-process: latency floor.
    const delayMs = 20;
    const proxy = await startDelayProxy({ targetPort: echoPort, delayMs });
    t.after(() => proxy.close());
    const sock = await open(proxy.port);
    const rtts: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      sock.write('ping');
      await new Promise((r) => sock.once('data', r));
      rtts.push(performance.now() - t0);
    }
    t.diagnostic(`echo RTT through ${delayMs} ms/way proxy: median ${ms(median(rtts))}`);
    for (const rtt of rtts) assert.ok(rtt >= 2 * delayMs, `round trip ${ms(rtt)} < ${2 * delayMs} ms`);

    // Order: 4 MB of varied bytes, written in many chunks, comes back identical.
    const payload = Buffer.alloc(4 << 20);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7919) >>> 8;
    const back: Buffer[] = [];
    let got = 0;
    const done = new Promise<void>((resolve) =>
      sock.on('data', (d: Buffer) => {
        back.push(d);
        got += d.length;
        if (got >= payload.length) resolve();
      }),
    );
    for (let off = 0; off < payload.length; off += 65536) sock.write(payload.subarray(off, off + 65536));
    await done;
    assert.ok(Buffer.concat(back).equals(payload), 'bytes changed or reordered');
    sock.destroy();

    // Standalone child (how benchmarks use it), carrying sshfs: a mkdir is at least one round trip.
    const sshd = await startSshd();
    const logPath = join(makeTempDir('proxy'), 'proxy.log');
    const child = spawnDaemon(['node', '--import', 'tsx', join(helpersDir, 'delay-proxy.ts'), '--target', String(sshd.port), '--delay', '5'], logPath);
    let port = 0;
    await waitUntil(() => {
      port = Number(/^(\d+)$/m.exec(readFileSync(logPath, 'utf8'))?.[1] ?? 0);
      if (!isAlive(child.pid)) throw new Error(`proxy died: ${readFileSync(logPath, 'utf8')}`);
      return port > 0;
    }, 15_000, 'delay proxy child to print its port');
    const direct = await mountSshfs({ sshd, mountPoint: join(makeTempDir('direct'), 'mnt') });
    const slow = await mountSshfs({ sshd, port, mountPoint: join(makeTempDir('slow'), 'mnt') });
    const timeMkdirs = async (root: string, tag: string): Promise<number[]> => {
      const times: number[] = [];
      for (let i = 0; i < 10; i++) {
        const t0 = performance.now();
        await mkdir(join(root, `${tag}-${i}`));
        times.push(performance.now() - t0);
      }
      return times;
    };
    const directTimes = await timeMkdirs(direct.mountPoint, 'direct');
    const slowTimes = await timeMkdirs(slow.mountPoint, 'slow');
    t.diagnostic(`sshfs mount through 10 ms RTT proxy: ${ms(slow.mountMs)}; mkdir median: direct ${ms(median(directTimes))}, through proxy ${ms(median(slowTimes))}`);
    for (const x of slowTimes) assert.ok(x >= 10, `mkdir through a 10 ms RTT took ${ms(x)}`);
    // Same folder both ways: through the proxy port the host key was verified by its alias.
    assert.ok(statSync(join(direct.mountPoint, 'slow-0')).isDirectory());
  });

  void test('namespace hosts: ssh to each other and to the head, mount the share, see files; cut kills everything on a host', async (t) => {
    t.after(() => runCleanups());
    const cluster = await createHosts(2);
    const [h0, h1] = cluster.hosts as [(typeof cluster.hosts)[0], (typeof cluster.hosts)[0]];
    writeFileSync(join(cluster.head.shareDir, 'from-head'), 'head\n');

    // ssh host → host and host → head, strict host-key checking with the cluster's known_hosts.
    const onH1 = await h0.exec(sshArgv(h1.sshd, 'ip -o -4 addr show dev eth0', { knownHostsPath: cluster.knownHostsPath }));
    assert.match(onH1.stdout, new RegExp(`inet ${h1.address.replaceAll('.', '\\.')}/24`));
    const onHead = await h1.exec(sshArgv(cluster.head.sshd, `cat ${cluster.head.shareDir}/from-head`, { knownHostsPath: cluster.knownHostsPath }));
    assert.equal(onHead.stdout, 'head');

    const m0 = await h0.mountShare();
    const m1 = await h1.mountShare();
    t.diagnostic(`sshfs mount inside a namespace host: ${ms(m0.mountMs)}, ${ms(m1.mountMs)}`);
    assert.equal((await h0.exec(['cat', join(m0.mountPoint, 'from-head')])).stdout, 'head');
    await h0.exec(['sh', '-c', `echo h0 > ${m0.mountPoint}/from-h0`]);
    assert.equal((await h1.exec(['stat', '-c', '%s', join(m1.mountPoint, 'from-h0')])).stdout, '3');
    assert.equal(readFileSync(join(cluster.head.shareDir, 'from-h0'), 'utf8'), 'h0\n');

    // A host's mount lives in its own mount namespace: invisible to us and to the other host.
    assert.ok(!mountPoints().includes(m0.mountPoint), 'h0 mount leaked into the root namespace');
    assert.equal((await h1.exec(['grep', '-c', m0.mountPoint, '/proc/self/mounts'], { reject: false })).stdout, '0');
    // …and a fresh `ip netns exec` into h0's own namespace does not see it either (new mount
    // namespace each time): that is why host.exec enters the anchor's namespaces with nsenter.
    const freshExec = await execa('ip', ['netns', 'exec', h0.name, 'grep', '-c', m0.mountPoint, '/proc/self/mounts'], { reject: false });
    assert.equal(freshExec.stdout, '0');
    assert.equal((await h0.exec(['grep', '-c', m0.mountPoint, '/proc/self/mounts'])).stdout, '1');

    // Cut h0: its long-running process and its sshfs die, its namespace is empty, h1 carries on.
    const sleeper = h0.exec(['sleep', '600'], { reject: false });
    // Until nsenter has exec'd sleep it may not be in the namespace yet, and cut() would miss it.
    await waitUntil(() => readFileSync(`/proc/${sleeper.pid ?? 0}/comm`, 'utf8').trim() === 'sleep', 5000, 'sleeper');
    h0.cut();
    const ended = await sleeper;
    assert.equal(ended.signal, 'SIGKILL');
    assert.ok(!isAlive(m0.pid), 'sshfs of a cut host still runs');
    assert.ok(!isAlive(h0.sshd.pid), 'sshd of a cut host still runs');
    assert.equal((await execa('ip', ['netns', 'pids', h0.name])).stdout, '');
    const unreachable = await h1.exec(sshArgv(h0.sshd, 'true', { extra: ['ConnectTimeout=1'] }), { reject: false });
    assert.notEqual(unreachable.exitCode, 0, 'a cut host still answers ssh');
    assert.equal((await h1.exec(['cat', join(m1.mountPoint, 'from-h0')])).stdout, 'h0');
  });

  void test('cleanup leaves no process, mount, namespace, link or temp dir — also when the test process crashes', async (t) => {
    t.after(() => runCleanups());
    // Build one of everything, then clean. (tsx's esbuild service is a child of ours too: baseline.)
    const baseline = new Set(descendants(process.pid));
    const sshd = await startSshd();
    await mountSshfs({ sshd, mountPoint: join(makeTempDir('c'), 'mnt') });
    const cluster = await createHosts(1);
    const hostMount = await cluster.hosts[0]!.mountShare();
    const before = leftovers();
    assert.ok(before.processes.length >= 4 && before.netns.length === 1 && before.links.length === 2 && before.tempDirs.length > 0, JSON.stringify(before));
    const ours = descendants(process.pid).filter((p) => !baseline.has(p));
    ours.push(hostMount.pid, cluster.hosts[0]!.anchorPid);
    const cmdlines = new Map(ours.map((p) => [p, cmdlineOf(p)]));

    await runCleanups();
    assertNothingLeft(leftovers());
    assert.deepEqual(ours.filter(isAlive).map((p) => `${p} ${cmdlines.get(p)}`), [], 'a process we started survived cleanup');

    // A crashing test process (uncaught error, or SIGTERM) still cleans through its exit hooks.
    for (const how of ['throw', 'SIGTERM'] as const) {
      const childTag = await runChildThatDies(how);
      t.after(() => reapLeftovers(childTag)); // only matters if the assertion below fails
      const left = await settle(() => leftovers(childTag));
      assertNothingLeft(left, `child that died by ${how}`);
    }
  });
});

function assertNothingLeft(l: Leftovers, who = runTag): void {
  assert.deepEqual(l, { processes: [], mounts: [], netns: [], links: [], tempDirs: [] }, `${who} left things behind`);
}

/** Spawn a process that builds an sshd, a mount and a namespace host, then dies; returns its tag. */
async function runChildThatDies(how: 'throw' | 'SIGTERM'): Promise<string> {
  const code = `
    import { startSshd } from ${JSON.stringify(join(helpersDir, 'sshd.ts'))};
    import { mountSshfs } from ${JSON.stringify(join(helpersDir, 'sshfs.ts'))};
    import { createHosts } from ${JSON.stringify(join(helpersDir, 'netns-hosts.ts'))};
    import { makeTempDir } from ${JSON.stringify(join(helpersDir, 'tmp.ts'))};
    const sshd = await startSshd();
    await mountSshfs({ sshd, mountPoint: makeTempDir('m') + '/mnt' });
    await (await createHosts(1)).hosts[0].mountShare();
    console.log('ready');
    if (${JSON.stringify(how)} === 'throw') throw new Error('deliberate crash');
    setInterval(() => {}, 1000);
  `;
  const child = spawn('node', ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await Promise.race([waitUntil(() => out.includes('ready'), 30_000, 'crash child to get ready'), exited]);
  assert.ok(out.includes('ready'), `crash child failed early: ${out}`);
  if (how === 'SIGTERM') child.kill('SIGTERM');
  await exited;
  return `pw${child.pid}`;
}

/** Leftovers can take a moment to vanish (a killed process is reaped by init, not by us). */
async function settle(look: () => Leftovers): Promise<Leftovers> {
  let l = look();
  const deadline = Date.now() + 3000;
  while (Object.values(l).some((v: unknown[]) => v.length > 0) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    l = look();
  }
  return l;
}

function descendants(root: number): number[] {
  const procs = listProcesses();
  const found = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of procs) {
      if (found.has(p.ppid) && !found.has(p.pid)) {
        found.add(p.pid);
        grew = true;
      }
    }
  }
  found.delete(root);
  return [...found];
}

function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
  } catch {
    return '?';
  }
}

async function listen(server: Server): Promise<Server> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

function portOf(server: Server): number {
  const addr = server.address();
  assert.ok(typeof addr === 'object' && addr !== null);
  return addr.port;
}

async function open(port: number): Promise<Socket> {
  const sock = connect({ port, host: '127.0.0.1', noDelay: true });
  await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  return sock;
}
