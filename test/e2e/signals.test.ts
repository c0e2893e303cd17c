import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { collect, killGroup, runPiecework, startPiecework } from '../helpers/cli.js';
import { filesUnder, lineJob } from '../helpers/job.js';
import { waitUntil } from '../helpers/wait.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-signals-${process.pid}-`));
after(() => fs.rm(root, { recursive: true, force: true }));

const makeJob = (name: string, count: number) => lineJob(root, name, count);

const claimsOf = (job: string) => filesUnder(path.join(job, 'locks')).filter((n) => n.endsWith('.owner'));

test('SIGTERM: the worker stops its commands, releases its claims, removes temp files and exits 143', async () => {
  const job = await makeJob('term', 6);
  const marker = `pw-term-${process.pid}`;
  // A sleep no other process on the machine has (other test runs may sleep 120 too).
  const sleep = `sleep 120.${process.pid}`;
  const worker = startPiecework(['work', job, '-j', '2', '--', 'sh', '-c', `${sleep}; echo ${marker}`]);
  const done = collect(worker);
  try {
    await waitUntil(() => claimsOf(job).length === 2, 20_000, 'two claims');
    const signalled = Date.now();
    process.kill(worker.pid!, 'SIGTERM');
    const result = await done;
    assert.equal(result.code, 143, result.stderr);
    assert.ok(Date.now() - signalled < 10_000, 'exits promptly');
    assert.deepEqual(filesUnder(path.join(job, 'locks')), [], 'claims released');
    assert.deepEqual(filesUnder(path.join(job, '.tmp')), [], 'temp files removed');
    assert.deepEqual(filesUnder(path.join(job, 'failed')), [], 'an interruption is not a failure');
    assert.doesNotMatch(execFileSync('ps', ['-eo', 'args']).toString(), new RegExp(sleep.replace('.', '\\.')), 'children stopped');
    const heartbeat = JSON.parse(await fs.readFile(path.join(job, 'workers', filesUnder(path.join(job, 'workers'))[0]!), 'utf8')) as { state: string };
    assert.equal(heartbeat.state, 'exited');
  } finally {
    killGroup(worker);
  }
});

test('SIGINT exits 130', async () => {
  const job = await makeJob('int', 2);
  const worker = startPiecework(['work', job, '-j', '1', '--', 'sleep', '120']);
  const done = collect(worker);
  try {
    await waitUntil(() => claimsOf(job).length === 1, 20_000, 'a claim');
    process.kill(worker.pid!, 'SIGINT');
    assert.equal((await done).code, 130);
  } finally {
    killGroup(worker);
  }
});

test('a STOP file drains every worker after its current chunks; stop --clear lets work resume', async () => {
  const job = await makeJob('stopfile', 8);
  const workers = [1, 2].map(() => startPiecework(['work', job, '-j', '1', '--', 'sh', '-c', 'sleep 1.5; cat']));
  const results = workers.map(collect);
  try {
    await waitUntil(() => claimsOf(job).length === 2, 20_000, 'claims from both workers');
    const stop = await runPiecework(['stop', job]);
    assert.equal(stop.code, 0);
    assert.match(stop.stderr, /2 live workers will exit after their current chunks/);
    for (const result of await Promise.all(results)) {
      assert.equal(result.code, 3, result.stderr);
      assert.match(result.stderr, /STOP file/);
    }
    const done = filesUnder(path.join(job, 'out')).length;
    assert.ok(done >= 2 && done < 8, `${done} outputs: the running chunks finished, no new ones started`);
    assert.deepEqual(filesUnder(path.join(job, 'locks')), []);
    const refused = await runPiecework(['work', job, '--', 'cat']);
    assert.equal(refused.code, 3);
    assert.match(refused.stderr, /STOP file/);
    assert.equal((await runPiecework(['stop', '--clear', job])).code, 0);
    assert.equal((await runPiecework(['work', job, '--', 'cat'])).code, 0);
  } finally {
    workers.forEach((w) => killGroup(w));
  }
});

test('a closed stdout (`work --events | head`) stops the worker cleanly with 141', async () => {
  const job = await makeJob('pipe', 500);
  const { spawnSync } = await import('node:child_process');
  const { piecework } = await import('../helpers/cli.js');
  const result = spawnSync('bash', ['-c', 'node "$1" work "$2" --events -- cat | head -1 > /dev/null; echo "${PIPESTATUS[0]}"', 'bash', piecework, job], { encoding: 'utf8' });
  assert.equal(result.stdout.trim(), '141', result.stderr);
  assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
  assert.deepEqual(filesUnder(path.join(job, 'locks')), []);
  assert.deepEqual(filesUnder(path.join(job, '.tmp')).filter((n) => !n.startsWith('.')), []);
});
