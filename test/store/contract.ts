/**
 * The job store contract (src/core/store/job-store.ts): one set of cases that every store passes.
 * `storeContract(fixture)` registers them; each store's test file gives a fixture that opens a
 * store on a job address and names the job's folder as this host sees it on disk (to tamper with
 * it the way another host or a dropped mount would).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { JobMissingError, PieceworkError } from '../../src/core/errors.js';
import type { ClaimOwner, JobStore } from '../../src/core/store/job-store.js';
import { fixedMountClock } from '../../src/core/store/mount-clock.js';
import { waitUntil } from '../helpers/wait.js';

export interface StoreFixture {
  /** Open a store (its own connection, for a network store) on a job address. */
  open(address: string): Promise<JobStore>;
  /** A fresh job: its address, and its folder on this host's disk. Nothing is made yet. */
  newJob(name: string): { address: string; backing: string };
  /** Whether operations after close() must fail (a network store); a folder store may go on. */
  closeEndsOperations: boolean;
  /** Whether staged inputs are copies that release() deletes. */
  stagesCopies: boolean;
  /** Contract cases this store is known to fail (registered as todo, reported, not hidden). */
  knownGaps?: string[];
}

const settings = { staleMs: 4000, updateMs: 1000 };
const owner = (name: string): ClaimOwner => ({ workerId: `${name}.${process.pid}`, host: name, pid: process.pid, bootId: '' });

let counter = 0;

export function storeContract(getFixture: () => StoreFixture): void {
  const gap = (name: string) => (getFixture().knownGaps?.includes(name) ? { todo: `known gap: ${name}` } : {});
  const opened: JobStore[] = [];
  /** A job with its folders made (by the store, as split makes them) and a marker. */
  async function job(marker = true): Promise<{ store: JobStore; address: string; backing: string; open: () => Promise<JobStore> }> {
    const fixture = getFixture();
    const { address, backing } = fixture.newJob(`job${process.pid}-${++counter}`);
    const open = async () => {
      const store = await fixture.open(address);
      opened.push(store);
      return store;
    };
    const store = await open();
    await store.createJobFolders();
    if (marker) await store.writeMarker('{"v":1}\n');
    return { store, address, backing, open };
  }
  const closeAll = async () => {
    for (const store of opened.splice(0)) await store.close().catch(() => {});
  };

  test('marker: missing job → JobMissingError; written → read back; info has size and server time', async (t) => {
    t.after(closeAll);
    const fixture = getFixture();
    const { address } = fixture.newJob(`nojob${process.pid}-${++counter}`);
    const none = await fixture.open(address);
    opened.push(none);
    await assert.rejects(none.readMarker(), JobMissingError);
    assert.equal(await none.markerInfo(), undefined);
    assert.equal(await none.topLevel(), undefined);
    const { store } = await job(false);
    await assert.rejects(store.readMarker(), JobMissingError);
    await store.writeMarker('{"job":true}\n');
    assert.equal(await store.readMarker(), '{"job":true}\n');
    const info = await store.markerInfo();
    assert.equal(info?.size, 13);
    assert.equal(info?.directory, false);
    assert.ok(Math.abs(info.mtimeMs - Date.now()) < 5000, 'server time near ours on loopback');
    assert.ok((await store.topLevel())?.includes('job.json'));
  });

  test('missing names read as undefined: read, readPrefix, readStream, lookup', async (t) => {
    t.after(closeAll);
    const { store } = await job();
    assert.equal(await store.read('out', '000001'), undefined);
    assert.equal(await store.read('out', 'nogroup/000001'), undefined);
    assert.equal(await store.readPrefix('locks', '000001.owner', 32), undefined);
    assert.equal(await store.readStream('out', '000001'), undefined);
    assert.equal(await store.lookup('failed', '000001.json'), undefined);
    assert.equal(await store.remove('out', '000001'), false);
  });

  test('write, read, readPrefix, readStream, append, lookup', async (t) => {
    t.after(closeAll);
    const { store } = await job();
    const big = Buffer.alloc(1_500_000, 7);
    big.write('start', 0);
    big.write('end', big.length - 3);
    await store.write('out', '000001', big);
    assert.deepEqual(await store.read('out', '000001'), big);
    assert.equal((await store.readPrefix('out', '000001', 5))?.toString(), 'start');
    const stream = await store.readStream('out', '000001');
    const parts: Buffer[] = [];
    for await (const part of stream!) parts.push(part as Buffer);
    assert.deepEqual(Buffer.concat(parts), big);
    const info = await store.lookup('out', '000001');
    assert.equal(info?.size, big.length);
    assert.equal(info?.directory, false);
    await store.append('logs', 'w.log', 'one\n');
    await store.append('logs', 'w.log', 'two\n');
    assert.equal((await store.read('logs', 'w.log'))?.toString(), 'one\ntwo\n');
    await store.write('workers', 'empty', '');
    assert.equal((await store.read('workers', 'empty'))?.length, 0);
  });

  test('write is atomic: concurrent writers on two stores, a reader never sees a mix', gap('estale-on-concurrent-replace'), async (t) => {
    t.after(closeAll);
    const { store, open } = await job();
    const other = await open();
    const a = Buffer.alloc(400_000, 'a');
    const b = Buffer.alloc(300_000, 'b');
    await store.write('top', 'shared', a);
    let stop = false;
    const reads: number[] = [];
    const reader = (async () => {
      while (!stop) {
        const data = await store.read('top', 'shared');
        assert.ok(data, 'the file is always there');
        const first = data[0]!;
        assert.ok(data.length === (first === 97 ? a.length : b.length) && data.every((x) => x === first), 'old or new bytes, never a mix');
        reads.push(data.length);
      }
    })();
    const writes = [];
    for (let i = 0; i < 8; i++) writes.push(store.write('top', 'shared', a), other.write('top', 'shared', b));
    await Promise.all(writes);
    stop = true;
    await reader;
    assert.ok(reads.length > 0);
  });

  test('list is recursive, folders included; remove and removeFolder', async (t) => {
    t.after(closeAll);
    const { store } = await job();
    await store.write('out', 'g1/000001', 'x');
    await store.write('out', 'g1/sub/000003', 'x');
    await store.write('out', '000002', 'y');
    const listed = (await store.list('out')).sort((x, y) => x.name.localeCompare(y.name));
    assert.deepEqual(listed, [
      { name: '000002', directory: false },
      { name: 'g1', directory: true },
      { name: 'g1/000001', directory: false },
      { name: 'g1/sub', directory: true },
      { name: 'g1/sub/000003', directory: false },
    ]);
    assert.deepEqual(await store.list('failed'), []);
    assert.equal(await store.removeFolder('out', 'g1'), false, 'not empty');
    assert.equal(await store.remove('out', 'g1/000001'), true);
    assert.equal(await store.remove('out', 'g1/sub/000003'), true);
    assert.equal(await store.removeFolder('out', 'g1/sub'), true);
    assert.equal(await store.removeFolder('out', 'g1'), true);
    assert.equal(await store.removeFolder('out', 'g1'), false, 'gone');
    assert.deepEqual(await store.list('out'), [{ name: '000002', directory: false }]);
  });

  test('list of a folder of 2345 entries: each exactly once (a network store reads it in many batches)', async (t) => {
    t.after(closeAll);
    const { store, backing } = await job();
    const names = Array.from({ length: 2345 }, (_, i) => String(i).padStart(6, '0'));
    // Made on this host's side: 2345 uploads would only slow the test.
    await Promise.all(names.map((name) => fs.writeFile(path.join(backing, 'out', name), '')));
    await fs.mkdir(path.join(backing, 'out', 'group'));
    const listed = await store.list('out');
    assert.equal(listed.length, names.length + 1);
    assert.deepEqual(listed.filter((e) => !e.directory).map((e) => e.name).sort(), names);
    assert.deepEqual(listed.filter((e) => e.directory), [{ name: 'group', directory: true }]);
  });

  test('group folders are made on write and commit, never the job folder', async (t) => {
    t.after(closeAll);
    const { store, backing } = await job();
    await store.write('failed', 'a/b/000001.json', '{}');
    assert.equal((await store.lookup('failed', 'a/b'))?.directory, true);
    const space = await store.openLaneSpace('w', 0);
    const pending = space.newOutput('g/000001', '.txt');
    await fs.writeFile(pending.path, 'out\n');
    assert.equal(await pending.commit(), 'committed');
    assert.equal((await store.read('out', 'g/000001.txt'))?.toString(), 'out\n');
    // The job folder goes away (a dropped mount, a removed job): nothing may rebuild it.
    await fs.rm(backing, { recursive: true, force: true });
    await assert.rejects(store.write('out', '000002', 'x'));
    await assert.rejects(store.write('out', 'h/000002', 'x'));
    await assert.rejects(store.writeMarker('{}'));
    const late = space.newOutput('k/000003', '');
    await fs.writeFile(late.path, 'late\n').catch(() => {});
    assert.notEqual(await late.commit().catch(() => 'failed'), 'committed');
    await assert.rejects(fs.stat(backing), 'the job folder was not made again');
  });

  test('concurrent writes into a group folder none of them made yet all land', async (t) => {
    t.after(closeAll);
    const { store } = await job();
    // Lanes write at once into a new group (logs/stderr/…): a call that failed before another
    // made the folder tries again instead of taking the folder for gone.
    const names = Array.from({ length: 8 }, (_, i) => `stderr/g/00000${i}`);
    await Promise.all(names.map((name) => store.write('logs', name, name)));
    for (const name of names) assert.equal((await store.read('logs', name))?.toString(), name);
  });

  test('commit: publishes once; a folder at the temp path is not-a-file; no file is missing', async (t) => {
    t.after(closeAll);
    const { store } = await job();
    const space = await store.openLaneSpace('w', 1);
    const first = space.newOutput('000001', '');
    await fs.writeFile(first.path, 'one\n');
    assert.equal(await first.commit({ fsync: true }), 'committed');
    assert.equal((await store.read('out', '000001'))?.toString(), 'one\n');
    assert.equal(await first.commit(), 'missing', 'a second commit finds nothing to publish');
    const none = space.newOutput('000002', '');
    assert.equal(await none.commit(), 'missing');
    const folder = space.newOutput('000003', '');
    await fs.mkdir(folder.path);
    assert.equal(await folder.commit(), 'not-a-file');
    await folder.discard();
    assert.equal(await store.lookup('out', '000003'), undefined);
    const dropped = space.newOutput('000004', '');
    await fs.writeFile(dropped.path, 'x');
    await dropped.discard();
    assert.equal(await dropped.commit(), 'missing');
    // Two attempts at one chunk: the output is one of them, whole.
    const [x, y] = [space.newOutput('000005', ''), space.newOutput('000005', '')];
    await fs.writeFile(x.path, 'xxxx');
    await fs.writeFile(y.path, 'yy');
    await Promise.all([x.commit(), y.commit()]);
    assert.ok(['xxxx', 'yy'].includes((await store.read('out', '000005'))!.toString()));
    // Nothing left behind in the lane's remote temp folder.
    assert.deepEqual((await store.list('tmp')).filter((e) => !e.directory && !e.name.startsWith('.clock')), []);
    await space.close();
  });

  test('stageInput hands out a local file with the chunk', async (t) => {
    t.after(closeAll);
    const { store } = await job();
    await store.write('chunks', 'g/000001', 'input line\n');
    const staged = await store.stageInput('g/000001');
    assert.equal(await fs.readFile(staged.path, 'utf8'), 'input line\n');
    await staged.release();
    if (getFixture().stagesCopies) await assert.rejects(fs.stat(staged.path));
    assert.equal(store.localPath('out', '000001') === undefined, getFixture().stagesCopies);
  });

  test('claims are exclusive between two stores racing on the same chunks', async (t) => {
    t.after(closeAll);
    const { store, open } = await job();
    const other = await open();
    const clock = fixedMountClock(0);
    const [a, b] = await Promise.all([store.claims(settings, clock, owner('a')), other.claims(settings, clock, owner('b'))]);
    const chunks = Array.from({ length: 12 }, (_, i) => `g${i % 2}/${String(i).padStart(6, '0')}`);
    const results = await Promise.all(chunks.map((c) => Promise.all([a.claim(c, 0), b.claim(c, 0)])));
    for (const [x, y] of results) assert.equal(Number(x !== undefined) + Number(y !== undefined), 1, 'exactly one holder');
    assert.equal(await a.claim(chunks[0]!, 1), undefined, 'held claims stay held');
    for (const pair of results) for (const claim of pair) await claim?.release();
    const again = await b.claim(chunks[0]!, 0);
    assert.ok(again, 'a released chunk can be claimed again');
    await again.release();
  });

  test('a claim racing a holder that takes and releases the chunk: busy or claimed, never an error', async (t) => {
    t.after(closeAll);
    const { store, backing } = await job();
    const claims = await store.claims(settings, fixedMountClock(0), owner('a'));
    // Another host claims and releases 000003 (and a grouped chunk) as fast as it can, so that
    // a claim's mkdir finds the lock there and the look that follows finds it gone. Over SFTP that
    // mkdir fails with a bare "Failure", which was taken for an error: the worker ended.
    const locks = [path.join(backing, 'locks', '000003'), path.join(backing, 'locks', 'g', '000004')];
    await fs.mkdir(path.dirname(locks[1]!), { recursive: true });
    // A process of its own, so that its calls interleave with the store's for real.
    const holder = spawn('sh', ['-c', 'while :; do for l in "$@"; do mkdir "$l" 2>/dev/null && rmdir "$l"; done; done', 'sh', ...locks], { stdio: 'ignore' });
    let claimed = 0;
    let busy = 0;
    let rounds = 0;
    try {
      // 150 rounds, and more (up to 600) until one found the chunk held: on a loaded host the
      // holder's forks can be slow enough that 150 rounds over 10 ms round trips never meet it.
      for (; rounds < 600 && (rounds < 150 || busy === 0); rounds++) {
        for (const chunk of ['000003', 'g/000004']) {
          const claim = await claims.claim(chunk, 0);
          if (!claim) {
            busy++;
            continue;
          }
          claimed++;
          await claim.release();
        }
      }
    } finally {
      holder.kill('SIGKILL');
    }
    assert.equal(claimed + busy, 2 * rounds);
    assert.ok(busy > 0, `the race was run: some claims found the chunk held (none in ${rounds} rounds)`);
  });

  test('a job whose locks/ folder was removed (by hand): a claim is an error, not a busy chunk for ever', async (t) => {
    t.after(closeAll);
    const { store, backing } = await job();
    const claims = await store.claims(settings, fixedMountClock(0), owner('a'));
    await fs.rm(path.join(backing, 'locks'), { recursive: true });
    await assert.rejects(claims.claim('000001', 0), (error: unknown) => error instanceof Error && /ENOENT|no such file/i.test(`${(error as NodeJS.ErrnoException).code ?? ''} ${error.message}`));
  });

  test('a stale claim is taken over by the mount clock; the old holder never removes the new claim', gap('release-right-after-takeover'), async (t) => {
    t.after(closeAll);
    const { store, open, backing } = await job();
    const other = await open();
    const clock = await store.measureClock('contract');
    const [a, b] = await Promise.all([store.claims(settings, clock, owner('a')), other.claims(settings, clock, owner('b'))]);
    const held = await a.claim('000001', 0);
    assert.ok(held);
    assert.equal(await b.claim('000001', 0), undefined, 'a fresh claim is live');
    // The holder looks dead: its lock was last stamped an hour ago (server time).
    const old = new Date(Date.now() - 3600_000);
    await fs.utimes(path.join(backing, 'locks', '000001'), old, old);
    const taken = await b.claim('000001', 0);
    assert.ok(taken, 'the stale claim is taken over');
    await held.release();
    assert.equal((await store.lookup('locks', '000001'))?.directory, true, "the new holder's lock is still there");
    assert.equal(await held.stillOurs(), false);
    assert.equal(await taken.stillOurs(), true);
    assert.equal(await a.claim('000001', 0), undefined, 'the new claim is live');
    await taken.release();
    assert.equal(await store.lookup('locks', '000001'), undefined);
    assert.equal(await store.lookup('locks', '000001.owner'), undefined);
  });

  test('a holder learns of a takeover while it holds the claim', gap('takeover-within-owner-delay'), async (t) => {
    t.after(closeAll);
    const { store, open, backing } = await job();
    const other = await open();
    const clock = fixedMountClock(0);
    const [a, b] = await Promise.all([store.claims(settings, clock, owner('a')), other.claims(settings, clock, owner('b'))]);
    const held = await a.claim('000002', 0);
    assert.ok(held);
    const old = new Date(Date.now() - 3600_000);
    await fs.utimes(path.join(backing, 'locks', '000002'), old, old);
    const taken = await b.claim('000002', 0);
    assert.ok(taken);
    await waitUntil(() => held.lost !== undefined, 10_000, 'the old holder to notice the takeover');
    await held.release();
    assert.equal(await taken.stillOurs(), true);
    assert.equal((await store.lookup('locks', '000002'))?.directory, true);
    await taken.release();
  });

  test('measureClock: the server clock is this host’s on loopback; freeBytes', async (t) => {
    t.after(closeAll);
    const { store } = await job();
    const clock = await store.measureClock('probe');
    assert.ok(Math.abs(clock.offsetMs) <= 1000, `offset ${clock.offsetMs}`);
    assert.deepEqual((await store.list('workers')).filter((e) => e.name.startsWith('.clock')), [], 'probes removed');
    const free = await store.freeBytes();
    assert.ok(free === undefined || free > 0);
  });

  test('removeJobEntries removes piecework’s entries and keeps the user’s', async (t) => {
    t.after(closeAll);
    const { store } = await job();
    await store.write('out', 'g/000001', 'x');
    await store.write('top', 'STOP', '');
    await store.write('top', 'notes.txt', 'mine');
    await store.removeJobEntries();
    assert.deepEqual(await store.topLevel(), ['notes.txt']);
    await assert.rejects(store.readMarker(), JobMissingError);
  });

  test('close ends the store: later operations fail cleanly (no hang)', async () => {
    const { store } = await job();
    await store.close();
    await store.close();
    if (getFixture().closeEndsOperations) {
      await assert.rejects(store.read('top', 'job.json'), PieceworkError);
      await assert.rejects(store.lookup('out', '000001'), PieceworkError);
    } else {
      await store.lookup('out', '000001');
    }
    await closeAll();
  });
}
