/**
 * Everyday use of exit statuses (issue 12): grep's "no match" as success, the stderr of chunks
 * that succeeded, and stopping a job early when failures pile up.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fs, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runPiecework } from '../helpers/cli.js';
import { filesUnder, lineJob } from '../helpers/job.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-exits-${process.pid}-`));
after(() => fs.rm(root, { recursive: true, force: true }));

test('--success-exit 0,1: grep finding nothing in a chunk is an empty output, not a failure retried three times', async () => {
  const job = await lineJob(root, 'grep', 6); // chunks "0" … "5"
  const strict = await runPiecework(['work', job, '-j', '2', '--retries', '0', '--', 'grep', '3']);
  assert.equal(strict.code, 1, 'without it, grep\'s 1 is a failure');
  await runPiecework(['verify', job, '--requeue']);
  const work = await runPiecework(['work', job, '-j', '2', '--success-exit', '0,1', '--', 'grep', '3']);
  assert.equal(work.code, 0, work.stderr);
  assert.equal((await runPiecework(['merge', job])).stdout, '3\n');
  assert.equal(readFileSync(path.join(job, 'out', '000000'), 'utf8'), '');
  // 2 (grep's "error") is still a failure.
  const errors = await lineJob(root, 'grep-error', 2);
  const broken = await runPiecework(['work', errors, '--retries', '0', '--success-exit', '0,1', '--', 'grep', '3', '/no/such/file']);
  assert.equal(broken.code, 1);
  assert.match(broken.stderr, /exit 2/);
});

test('--success-exit with a bad value: a usage error with a hint, no stack', async () => {
  const job = await lineJob(root, 'bad-exit', 1);
  for (const value of ['0,x', '256', '']) {
    const result = await runPiecework(['work', job, '--success-exit', value, '--', 'cat']);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /^piecework: --success-exit .*\n {2}e\.g\. --success-exit 0,1/);
    assert.doesNotMatch(result.stderr, /\n\s+at /);
  }
});

test("the stderr of a successful chunk is kept, its tail, in logs/stderr/<chunk> — only when there is some; verify and merge ignore it", async () => {
  const job = await lineJob(root, 'stderr', 4);
  const command = ['sh', '-c', 'if [ "$PIECEWORK_NAME" != 000002 ]; then echo "note on $PIECEWORK_NAME" >&2; fi; cat'];
  const work = await runPiecework(['work', job, '-j', '2', '--', ...command]);
  assert.equal(work.code, 0, work.stderr);
  assert.deepEqual(filesUnder(path.join(job, 'logs', 'stderr')), ['000000', '000001', '000003']);
  assert.equal(readFileSync(path.join(job, 'logs', 'stderr', '000001'), 'utf8'), 'note on 000001\n');
  assert.ok(!existsSync(path.join(job, 'out', '000001.stderr')));
  assert.equal((await runPiecework(['verify', job])).code, 0);
  assert.equal((await runPiecework(['merge', job])).stdout, '0\n1\n2\n3\n');
  // Only the tail: a chatty command does not fill the job folder.
  const chatty = await lineJob(root, 'chatty', 1);
  assert.equal((await runPiecework(['work', chatty, '--', 'sh', '-c', 'seq 1 100000 >&2; cat'])).code, 0);
  const kept = readFileSync(path.join(chatty, 'logs', 'stderr', '000000'), 'utf8');
  assert.ok(kept.length <= 4096 && kept.endsWith('99999\n100000\n'), `${kept.length} bytes`);
});

test('--halt-after N: after N chunks failed for good the worker writes STOP, every worker stops, exit 1', async () => {
  const job = await lineJob(root, 'halt', 20);
  const work = await runPiecework(['work', job, '-j', '1', '--retries', '0', '--halt-after', '3', '--', 'sh', '-c', 'exit 7']);
  assert.equal(work.code, 1, work.stderr);
  assert.match(work.stderr, /halted by --halt-after/);
  // Like parallel's --halt soon: chunks already under way (a lane prepares its next chunk while
  // one runs, and records a failure while the next runs) finish; nothing new starts.
  const failed = filesUnder(path.join(job, 'failed')).length;
  assert.ok(failed >= 3 && failed <= 5, `${failed} chunks failed`);
  const stop = JSON.parse(readFileSync(path.join(job, 'STOP'), 'utf8')) as { reason: string };
  assert.match(stop.reason, /--halt-after 3: 3 chunks failed for good/);
  // Another worker (another host) takes no chunk either, until `stop --clear`.
  const other = await runPiecework(['work', job, '--', 'cat']);
  assert.equal(other.code, 3);
  assert.match(other.stderr, /STOP file/);
  // Its clock was measured while the job was read: the probe files are gone all the same.
  const probes = ['workers', 'logs', '.tmp'].flatMap((dir) => readdirSync(path.join(job, dir)).filter((name) => name.startsWith('.clock-')));
  assert.deepEqual(probes, []);
  const bad = await runPiecework(['work', job, '--halt-after', '0', '--', 'cat']);
  assert.equal(bad.code, 2);
});
