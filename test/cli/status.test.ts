import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { collect, killGroup, runPiecework, startPiecework } from '../helpers/cli.js';
import type { JobStatus } from '../../src/core/status.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-cli-status-${process.pid}-`));
const job = path.join(root, 'job');
const started: ReturnType<typeof startPiecework>[] = [];

// Chunk 000003 fails with a message on stderr; the others are copied, slowly enough to be seen.
const picky = ['sh', '-c', 'if [ "$PIECEWORK_NAME" = 000003 ]; then echo "no luck with 000003" >&2; exit 5; fi; sleep 0.1; cat'];

before(async () => {
  const input = path.join(root, 'in.txt');
  await fs.writeFile(input, Array.from({ length: 12 }, (_, i) => `line ${i}`).join('\n') + '\n');
  assert.equal((await runPiecework(['split', input, '--into', job, '--lines', '1'])).code, 0);
  // Two real workers on one job, as two hosts' workers would be.
  const workers = [0, 1].map(() => startPiecework(['work', job, '-j', '2', '--retries', '0', '--', ...picky]));
  started.push(...workers);
  const results = await Promise.all(workers.map(collect));
  assert.ok(results.some((r) => r.code === 1), results.map((r) => r.stderr).join('\n'));
});

after(async () => {
  for (const child of started) killGroup(child);
  await fs.rm(root, { recursive: true, force: true });
});

test('status prints counts, the host table and the failure reason on stdout, and exits 0', async () => {
  const result = await runPiecework(['status', job]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stderr, '');
  assert.match(result.stdout, /: idle — no live worker/);
  assert.match(result.stdout, /91\.7% {2}11 of 12 chunks done/);
  assert.match(result.stdout, /running 0 · pending 0 · failed 1/);
  assert.match(result.stdout, /HOST +STATE +WORKERS +LANES +BUSY +DONE +FAILED +RATE +LAST BEAT/);
  assert.match(result.stdout, new RegExp(`${os.hostname().replace(/[^A-Za-z0-9_-]/g, '_')} +exited +0 +0 +0 +11 +[12] `));
  assert.match(result.stdout, /1× exit 5 {2}\(e\.g\. chunk 000003; 1 for good\)/);
  assert.match(result.stdout, /latest stderr \(000003 on .*\): no luck with 000003/);
  assert.doesNotMatch(result.stdout, /\u001b\[/, 'no escape codes when stdout is not a terminal');
});

test('status --json is one JSON report with the same numbers', async () => {
  const result = await runPiecework(['status', job, '--json']);
  assert.equal(result.code, 0, result.stderr);
  const status = JSON.parse(result.stdout) as JobStatus;
  assert.deepEqual(status.counts, { chunks: 12, done: 11, running: 0, stale: 0, failed: 1, pending: 0, retrying: 0 });
  assert.equal(status.complete, false);
  assert.equal(status.etaSeconds, null);
  assert.deepEqual(status.workers, { alive: 0, exited: 2, dead: 0, lanes: 0 });
  assert.equal(status.hosts.length, 1);
  assert.equal(status.hosts[0]!.done, 11);
  assert.ok(status.rate.chunksPerSecond > 0);
  assert.equal(status.throughput.reduce((sum, m) => sum + m.done, 0), 11);
  assert.equal(status.recentFailures[0]!.chunk, '000003');
  assert.match(status.recentFailures[0]!.stderrTail, /no luck with 000003/);
});

test('status --watch, not on a terminal, prints a fresh report every interval and Ctrl-C ends it with 0', async () => {
  // A job nobody works on yet: chunks are pending, so the watch goes on until Ctrl-C.
  const input = path.join(root, 'waiting.txt');
  await fs.writeFile(input, 'a\nb\n');
  const waiting = path.join(root, 'waiting');
  assert.equal((await runPiecework(['split', input, '--into', waiting, '--lines', '1'])).code, 0);
  const child = startPiecework(['status', waiting, '--watch', '--interval', '0.2']);
  started.push(child);
  const result = collect(child);
  let reports = 0;
  child.stdout!.on('data', (d: Buffer) => (reports += (d.toString().match(/chunks done/g) ?? []).length));
  while (reports < 3) await new Promise((resolve) => setTimeout(resolve, 50));
  child.kill('SIGINT');
  const { code, stdout } = await result;
  assert.equal(code, 0);
  assert.doesNotMatch(stdout, /\u001b\[/);
  assert.ok(stdout.split('\n\n').length >= 3, 'reports are separated by a blank line');
});

test('status --watch ends by itself with 1 when nothing is left to do but chunks failed for good', async () => {
  const child = startPiecework(['status', job, '--watch', '--interval', '0.2', '--json']);
  started.push(child);
  const timer = setTimeout(() => killGroup(child), 10_000);
  const result = await collect(child);
  clearTimeout(timer);
  assert.equal(result.code, 1, 'the status verify gives a job with chunks failed for good');
  const reports = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as JobStatus);
  assert.equal(reports.length, 1);
  assert.equal(reports[0]!.counts.failed, 1);
});

test('status --watch ends with 3 when a STOP file is there and no worker is left', async () => {
  const input = path.join(root, 'stopped.txt');
  await fs.writeFile(input, 'a\nb\n');
  const stopped = path.join(root, 'stopped');
  assert.equal((await runPiecework(['split', input, '--into', stopped, '--lines', '1'])).code, 0);
  assert.equal((await runPiecework(['stop', stopped])).code, 0);
  const result = await runPiecework(['status', stopped, '--watch', '--interval', '0.2']);
  assert.equal(result.code, 3, result.stderr);
  assert.match(result.stdout, /stopped \(STOP file\)/);
});

test('status --watch ends by itself once the job is complete', async () => {
  await runPiecework(['verify', job, '--requeue']);
  const fixed = await runPiecework(['work', job, '--', 'cat']);
  assert.equal(fixed.code, 0, fixed.stderr);
  const result = await runPiecework(['status', job, '--watch', '--json']);
  assert.equal(result.code, 0);
  const reports = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as JobStatus);
  assert.equal(reports.length, 1);
  assert.equal(reports[0]!.complete, true);
});

test('a missing job exits 4 with the core’s explanation; a bad --interval is a usage error', async () => {
  const missing = await runPiecework(['status', path.join(root, 'nope')]);
  assert.equal(missing.code, 4);
  assert.match(missing.stderr, /no piecework job at .*nope/);
  const bad = await runPiecework(['status', job, '--watch', '--interval', '0']);
  assert.equal(bad.code, 2);
});
