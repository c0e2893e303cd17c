/**
 * Two workers on two separate sshfs mounts of one folder, with sshfs's default caching (listings
 * and attributes cached 20 s — DESIGN.md): the job completes, the merge equals the serial run,
 * and almost no chunk runs twice (target: at most 1 in 100). Every chunk's command appends its
 * name to a ledger outside the mount, so a chunk run twice shows up there.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCleanups } from '../helpers/cleanup.js';
import { startSshd } from '../helpers/sshd.js';
import { mountSshfs } from '../helpers/sshfs.js';
import { makeTempDir } from '../helpers/tmp.js';
import { collect, killGroup, runPiecework, startPiecework } from '../helpers/cli.js';
import { filesUnder } from '../helpers/job.js';

after(() => runCleanups());

test('two workers on two default sshfs mounts: complete, merge equals the serial run, ≤1% run twice', async (t) => {
  const sshd = await startSshd();
  const a = await mountSshfs({ sshd, mountPoint: join(makeTempDir('mount-a'), 'mnt') });
  const b = await mountSshfs({ sshd, mountPoint: join(makeTempDir('mount-b'), 'mnt') });
  const scratch = makeTempDir('two-mounts');
  const lines = Array.from({ length: 400 }, (_, i) => `row ${i} ${'y'.repeat(i % 30)}`);
  const input = join(scratch, 'input.txt');
  writeFileSync(input, lines.join('\n') + '\n');
  const ledger = join(scratch, 'ledger');
  writeFileSync(ledger, '');

  const split = await runPiecework(['split', input, '--lines', '1', '--into', join(a.mountPoint, 'job')]);
  assert.equal(split.code, 0, split.stderr);
  const command = ['sh', '-c', `echo "$PIECEWORK_NAME" >> ${ledger}; tr a-z A-Z`];
  const workers = [a, b].map((mount) => startPiecework(['work', join(mount.mountPoint, 'job'), '-j', '2', '--quiet', '--', ...command]));
  t.after(() => workers.forEach((w) => killGroup(w)));
  const results = await Promise.all(workers.map(collect));
  for (const result of results) assert.equal(result.code, 0, result.stderr);

  // Read through the server's own folder: the ground truth, no cache in the way.
  const job = join(sshd.root, 'job');
  assert.equal(filesUnder(join(job, 'out')).length, 400, 'one output per chunk');
  const merged = await runPiecework(['merge', job]);
  assert.equal(merged.stdout, lines.join('\n').toUpperCase() + '\n', 'merge equals the serial run');
  const runs = readFileSync(ledger, 'utf8').trim().split('\n');
  const duplicates = runs.length - new Set(runs).size;
  t.diagnostic(`chunks run twice: ${duplicates} of 400`);
  assert.ok(duplicates <= 4, `${duplicates} chunks ran twice (target: at most 1 in 100)`);
  // And through the second mount, a merge from another host agrees once its listing is fresh.
  const fromB = await runPiecework(['verify', join(b.mountPoint, 'job')]);
  assert.ok(fromB.code === 0 || fromB.code === 3, fromB.stderr);
});
