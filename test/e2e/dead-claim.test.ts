/**
 * After `kill -9`, a rerun on the same host takes its own dead claims at once: the owner record
 * says this host and this boot, and its pid is gone — no need to wait out the stale period.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { collect, killGroup, startPiecework } from '../helpers/cli.js';
import { filesUnder, lineJob } from '../helpers/job.js';
import { waitUntil } from '../helpers/wait.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-dead-claim-${process.pid}-`));
const started: ChildProcess[] = [];
after(async () => {
  started.forEach((child) => killGroup(child));
  await fs.rm(root, { recursive: true, force: true });
});

test('a worker SIGKILLed mid-chunk: a rerun on the same host takes its claim at once (not after 60 s) and completes', async () => {
  const job = await lineJob(root, 'job', 1); // the default stale period: 60 s
  // The command runs long enough (> 1 s) for the claim to get its owner record.
  const first = startPiecework(['work', job, '-j', '1', '--', 'sh', '-c', 'sleep 3; cat']);
  started.push(first);
  const ended = collect(first);
  await waitUntil(() => existsSync(path.join(job, 'locks', '000000.owner')), 10_000, 'the owner record of the claim');
  const owner = JSON.parse(readFileSync(path.join(job, 'locks', '000000.owner'), 'utf8').split('\n')[1]!) as { pid: number; bootId: string };
  assert.equal(owner.pid, first.pid);
  assert.ok(owner.bootId, 'the owner record carries the boot id');
  killGroup(first, 'SIGKILL');
  await ended;
  assert.ok(existsSync(path.join(job, 'locks', '000000')), 'the dead worker left its claim');

  const began = Date.now();
  const rerun = startPiecework(['work', job, '-j', '1', '--', 'cat']);
  started.push(rerun);
  const deadline = setTimeout(() => killGroup(rerun), 30_000);
  const result = await collect(rerun);
  clearTimeout(deadline);
  const seconds = (Date.now() - began) / 1000;
  assert.equal(result.code, 0, result.stderr);
  assert.ok(seconds < 15, `the rerun took ${seconds}s; the stale period is 60 s`);
  assert.deepEqual(filesUnder(path.join(job, 'out')), ['000000']);
  assert.deepEqual(filesUnder(path.join(job, 'locks')), [], 'no claim or owner record left');
  assert.deepEqual(filesUnder(path.join(job, '.tmp')).filter((name) => name.includes('dead-claim')), []);
});
