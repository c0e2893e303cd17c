/**
 * The fault suite: "do this to a job → expect this", each case ending with the invariants —
 * one complete output per chunk or a clear error, merge byte-identical to a serial run, nothing
 * deleted that was not asked for. Real processes, real files: each case runs the built CLI.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { constants as fsConstants, promises as fs, existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { runPiecework, startPiecework, collect, killGroup, nobodyCannotRun } from '../helpers/cli.js';
import { filesUnder, lineJob } from '../helpers/job.js';
import { makeTempDir } from '../helpers/tmp.js';
import { runCleanups } from '../helpers/cleanup.js';
import { waitUntil } from '../helpers/wait.js';

const root = makeTempDir('faults');
after(() => runCleanups());

/** The serial result of `cat` over a line job of `count` lines: what merge must give. */
const serial = (count: number) => Array.from({ length: count }, (_, i) => `${i}\n`).join('');

/** A job of `count` one-line chunks, worked to completion with cat. */
async function doneJob(name: string, count: number): Promise<string> {
  const job = await lineJob(root, name, count);
  const work = await runPiecework(['work', job, '-j', '2', '-q', '--', 'cat']);
  assert.equal(work.code, 0, work.stderr);
  return job;
}

const noStack = (stderr: string) => assert.doesNotMatch(stderr, /\n\s+at |this is a bug/, `no stack trace, no "bug": ${stderr}`);

test('stray files in out/ (a .bak, a swap file, a copied output) are never merged as a chunk', async () => {
  const job = await doneJob('stray', 6);
  await fs.writeFile(path.join(job, 'out/000003.bak'), 'STRAY BAK\n');
  await fs.writeFile(path.join(job, 'out/.000002.swp'), 'SWAP\n');
  await fs.copyFile(path.join(job, 'out/000001'), path.join(job, 'out/000001 copy'));
  await fs.writeFile(path.join(job, 'out/000009'), 'NOT A CHUNK OF THIS JOB\n');
  const merged = await runPiecework(['merge', job]);
  assert.equal(merged.code, 0, merged.stderr);
  assert.equal(merged.stdout, serial(6));
  const verify = await runPiecework(['verify', job, '--json']);
  assert.equal(verify.code, 0, verify.stderr);
  assert.equal(JSON.parse(verify.stdout).done, 6);
  // Whoever copied them there learns that they count for nothing; the job is still complete.
  assert.deepEqual(JSON.parse(verify.stdout).stray, ['000001 copy', '000003.bak', '000009', '.000002.swp']);
  const told = await runPiecework(['verify', job]);
  assert.equal(told.code, 0, told.stderr);
  assert.match(told.stderr, /complete — 6\/6 chunks have output\n {2}ignored: 4 files in out\/ that are no chunk's output \(out\/000001 copy, out\/000003\.bak, out\/000009, …\) — merge never reads them\n/);
});

test('an output deleted by hand is missing, by name: verify says incomplete, merge refuses, --partial skips it', async () => {
  const job = await doneJob('lost-output', 5);
  // A stray name that would match a loose "chunk number + anything" rule must not stand in for it.
  await fs.rename(path.join(job, 'out/000002'), path.join(job, 'out/000002.old'));
  const verify = await runPiecework(['verify', job, '--missing']);
  assert.equal(verify.code, 3);
  assert.equal(verify.stdout, '000002\n');
  const merge = await runPiecework(['merge', job]);
  assert.equal(merge.code, 3);
  const partial = await runPiecework(['merge', job, '--partial']);
  assert.equal(partial.stdout, '0\n1\n3\n4\n');
});

test('a chunk file deleted by hand is still a chunk: verify reports it, work says its input is missing', async () => {
  const job = await lineJob(root, 'lost-chunk', 4);
  await fs.rm(path.join(job, 'chunks/000001'));
  const verify = await runPiecework(['verify', job, '--json']);
  assert.equal(verify.code, 3);
  assert.equal(JSON.parse(verify.stdout).chunks, 4, 'the job did not shrink');
  const work = await runPiecework(['work', job, '-j', '1', '--retries', '0', '--', 'cat']);
  assert.equal(work.code, 1);
  assert.match(work.stderr, /1 chunk failed for good/);
  const failure = JSON.parse(readFileSync(path.join(job, 'failed/000001.json'), 'utf8'));
  assert.match(failure.reason, /input missing/);
});

test('a job folder missing a folder of its own (locks/ or out/ removed by hand): the worker stops naming that folder, not "this is a bug", and never waits for ever', async () => {
  for (const folder of ['locks', 'out']) {
    const job = await lineJob(root, `no-${folder}`, 4);
    await fs.rm(path.join(job, folder), { recursive: true });
    const work = await runPiecework(['work', job, '-j', '1', '--', 'cat']);
    assert.equal(work.code, 1, work.stderr);
    // The folder itself: a commit's rename names its source (a temp file) in its ENOENT.
    assert.ok(work.stderr.includes(`part of the job folder is missing (${path.join(job, folder)}):`), work.stderr);
    assert.doesNotMatch(work.stderr, /this is a bug/);
    assert.ok(!existsSync(path.join(job, 'out')) || filesUnder(path.join(job, 'out')).length === 0, 'nothing committed');
  }
});

test('a worker with another --ext or --stale than the job refuses before claiming anything', async () => {
  const job = await lineJob(root, 'mixed-flags', 3);
  const ext = await runPiecework(['work', job, '--ext', '.json', '--', 'cat']);
  assert.equal(ext.code, 2);
  assert.match(ext.stderr, /--ext \.json: this job's outputs are named <chunk> \(no extension\)/);
  const stale = await runPiecework(['work', job, '--stale', '5', '--', 'cat']);
  assert.equal(stale.code, 2);
  assert.match(stale.stderr, /stale period is 60s/);
  noStack(ext.stderr + stale.stderr);
  assert.deepEqual(filesUnder(path.join(job, 'out')), []);
  assert.deepEqual(filesUnder(path.join(job, 'locks')), []);
});

test('split --ext names outputs for every worker; merge reads exactly those names', async () => {
  const input = path.join(root, 'ext.txt');
  await fs.writeFile(input, 'a\nb\n');
  const job = (await runPiecework(['split', input, '--lines', '1', '--ext', 'txt', '--into', path.join(root, 'ext')])).stdout.trim();
  assert.equal((await runPiecework(['work', job, '-q', '--', 'cat'])).code, 0);
  assert.deepEqual(filesUnder(path.join(job, 'out')), ['000000.txt', '000001.txt']);
  await fs.writeFile(path.join(job, 'out/000000'), 'WRONG NAME\n');
  assert.equal((await runPiecework(['merge', job])).stdout, 'a\nb\n');
});

test('a validator whose name is mistyped deletes nothing: verify --check --requeue fails and says the check did not run', async () => {
  const job = await doneJob('typo-validator', 4);
  const before = filesUnder(path.join(job, 'out'));
  for (const validator of [['no-such-validator-xyz', '{out}'], ['sh', '-c', 'exec no-such-validator-xyz']]) {
    const verify = await runPiecework(['verify', job, '--check', '--requeue', '--', ...validator]);
    // 127 as a shell says it, not 1: a script that requeues on "bad outputs" must not act on a typo.
    assert.equal(verify.code, 127, verify.stderr);
    assert.match(verify.stderr, /did not run/);
    noStack(verify.stderr);
    assert.deepEqual(filesUnder(path.join(job, 'out')), before, 'every output is still there');
  }
  // Not executable: 126, and nothing removed either.
  const notExecutable = path.join(root, 'validator-not-executable.sh');
  await fs.writeFile(notExecutable, '#!/bin/sh\nexit 1\n', { mode: 0o644 });
  const denied = await runPiecework(['verify', job, '--check', '--requeue', '--', notExecutable, '{out}']);
  assert.equal(denied.code, 126, denied.stderr);
  assert.match(denied.stderr, /did not run.*not executable/);
  assert.deepEqual(filesUnder(path.join(job, 'out')), before, 'every output is still there');
  // A validator that judges still requeues what it finds bad.
  const judge = await runPiecework(['verify', job, '--check', '--requeue', '--', 'sh', '-c', 'grep -qv 2 "$1"', 'sh', '{out}']);
  assert.equal(judge.code, 3, judge.stderr);
  assert.deepEqual(filesUnder(path.join(job, 'out')), ['000000', '000001', '000003']);
});

test('a validator that passes but writes 120 MB on stderr judges the output good: --requeue removes nothing', async () => {
  const job = await doneJob('chatty-validator', 2);
  const before = filesUnder(path.join(job, 'out'));
  // Before: execa's 100 MB stderr buffer ran over, the run counted as failed with exit 0, and
  // --requeue removed every good output (with 3 GB of memory and the whole stderr as its reason).
  const chatty = ['sh', '-c', 'head -c 120000000 /dev/zero | tr "\\0" e >&2; exit 0'];
  const verify = await runPiecework(['verify', job, '--check', '--requeue', '--', ...chatty]);
  assert.equal(verify.code, 0, verify.stderr.slice(0, 2000));
  assert.deepEqual(filesUnder(path.join(job, 'out')), before, 'every output is still there');
  // One that fails says why in its last stderr line, cut to a readable length.
  const failing = ['sh', '-c', 'head -c 1000000 /dev/zero | tr "\\0" e >&2; echo >&2; echo "line 3: not JSON" >&2; exit 1'];
  const judged = await runPiecework(['verify', job, '--check', '--', ...failing]);
  assert.equal(judged.code, 1, judged.stderr);
  assert.match(judged.stdout + judged.stderr, /000000: exit 1: line 3: not JSON/);
  assert.ok((judged.stdout + judged.stderr).length < 5000, 'the report stays short');
});

test('a worker started beside a live one running another command says so; status lists the commands and what each did', async () => {
  const job = await lineJob(root, 'two-commands', 12);
  // The first worker is slow, so that it is alive when the second starts with another command.
  const slow = startPiecework(['work', job, '-j', '1', '-q', '--', 'sh', '-c', 'sleep 0.5; cat']);
  const slowDone = collect(slow);
  await waitUntil(() => readdirSync(path.join(job, 'out')).length > 0, 20_000, 'the first worker to commit a chunk');
  const other = await runPiecework(['work', job, '-j', '1', '-q', '--', 'cat']);
  assert.equal(other.code, 0, other.stderr);
  assert.match(other.stderr, /warning: a live worker of this job runs another command: \["sh","-c","sleep 0.5; cat"\] .*this one \["cat"\]/);
  assert.equal((await slowDone).code, 0);
  const status = await runPiecework(['status', job]);
  assert.match(status.stdout, /this job's workers ran 2 different commands/);
  assert.match(status.stdout, /\n {4}cat {2}\(1 worker, \d+ done, on /);
  const json = JSON.parse((await runPiecework(['status', job, '--json'])).stdout) as { commands: { command: string[]; done: number }[] };
  assert.deepEqual(json.commands.map((use) => use.command).sort(), [['cat'], ['sh', '-c', 'sleep 0.5; cat']]);
  assert.equal(json.commands.reduce((sum, use) => sum + use.done, 0), 12);
  // One command only: no such section, no warning.
  const alone = await lineJob(root, 'one-command', 2);
  const work = await runPiecework(['work', alone, '-q', '--', 'cat']);
  assert.doesNotMatch(work.stderr, /warning/);
  assert.doesNotMatch((await runPiecework(['status', alone])).stdout, /commands/);
});

test('a TMPDIR that does not exist is named as such, not taken for a job folder removed by hand; nothing is claimed', async () => {
  const job = await lineJob(root, 'bad-tmpdir', 3);
  const env = { TMPDIR: path.join(root, `no-such-tmp-${process.pid}`) };
  for (const args of [['work', job, '--', 'cat'], ['work', job, '--warm', '--', 'cat']]) {
    const work = await runPiecework(args, { env });
    assert.equal(work.code, 1, work.stderr);
    assert.match(work.stderr, /cannot make a lane's stderr file in the local temp folder .*no-such-tmp-\d+ \(ENOENT\)\n {2}set TMPDIR to an existing local folder/);
    assert.doesNotMatch(work.stderr, /job folder is missing/);
    noStack(work.stderr);
  }
  assert.deepEqual(filesUnder(path.join(job, 'locks')), []);
  assert.deepEqual(filesUnder(path.join(job, 'out')), []);
  assert.equal((await runPiecework(['work', job, '-q', '--', 'cat'])).code, 0);
  const reduce = await runPiecework(['merge', job, '--reduce', '--', 'cat', '{list}'], { env });
  assert.equal(reduce.code, 1, reduce.stderr);
  assert.match(reduce.stderr, /cannot make the reducer's \{list\} file in the local temp folder/);
  noStack(reduce.stderr);
});

test('heartbeat records edited by hand, damaged or of another version do not break status, stop or verify', async () => {
  const job = await doneJob('odd-heartbeats', 3);
  const { id } = JSON.parse(readFileSync(path.join(job, 'job.json'), 'utf8')) as { id: string };
  const now = new Date().toISOString();
  // Before: "unexpected error: record.recent.filter is not a function … this is a bug".
  await fs.writeFile(path.join(job, 'workers', 'typed-wrong.json'), JSON.stringify({ worker: 'x.1', host: 'x', pid: 1, jobId: id, state: 'running', updatedAt: now, recent: 'x', current: 7, lanes: 'many', command: 'ls', warm: [{ lane: 0 }] }));
  await fs.writeFile(path.join(job, 'workers', 'fields-missing.json'), JSON.stringify({ jobId: id, state: 'running', updatedAt: now }));
  await fs.writeFile(path.join(job, 'workers', 'not-json.json'), '{"worker": "y.2", ');
  await fs.writeFile(path.join(job, 'workers', 'a-list.json'), '[1, 2]');
  const status = await runPiecework(['status', job]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /complete/);
  assert.match(status.stdout, /\n {2}x +alive/, 'the readable part of a record still counts');
  const json = await runPiecework(['status', job, '--json']);
  assert.equal(json.code, 0, json.stderr);
  assert.equal((JSON.parse(json.stdout) as { workers: { alive: number } }).workers.alive, 1);
  for (const args of [['verify', job], ['stop', job], ['stop', job, '--clear']]) {
    const run = await runPiecework(args);
    assert.equal(run.code, 0, `${args.join(' ')}: ${run.stderr}`);
    noStack(run.stderr);
  }
  noStack(status.stderr + json.stderr);
});

test('a job.json edited by hand with bad types is a clear error at start, not a failure on every chunk', async () => {
  const job = await lineJob(root, 'bad-manifest', 3);
  const manifestPath = path.join(job, 'job.json');
  const good = readFileSync(manifestPath, 'utf8');
  for (const [edit, expected] of [
    [(m: Record<string, unknown>) => (m.groups = 'all'), /"groups" must be a list/],
    [(m: Record<string, unknown>) => (m.chunkCount = 7), /"chunkCount" \(7\) must equal/],
    [(m: Record<string, unknown>) => (m.staleSeconds = '60'), /"staleSeconds" must be a number/],
    [(m: Record<string, unknown>) => (m.ext = 'json'), /"ext" must be/],
  ] as const) {
    const manifest = JSON.parse(good) as Record<string, unknown>;
    edit(manifest);
    await fs.writeFile(manifestPath, JSON.stringify(manifest));
    for (const command of [['work', job, '--', 'cat'], ['verify', job], ['merge', job], ['status', job]]) {
      const run = await runPiecework(command);
      assert.equal(run.code, 1, `${command[0]}: ${run.stderr}`);
      assert.match(run.stderr, expected);
      noStack(run.stderr);
    }
  }
  await fs.writeFile(manifestPath, good);
  assert.deepEqual(filesUnder(path.join(job, 'failed')), [], 'no chunk was charged for it');
});

test('durations a timer cannot hold are usage errors (--timeout 3000000 would kill every chunk at once)', async () => {
  const job = await lineJob(root, 'durations', 2);
  for (const args of [['work', job, '--timeout', '3000000', '--', 'cat'], ['work', job, '--timeout', '-1', '--', 'cat'], ['status', job, '--interval', '1e12']]) {
    const run = await runPiecework(args);
    assert.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    noStack(run.stderr);
  }
  assert.deepEqual(filesUnder(path.join(job, 'failed')), []);
});

test('a damaged failure record does not reset the attempt count: the chunk counts as failed for good until requeued', async () => {
  const job = await lineJob(root, 'damaged-record', 3);
  await fs.writeFile(path.join(job, 'failed/000001.json'), '{"attempts": 2, "maxAtt');
  const work = await runPiecework(['work', job, '-j', '1', '--', 'cat']);
  assert.equal(work.code, 1);
  assert.ok(!existsSync(path.join(job, 'out/000001')), 'not run again from attempt 1');
  const verify = await runPiecework(['verify', job]);
  assert.match(verify.stderr, /damaged/);
  assert.equal((await runPiecework(['verify', job, '--requeue'])).code, 3);
  assert.equal((await runPiecework(['work', job, '-q', '--', 'cat'])).code, 0);
  assert.equal((await runPiecework(['merge', job])).stdout, serial(3));
});

test('merge -o inside the job folder is refused; merge | head ends quietly', async () => {
  // More than a pipe holds (64 KiB), in few chunks: cat meets the closed pipe mid-merge.
  const input = path.join(root, 'wide.txt');
  await fs.writeFile(input, Array.from({ length: 400 }, (_, i) => `${i} ${'x'.repeat(1000)}`).join('\n') + '\n');
  const job = (await runPiecework(['split', input, '--lines', '100', '--into', path.join(root, 'merge-edges')])).stdout.trim();
  assert.equal((await runPiecework(['work', job, '-q', '--', 'cat'])).code, 0);
  const inside = await runPiecework(['merge', job, '-o', path.join(job, 'out', 'all.txt')]);
  assert.equal(inside.code, 2);
  assert.match(inside.stderr, /inside the job folder/);
  assert.ok(!existsSync(path.join(job, 'out', 'all.txt')));
  const child = startPiecework(['merge', job]);
  const first = await new Promise<string>((resolve) => child.stdout!.once('data', (d: Buffer) => resolve(d.toString())));
  child.stdout!.destroy(); // the reader had enough, as `| head -1` does
  const result = await collect(child);
  assert.ok(first.startsWith('0 xxx'), first.slice(0, 20));
  assert.equal(result.stderr, '', 'nothing said');
  assert.equal(result.code, 0);
});

test('merge -o onto a device, a named pipe or a symlink writes through it, as `>` does: the device stays a device (it was replaced by a file: /dev/null, as root), the pipe\'s reader gets the result, the link stays a link', async (t) => {
  const job = await doneJob('merge-targets', 3);
  const dir = makeTempDir('merge-targets');
  if (process.getuid?.() === 0) {
    // A private null device: what `-o /dev/null` meets.
    const device = path.join(dir, 'null');
    execFileSync('mknod', ['-m', '666', device, 'c', '1', '3']);
    const merged = await runPiecework(['merge', job, '-o', device, '-q']);
    assert.equal(merged.code, 0, merged.stderr);
    assert.ok(lstatSync(device).isCharacterDevice(), 'still a character device');
    assert.deepEqual(readdirSync(dir), ['null'], 'no temp file left beside it');
  } else {
    t.diagnostic('not root: no device node made, the device case is not run');
  }
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  // A writer of our own keeps the reader's end open until the merge is over, so a merge that
  // replaced the pipe fails the test instead of leaving the reader blocked for ever.
  const keep = await fs.open(fifo, fsConstants.O_RDWR);
  const reader = fs.readFile(fifo, 'utf8');
  const toFifo = await runPiecework(['merge', job, '-o', fifo, '-q']);
  await keep.close();
  assert.equal(toFifo.code, 0, toFifo.stderr);
  assert.equal(await reader, serial(3), "the pipe's reader got the merge");
  assert.ok(lstatSync(fifo).isFIFO(), 'still a named pipe');

  const file = path.join(dir, 'result.txt');
  await fs.writeFile(file, 'old\n');
  const link = path.join(dir, 'latest.txt');
  await fs.symlink('result.txt', link);
  assert.equal((await runPiecework(['merge', job, '-o', link, '-q'])).code, 0);
  assert.ok(lstatSync(link).isSymbolicLink(), 'the link is kept');
  assert.equal(readFileSync(file, 'utf8'), serial(3), 'the file it names holds the merge');

  const folder = await runPiecework(['merge', job, '-o', dir]);
  assert.equal(folder.code, 2);
  assert.match(folder.stderr, /-o .* is a folder/);
  const intoJob = path.join(dir, 'into-job');
  await fs.symlink(path.join(job, 'out', 'all.txt'), intoJob);
  const inside = await runPiecework(['merge', job, '-o', intoJob]);
  assert.equal(inside.code, 2, 'a link into the job folder is the job folder');
  assert.match(inside.stderr, /inside the job folder/);
  assert.ok(!existsSync(path.join(job, 'out', 'all.txt')));
});

test('a reducer killed mid-merge leaves no partial target or temp file, and no stack trace', async () => {
  const job = await doneJob('reducer-killed', 4);
  const target = path.join(root, 'reduced.txt');
  const run = await runPiecework(['merge', job, '-o', target, '--reduce', '--', 'sh', '-c', 'cat "$@"; kill -9 $$', 'sh']);
  assert.equal(run.code, 1, run.stderr);
  assert.match(run.stderr, /killed by SIGKILL/);
  noStack(run.stderr);
  assert.deepEqual((await fs.readdir(root)).filter((name) => name.includes('reduced')), []);
});

test('a command that makes a folder at {out} has not succeeded: the attempt fails, nothing is committed', async () => {
  const job = await lineJob(root, 'out-folder', 2);
  const work = await runPiecework(['work', job, '-j', '1', '--retries', '0', '--', 'mkdir', '{out}']);
  assert.equal(work.code, 1);
  assert.deepEqual(filesUnder(path.join(job, 'out')), []);
  const failure = JSON.parse(readFileSync(path.join(job, 'failed/000000.json'), 'utf8'));
  assert.match(failure.reason, /something other than a file/);
  assert.deepEqual(await fs.readdir(path.join(job, 'out')), []);
});

test('a command that removes the file its stdout goes to fails its attempt, and the worker ends: it is not taken for a lost claim and run again for ever', async (t) => {
  const job = await lineJob(root, 'stdout-removed', 2);
  const runs = path.join(root, 'stdout-removed.runs');
  // $$ is the sh whose stdout is the chunk's temp output (as a cleaner of temp files would remove it).
  const script = 'echo run >> "$1"; cat; rm -f "$(readlink /proc/$$/fd/1)"';
  const worker = startPiecework(['work', job, '-j', '1', '--retries', '1', '--', 'sh', '-c', script, 'sh', runs]);
  const ended = collect(worker);
  const timer = setTimeout(() => killGroup(worker), 20_000);
  t.after(() => clearTimeout(timer));
  const result = await ended;
  assert.equal(result.code, 1, `the worker ends with chunks failed for good, not killed after 20 s (it ran ${readFileSync(runs, 'utf8').split('\n').length - 1} commands)\n${result.stderr}`);
  assert.equal(readFileSync(runs, 'utf8'), 'run\n'.repeat(4), 'two chunks, two attempts each');
  assert.deepEqual(await fs.readdir(path.join(job, 'out')), []);
  for (const chunk of ['000000', '000001']) {
    const failure = JSON.parse(readFileSync(path.join(job, 'failed', `${chunk}.json`), 'utf8'));
    assert.equal(failure.attempts, 2);
    assert.match(failure.reason, /the command exited 0, but the file its stdout went to was removed while it ran/);
  }
});

test('a follower of a split that died says so instead of waiting forever', async () => {
  const job = await lineJob(root, 'dead-split', 2);
  const manifestPath = path.join(job, 'job.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
  manifest.complete = false; // as a split killed half-way leaves it
  await fs.writeFile(manifestPath, JSON.stringify(manifest));
  const env = { PIECEWORK_SPLIT_SILENT_SECONDS: '2' };
  const work = await runPiecework(['work', job, '--follow', '-j', '1', '--', 'cat'], { env });
  assert.equal(work.code, 3, work.stderr);
  assert.match(work.stderr, /split .* stopped before it finished/);
  const merge = await runPiecework(['merge', job, '--follow'], { env });
  assert.equal(merge.code, 3, merge.stderr);
  assert.equal(merge.stdout, serial(2), 'what exists was merged in order first');
});

test('merge --follow and work stop when the job is replaced by a new split', async () => {
  const job = await lineJob(root, 'replaced', 3);
  const manifestPath = path.join(job, 'job.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
  manifest.complete = false;
  await fs.writeFile(manifestPath, JSON.stringify(manifest));
  const follower = startPiecework(['merge', job, '--follow', '--partial']);
  const done = collect(follower);
  await waitUntil(() => existsSync(manifestPath), 5000, 'job.json');
  await new Promise((resolve) => setTimeout(resolve, 500));
  await fs.writeFile(manifestPath, JSON.stringify({ ...manifest, id: 'another-job-id' }));
  const result = await done;
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, /replaced by a new split/);
});

test('verify --requeue removes nothing of a live worker: its claims, lane folder and temp outputs stay', async () => {
  const job = await lineJob(root, 'requeue-live', 4);
  const worker = startPiecework(['work', job, '-j', '1', '--', 'sh', '-c', 'sleep 30; cat']);
  const done = collect(worker);
  try {
    // A claim names its holder (the owner record) once it is a second old: only then can a reader
    // tell whose it is; before that, a claim that looks stale by its mtime has no proof of life.
    await waitUntil(() => readdirNames(path.join(job, 'locks')).some((name) => name.endsWith('.owner')), 10_000, 'a claim with its owner record');
    await waitUntil(() => readdirNames(path.join(job, 'workers')).length > 0, 10_000, 'a heartbeat');
    const tmpBefore = filesUnder(path.join(job, '.tmp'));
    const locksBefore = readdirNames(path.join(job, 'locks'));
    // Make the claim look stale by its own mtime: only the holder's fresh heartbeat protects it.
    for (const name of locksBefore) await fs.utimes(path.join(job, 'locks', name), new Date(0), new Date(0));
    const requeue = await runPiecework(['verify', job, '--requeue']);
    assert.equal(requeue.code, 3, requeue.stderr);
    assert.deepEqual(readdirNames(path.join(job, 'locks')), locksBefore);
    assert.deepEqual(filesUnder(path.join(job, '.tmp')), tmpBefore);
  } finally {
    process.kill(-worker.pid!, 'SIGKILL');
    await done;
  }
});

test('claims inside a group folder whose name is digits are claims of that group, not of a chunk', async () => {
  const input = path.join(root, 'digits.txt');
  await fs.writeFile(input, 'a\nb\n');
  const job = (await runPiecework(['split', input, '--lines', '1', '--group', 'g000001', '--into', path.join(root, 'digit-group')])).stdout.trim();
  assert.equal((await runPiecework(['work', job, '-q', '--', 'cat'])).code, 0);
  assert.equal((await runPiecework(['merge', job])).stdout, 'a\nb\n');
});

/** The names in a folder ([] when it is missing). */
function readdirNames(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

test('a job folder this user cannot write gives one line saying so, for every command — not "this is a bug"', { skip: nobodyCannotRun() }, async () => {
  const job = await lineJob(root, 'not-mine', 2);
  // root writes everywhere: run the CLI as nobody on a job root owns, for a real EACCES.
  await fs.chmod(root, 0o755);
  const asNobody = { wrapper: ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--'] };
  const work = await runPiecework(['work', job, '-j', '1', '--', 'cat'], asNobody);
  assert.equal(work.code, 1, work.stderr);
  assert.match(work.stderr, /is not writable \(or readable\) by this user/);
  assert.match(work.stderr, /check the owner and permissions/);
  noStack(work.stderr);
  assert.equal(work.stderr.trim().split('\n').length, 2, 'one line and its hint');
  assert.deepEqual(filesUnder(path.join(job, 'out')), []);
});

test('a detached grandchild that keeps writing after its command ended cannot change a committed output (the lane cgroup ends it)', { skip: !cgroupWritable() && 'no writable cgroup2 mount here (run as root)' }, async () => {
  const job = await lineJob(root, 'setsid-writer', 2);
  // The grandchild leaves the process group (setsid; given time to, before the command exits) and
  // writes into the command's stdout — the temp output — after the output has been committed.
  // With PIECEWORK_CGROUP=off (process groups alone) both outputs end in LATE.
  const script = 'cat; setsid sh -c "sleep 1; echo LATE" & sleep 0.3; exit 0';
  const work = await runPiecework(['work', job, '-j', '1', '--', 'sh', '-c', script]);
  assert.equal(work.code, 0, work.stderr);
  await new Promise((resolve) => setTimeout(resolve, 2000));
  assert.equal((await runPiecework(['merge', job])).stdout, '0\n1\n', 'the outputs are what the commands wrote, nothing later');
});

test('a command is in its lane cgroup from its first instruction, however the lane starts it (bash or sh fork server: before its exec)', { skip: !cgroupWritable() && 'no writable cgroup2 mount here (run as root)' }, async () => {
  // The command reads its own cgroup at once: moved in after it started, it would see the old one.
  for (const way of ['bash', 'sh', 'node']) {
    const job = await lineJob(root, `cgroup-first-${way}`, 6);
    const work = await runPiecework(['work', job, '-j', '2', '-q', '--', 'cat', '/proc/self/cgroup'], { env: { PIECEWORK_SPAWN: way } });
    assert.equal(work.code, 0, work.stderr);
    const outside = filesUnder(path.join(job, 'out')).filter((file) => !/^0::\/.*piecework-/m.test(readFileSync(path.join(job, 'out', file), 'utf8')));
    if (way !== 'node') assert.deepEqual(outside, [], `${way}: outputs written outside the lane cgroup`);
  }
});

function cgroupWritable(): boolean {
  return process.getuid?.() === 0 && readFileSync('/proc/self/mounts', 'utf8').includes(' cgroup2 ');
}

test('outputs that verify --requeue removes while a worker runs are redone by it; it never calls the job complete without them', async () => {
  const job = await lineJob(root, 'requeued-under', 4);
  const worker = startPiecework(['work', job, '-j', '1', '--', 'sh', '-c', 'sleep 0.7; cat']);
  const done = collect(worker);
  await waitUntil(() => readdirNames(path.join(job, 'out')).length >= 1, 20_000, 'a first output');
  // `false` judges every output there is bad: they are removed while the worker goes on.
  const requeue = await runPiecework(['verify', job, '--check', '--requeue', '--', 'false']);
  assert.equal(requeue.code, 3, requeue.stderr);
  const result = await done;
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /job complete/);
  assert.equal((await runPiecework(['merge', job])).stdout, serial(4));
});
