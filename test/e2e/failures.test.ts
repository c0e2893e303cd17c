import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runPiecework } from '../helpers/cli.js';
import { filesUnder, readJson } from '../helpers/job.js';
import { waitUntil } from '../helpers/wait.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-failures-${process.pid}-`));
after(() => fs.rm(root, { recursive: true, force: true }));

async function makeJob(name: string, lines: string[], per = 1): Promise<string> {
  const input = path.join(root, `${name}.txt`);
  await fs.writeFile(input, lines.join('\n') + '\n');
  const result = await runPiecework(['split', input, '--lines', String(per), '--into', path.join(root, name)]);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.trim();
}

// Fails on chunks whose line is "bad", with a message on stderr.
const picky = ['sh', '-c', 'read line; if [ "$line" = bad ]; then echo "cannot handle $line" >&2; exit 3; fi; echo "ok $line"'];

test('a failing chunk is retried, then recorded as failed for good; work exits 1 and verify says why', async () => {
  const job = await makeJob('retry', ['a', 'bad', 'c']);
  const work = await runPiecework(['work', job, '-j', '2', '--retries', '2', '--', ...picky]);
  assert.equal(work.code, 1, work.stderr);
  assert.match(work.stderr, /failed chunk 000001 \(attempt 3, no retries left\): exit 3/);
  assert.match(work.stderr, /1 chunk failed for good/);
  const record = await readJson<{ attempts: number; maxAttempts: number; exitCode: number; stderrTail: string; reason: string }>(path.join(job, 'failed', '000001.json'));
  assert.equal(record.attempts, 3);
  assert.equal(record.maxAttempts, 3);
  assert.equal(record.exitCode, 3);
  assert.match(record.stderrTail, /cannot handle bad/);
  assert.deepEqual(filesUnder(path.join(job, 'out')), ['000000', '000002']);

  const verify = await runPiecework(['verify', job]);
  assert.equal(verify.code, 3);
  assert.match(verify.stderr, /failed for good: 1/);
  assert.match(verify.stderr, /1× exit 3 \(e\.g\. chunk 000001\)/);
  assert.match(verify.stderr, /cannot handle bad/);
  const json = JSON.parse((await runPiecework(['verify', job, '--json'])).stdout) as { complete: boolean; missing: string[]; failed: { chunk: string; final: boolean }[] };
  assert.equal(json.complete, false);
  assert.deepEqual(json.missing, ['000001']);
  assert.deepEqual(json.failed.map((f) => [f.chunk, f.final]), [['000001', true]]);
  assert.equal((await runPiecework(['verify', job, '--missing'])).stdout, '000001\n');

  // A rerun does not retry a chunk that failed for good…
  const again = await runPiecework(['work', job, '--', ...picky]);
  assert.equal(again.code, 1);
  assert.equal((await readJson<{ attempts: number }>(path.join(job, 'failed', '000001.json'))).attempts, 3);
  // …until the user requeues it; a fixed command then completes the job.
  const requeue = await runPiecework(['verify', job, '--requeue']);
  assert.match(requeue.stderr, /1 exhausted failure record/);
  assert.deepEqual(filesUnder(path.join(job, 'failed')), []);
  const fixed = await runPiecework(['work', job, '--', 'sed', 's/^/ok /']);
  assert.equal(fixed.code, 0, fixed.stderr);
  assert.equal((await runPiecework(['merge', job])).stdout, 'ok a\nok bad\nok c\n');
});

test('a command that is not found stops the worker (exit 127), records the chunk, and verify says why', async () => {
  const job = await makeJob('notfound', ['a', 'b', 'c', 'd']);
  const work = await runPiecework(['work', job, '-j', '1', '--', 'no-such-command-pw', '--x']);
  assert.equal(work.code, 127);
  assert.match(work.stderr, /command not found: no-such-command-pw/);
  assert.doesNotMatch(work.stderr, /\n\s+at /, 'no stack trace');
  const failed = filesUnder(path.join(job, 'failed'));
  assert.equal(failed.length, 1, 'one chunk recorded, not the whole job burned');
  const verify = await runPiecework(['verify', job]);
  assert.equal(verify.code, 3);
  assert.match(verify.stderr, /command not found: no-such-command-pw \(exit 127\)/);
  assert.deepEqual(filesUnder(path.join(job, 'locks')), []);
});

test('a command that exits 0 without writing {out} has failed', async () => {
  const job = await makeJob('noout', ['a']);
  const work = await runPiecework(['work', job, '--retries', '0', '--', 'true', '{out}']);
  assert.equal(work.code, 1);
  assert.match(work.stderr, /wrote no output to \{out\}/);
  assert.deepEqual(filesUnder(path.join(job, 'out')), []);
});

test('--timeout kills the whole process tree of a chunk and records it', async () => {
  const job = await makeJob('timeout', ['a']);
  const marker = `pw-timeout-${process.pid}`;
  const started = Date.now();
  const work = await runPiecework(['work', job, '--timeout', '1', '--retries', '0', '--', 'sh', '-c', `sleep 300 & sleep 301; echo ${marker}`]);
  assert.equal(work.code, 1, work.stderr);
  assert.ok(Date.now() - started < 60_000);
  const record = await readJson<{ timedOut: boolean; reason: string }>(path.join(job, 'failed', '000000.json'));
  assert.equal(record.timedOut, true);
  assert.match(record.reason, /timed out after 1\.0s/);
  const { execFileSync } = await import('node:child_process');
  // Killed, if not yet reaped: a process the kill reached can linger a few ms on a busy host
  // (seen in a full run: `sleep 300` still listed, its siblings already zombies). A live
  // survivor is still listed after the wait.
  const live = () =>
    execFileSync('ps', ['-eo', 'pid=,stat=,args='])
      .toString()
      .split('\n')
      .map((line) => /^\s*(\d+)\s+(\S+)\s+(.*)$/.exec(line))
      .filter((m): m is RegExpExecArray => m !== null && /^sleep 30[01]$/.test(m[3]!) && !m[2]!.startsWith('Z'))
      .map((m) => Number(m[1]));
  await waitUntil(() => live().length === 0, 5000, 'the timed-out tree to be gone').catch(() => {});
  const survivors = live();
  // A survivor is killed here all the same, and described: its group, parent, cgroup and the
  // signals it ignores say which of the worker's kills missed it (seen once in a full run).
  const described = survivors.map((pid) => {
    const read = (file: string) => {
      try {
        return readFileSync(`/proc/${pid}/${file}`, 'utf8');
      } catch {
        return '';
      }
    };
    const stat = read('stat').split(') ')[1]?.split(' ') ?? [];
    const sigIgn = /SigIgn:\s*(\S+)/.exec(read('status'))?.[1];
    const sigBlk = /SigBlk:\s*(\S+)/.exec(read('status'))?.[1];
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
    return `pid ${pid} ppid ${stat[1]} pgid ${stat[2]} sid ${stat[3]} cgroup ${read('cgroup').trim()} SigIgn ${sigIgn} SigBlk ${sigBlk}`;
  });
  assert.deepEqual(described, [], 'no grandchild survives');
});

test('verify --check finds bad outputs; --requeue removes them so that work redoes them', async () => {
  const job = await makeJob('check', ['1', '2', '3', '4']);
  assert.equal((await runPiecework(['work', job, '--', 'cat'])).code, 0);
  await fs.writeFile(path.join(job, 'out', '000002'), 'garbage\n');
  const check = ['sh', '-c', 'grep -qx "[0-9]*" "$1" || { echo "not a number: $(cat "$1")" >&2; exit 1; }', 'sh', '{out}'];
  const verify = await runPiecework(['verify', job, '--check', '--', ...check]);
  assert.equal(verify.code, 1, verify.stderr);
  assert.match(verify.stderr, /000002: exit 1: not a number: garbage/);
  const requeue = await runPiecework(['verify', job, '--check', '--requeue', '--', ...check]);
  assert.match(requeue.stderr, /removed 1 bad output/);
  assert.equal((await runPiecework(['verify', job])).code, 3);
  assert.equal((await runPiecework(['work', job, '--', 'cat'])).code, 0);
  assert.equal((await runPiecework(['verify', job, '--check', '--', ...check])).code, 0);
});
