/**
 * split as a user runs it: the built CLI in a real process, real files, real exit statuses.
 * (Issues 10–12: exact names and counts, stdin that is a folder, bounded memory on one huge
 * line, rerunnable `work "$(split …)"`, --force refused under live workers, adding a group.)
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, closeSync, promises as fs } from 'node:fs';
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { collect, killGroup, piecework, runPiecework, startPiecework } from '../helpers/cli.js';
import { filesUnder, readJson } from '../helpers/job.js';
import { waitUntil } from '../helpers/wait.js';
import type { JobManifest } from '../../src/core/manifest.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-split-cli-${process.pid}-`));
after(() => fs.rm(root, { recursive: true, force: true }));
let n = 0;
const jobDir = () => path.join(root, `job${n++}`);
const manifestOf = (job: string) => readJson<JobManifest>(path.join(job, 'job.json'));

async function lines(count: number): Promise<string> {
  const file = path.join(root, `lines${n++}.txt`);
  await fs.writeFile(file, Array.from({ length: count }, (_, i) => `line ${i}`).join('\n') + '\n');
  return file;
}

test('the count split prints = the files in chunks/ = the manifest (colliding file names included)', async () => {
  const dir = path.join(root, 'collide');
  for (const d of ['x', 'y']) await fs.mkdir(path.join(dir, d), { recursive: true });
  const files = [path.join(dir, 'x', 'data.tsv'), path.join(dir, 'y', 'data.tsv'), path.join(dir, 'data_2.tsv')];
  for (const f of files) await fs.writeFile(f, 'a\nb\nc\n');
  const job = jobDir();
  const result = await runPiecework(['split', ...files, '--into', job, '--group-by-file', '--lines', '1']);
  assert.equal(result.code, 0, result.stderr);
  const printed = Number(/split: (\d+) chunks/.exec(result.stderr)?.[1]);
  assert.equal(printed, 9);
  assert.equal(filesUnder(path.join(job, 'chunks')).length, printed);
  const manifest = await manifestOf(job);
  assert.equal(manifest.chunkCount, printed);
  assert.equal(manifest.groups.reduce((sum, g) => sum + g.count, 0), printed);
  assert.equal(new Set(manifest.groups.map((g) => g.name)).size, 3, 'three distinct groups');
});

test('stdin that is a folder is a usage error, and no job is made', async () => {
  const job = jobDir();
  const dirFd = openSync(root, 'r');
  try {
    const child = spawn(process.execPath, [piecework, 'split', '--into', job], { stdio: [dirFd, 'pipe', 'pipe'] });
    const result = await collect(child);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /^piecework: stdin is a folder/);
    assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
    await assert.rejects(fs.stat(job), /ENOENT/);
  } finally {
    closeSync(dirFd);
  }
});

test('work "$(split data --into J)" can be run again: the same split prints the job and leaves it as it is', async () => {
  const input = await lines(30);
  const job = jobDir();
  const first = await runPiecework(['split', input, '--into', job, '--lines', '10']);
  assert.equal(first.code, 0, first.stderr);
  const { id } = await manifestOf(job);
  await fs.writeFile(path.join(job, 'out', '000000'), 'kept');
  const again = await runPiecework(['split', input, '--into', job, '--lines', '10']);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, first.stdout, 'the job path, as the first time');
  assert.match(again.stderr, /already holds this split \(3 chunks\); left as it is/);
  assert.equal((await manifestOf(job)).id, id);
  assert.equal(await fs.readFile(path.join(job, 'out', '000000'), 'utf8'), 'kept');
  const other = await runPiecework(['split', input, '--into', job, '--lines', '5']);
  assert.equal(other.code, 2);
  assert.match(other.stderr, /a job already exists .* split by lines 10, not lines 5/);
  assert.equal(other.stdout, '', 'no path for `work` to run on');
});

test('one 64 MiB line without a newline on stdin: one chunk, linear time, bounded memory', { timeout: 60_000 }, async () => {
  const job = jobDir();
  const line = Buffer.alloc(64 * 1024 * 1024, 'z');
  const started = Date.now();
  const result = await runPiecework(['split', '-', '--into', job, '--bytes', '1M', '-q'], { input: line, wrapper: ['/usr/bin/time', '-f', 'peak-rss-kb %M'] });
  const seconds = (Date.now() - started) / 1000;
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(filesUnder(path.join(job, 'chunks')), ['000000']);
  assert.equal((await fs.stat(path.join(job, 'chunks', '000000'))).size, line.length);
  const rssMb = Number(/peak-rss-kb (\d+)/.exec(result.stderr)?.[1]) / 1024;
  assert.ok(rssMb < 200, `peak RSS ${rssMb.toFixed(0)} MB`);
  assert.ok(seconds < 15, `${seconds.toFixed(1)} s for 64 MiB`);
});

test('split --force refuses while a live worker works on the job (says which), and replaces it once the worker is gone', { timeout: 60_000 }, async () => {
  const input = await lines(4);
  const job = jobDir();
  assert.equal((await runPiecework(['split', input, '--into', job, '--lines', '1'])).code, 0);
  const worker = startPiecework(['work', job, '--', 'sleep', '60']);
  const exited = collect(worker);
  try {
    await waitUntil(() => filesUnder(path.join(job, 'workers')).length > 0, 20_000, 'the worker heartbeat');
    const refused = await runPiecework(['split', input, '--into', job, '--lines', '2', '--force']);
    assert.equal(refused.code, 2, refused.stderr);
    assert.match(refused.stderr, new RegExp(`live worker is working on .*: \\S+ pid ${worker.pid}`));
    assert.match(refused.stderr, /piecework stop/);
    assert.equal((await manifestOf(job)).chunkCount, 4, 'the job is untouched');
    process.kill(worker.pid!, 'SIGTERM');
    assert.equal((await exited).code, 143);
  } finally {
    killGroup(worker);
  }
  const replaced = await runPiecework(['split', input, '--into', job, '--lines', '2', '--force']);
  assert.equal(replaced.code, 0, replaced.stderr);
  assert.equal((await manifestOf(job)).chunkCount, 2);
});

test('split --force into a folder that is not a job deletes nothing of its own: refused where it has an out/ or chunks/ of its own, the job made beside other files, what is left of a job replaced', async () => {
  const input = await lines(2);
  // A project folder with results of its own in out/: the refusal once suggested --force, which deleted them.
  const project = jobDir();
  await fs.mkdir(path.join(project, 'out'), { recursive: true });
  await fs.writeFile(path.join(project, 'out', 'keep.txt'), 'mine\n');
  const plain = await runPiecework(['split', input, '--into', project, '--lines', '1']);
  assert.equal(plain.code, 2);
  assert.match(plain.stderr, /is not empty and is not a job, and its out\/ is named like a job's/);
  assert.doesNotMatch(plain.stderr, /add --force/);
  const forced = await runPiecework(['split', input, '--into', project, '--lines', '1', '--force']);
  assert.equal(forced.code, 2, forced.stderr);
  assert.match(forced.stderr, /is not a job: --force would delete its out\/, which piecework did not make/);
  assert.deepEqual(filesUnder(project), ['out/keep.txt'], 'nothing removed, nothing made');
  // A pipeline's own out/ and failed/: one name a job has is not enough to take it for one.
  await fs.mkdir(path.join(project, 'failed'));
  await fs.writeFile(path.join(project, 'failed', 'bad.txt'), 'bad\n');
  assert.equal((await runPiecework(['split', input, '--into', project, '--lines', '1', '--force'])).code, 2);
  assert.deepEqual(filesUnder(project), ['failed/bad.txt', 'out/keep.txt']);

  // Only other files: --force makes the job beside them.
  const notes = jobDir();
  await fs.mkdir(notes);
  await fs.writeFile(path.join(notes, 'README.txt'), 'notes\n');
  assert.match((await runPiecework(['split', input, '--into', notes, '--lines', '1'])).stderr, /add --force to make the job beside what is there/);
  assert.equal((await runPiecework(['split', input, '--into', notes, '--lines', '1', '--force'])).code, 0);
  assert.equal(await fs.readFile(path.join(notes, 'README.txt'), 'utf8'), 'notes\n');
  assert.equal((await manifestOf(notes)).chunkCount, 2);

  // What a cut-short --force leaves (its job.json goes first) is still replaced by --force.
  await fs.rm(path.join(notes, 'job.json'));
  assert.match((await runPiecework(['split', input, '--into', notes, '--lines', '1'])).stderr, /it holds what is left of one .*without its job\.json/);
  assert.equal((await runPiecework(['split', input, '--into', notes, '--lines', '2', '--force'])).code, 0);
  assert.equal((await manifestOf(notes)).chunkCount, 1);
  assert.equal(await fs.readFile(path.join(notes, 'README.txt'), 'utf8'), 'notes\n');
});

test('split --group NAME --into an existing grouped job adds the group; --ext is recorded; bad names and extensions are usage errors', async () => {
  const job = jobDir();
  assert.equal((await runPiecework(['split', await lines(20), '--into', job, '--lines', '10', '--group', 'a', '--ext', 'json'])).code, 0);
  const added = await runPiecework(['split', await lines(5), '--into', job, '--lines', '10', '--group', 'b', '--ext', '.json']);
  assert.equal(added.code, 0, added.stderr);
  assert.match(added.stderr, /group b: 1 chunks .* added to .* \(3 chunks in all\)/);
  const manifest = await manifestOf(job);
  assert.deepEqual(manifest.groups.map((g) => g.name), ['a', 'b']);
  assert.equal(manifest.ext, '.json');
  assert.equal(manifest.complete, true);
  const again = await runPiecework(['split', await lines(5), '--into', job, '--group', 'b', '--ext', 'json']);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /group b .*exists already/);
  for (const args of [['--group', '000001'], ['--ext', 'a/b']]) {
    const bad = jobDir();
    const result = await runPiecework(['split', await lines(2), '--into', bad, ...args]);
    assert.equal(result.code, 2, args.join(' '));
    assert.doesNotMatch(result.stderr, /\n\s+at /);
    await assert.rejects(fs.stat(bad), /ENOENT/);
  }
});
