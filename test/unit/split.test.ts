import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { split } from '../../src/core/split/split.js';
import { readManifest } from '../../src/core/manifest.js';
import { PosixJobStore } from '../../src/core/store/posix-store.js';
import { PieceworkError, UsageError } from '../../src/core/errors.js';
import { concatChunks, filesUnder } from '../helpers/job.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-split-${process.pid}-`));
after(() => fs.rm(root, { recursive: true, force: true }));
let n = 0;
const jobDir = () => path.join(root, `job${n++}`);

/** Lines of random length (some empty, some long), the last one maybe without a newline. */
function randomText(lines: number, seed: number, trailingNewline = true): Buffer {
  let s = seed;
  const rand = () => (s = (s * 48271) % 2147483647) / 2147483647;
  const out: string[] = [];
  for (let i = 0; i < lines; i++) out.push('x'.repeat(Math.floor(rand() ** 3 * 300)) + i);
  return Buffer.from(out.join('\n') + (trailingNewline ? '\n' : ''));
}

async function writeInput(data: Buffer): Promise<string> {
  const file = path.join(root, `input${n++}.txt`);
  await fs.writeFile(file, data);
  return file;
}

function chunkContents(job: string): Buffer[] {
  return filesUnder(path.join(job, 'chunks')).map((f) => readFileSync(path.join(job, 'chunks', f)));
}

test('--lines: every chunk has N lines but the last; together they are the input', async () => {
  for (const trailing of [true, false]) {
    const data = randomText(1003, 7, trailing);
    const job = jobDir();
    const result = await split({ into: job, inputs: [await writeInput(data)], mode: 'lines', size: 100 });
    assert.equal(result.chunks, 11);
    assert.deepEqual(concatChunks(job), data);
    const chunks = chunkContents(job);
    for (const chunk of chunks.slice(0, -1)) assert.equal(chunk.toString().split('\n').length - 1, 100);
    const manifest = await readManifest(new PosixJobStore(job));
    assert.equal(manifest.complete, true);
    assert.equal(manifest.chunkCount, 11);
  }
});

test('--bytes never cuts a line and keeps chunks within the limit unless one line is longer', async () => {
  for (const limit of [1, 50, 301, 4096, 1 << 20]) {
    const data = randomText(2000, limit, limit % 2 === 0);
    const job = jobDir();
    await split({ into: job, inputs: [await writeInput(data)], mode: 'bytes', size: limit });
    assert.deepEqual(concatChunks(job), data, `limit ${limit}`);
    const chunks = chunkContents(job);
    for (const [i, chunk] of chunks.entries()) {
      const isLast = i === chunks.length - 1;
      if (!isLast) assert.equal(chunk[chunk.length - 1], 10, `chunk ${i} ends at a line end (limit ${limit})`);
      const lines = chunk.toString().split('\n').filter((l, j, all) => j < all.length - 1 || l !== '');
      if (lines.length > 1) assert.ok(chunk.length <= limit, `chunk ${i} of ${chunk.length} bytes over ${limit}`);
    }
  }
});

test('--chunks K makes at most K chunks of about equal size', async () => {
  const data = randomText(5000, 3);
  const job = jobDir();
  const result = await split({ into: job, inputs: [await writeInput(data)], mode: 'chunks', size: 8 });
  assert.ok(result.chunks <= 8 && result.chunks >= 7, `${result.chunks} chunks`);
  assert.deepEqual(concatChunks(job), data);
  const sizes = chunkContents(job).map((c) => c.length);
  assert.ok(Math.max(...sizes) < (data.length / 8) * 1.5, `sizes ${sizes.join(',')}`);
});

test('stdin is split as a stream', async () => {
  const data = randomText(3000, 11);
  const job = jobDir();
  // Odd-sized pieces, so that lines straddle reads.
  const pieces = [];
  for (let i = 0; i < data.length; i += 777) pieces.push(data.subarray(i, i + 777));
  const result = await split({ into: job, inputs: ['-'], mode: 'lines', size: 250, stdin: Readable.from(pieces) });
  assert.equal(result.chunks, 12);
  assert.deepEqual(concatChunks(job), data);
});

test('--group-by-file puts each input in its own group folder, numbered from zero', async () => {
  const a = await writeInput(randomText(30, 1));
  const b = await writeInput(randomText(30, 2));
  const job = jobDir();
  const result = await split({ into: job, inputs: [a, b], mode: 'lines', size: 10, groupPerFile: true });
  assert.equal(result.groups.length, 2);
  const names = filesUnder(path.join(job, 'chunks'));
  assert.equal(names.length, 6);
  assert.ok(names.every((name) => /^[A-Za-z0-9_-]+\/00000[0-2]$/.test(name)), names.join(' '));
});

test('--files lists existing files (not copied), N per chunk, relative to the job', async () => {
  const dir = path.join(root, 'items');
  await fs.mkdir(dir);
  for (let i = 0; i < 7; i++) await fs.writeFile(path.join(dir, `item ${i}.txt`), `item ${i}\n`);
  const job = jobDir();
  const result = await split({ into: job, inputs: [path.join(dir, '*.txt')], mode: 'files', size: 3 });
  assert.equal(result.chunks, 3);
  const listed = chunkContents(job).map((c) => c.toString().trim().split('\n'));
  assert.deepEqual(listed.map((l) => l.length), [3, 3, 1]);
  assert.equal(path.resolve(job, listed[0]![0]!), path.join(dir, 'item 0.txt'));
});

test('an existing job is refused without --force, replaced with it', async () => {
  const input = await writeInput(randomText(10, 5));
  const job = jobDir();
  await split({ into: job, inputs: [input], mode: 'lines', size: 5 });
  await fs.writeFile(path.join(job, 'out', '000000'), 'an output');
  await assert.rejects(split({ into: job, inputs: [input], mode: 'lines', size: 4 }), (e: unknown) => e instanceof UsageError && /already exists/.test(e.message));
  assert.ok(filesUnder(path.join(job, 'out')).length === 1, 'the refused split touched nothing');
  await split({ into: job, inputs: [input], mode: 'lines', size: 2, force: true });
  assert.equal(filesUnder(path.join(job, 'out')).length, 0);
  assert.equal(filesUnder(path.join(job, 'chunks')).length, 5);
});

test('a split that fails half-way leaves a job marked unfinished, never one that looks complete', async () => {
  const job = jobDir();
  const failing = new Readable({
    read() {
      if (!this.readableLength) {
        this.push('a\nb\nc\nd\n');
        setImmediate(() => this.destroy(new Error('input went away')));
      }
    },
  });
  await assert.rejects(split({ into: job, inputs: ['-'], mode: 'lines', size: 1, stdin: failing }), (e: unknown) => e instanceof PieceworkError && /input went away/.test(e.message));
  const manifest = await readManifest(new PosixJobStore(job));
  assert.equal(manifest.complete, false);
  assert.equal(filesUnder(path.join(job, '.tmp')).length, 0, 'no half-written chunk left behind');
});

test('an unreadable input is refused before any job is made', async () => {
  const job = jobDir();
  await assert.rejects(split({ into: job, inputs: [path.join(root, 'nope.txt')], mode: 'lines', size: 1 }), /no such file/);
  await assert.rejects(fs.stat(job), /ENOENT/);
});

// ---------------------------------------------------------------------------------------------
// Issues 10–12

/** The --bytes rule by the book: lines packed greedily, at most `limit` bytes unless one line is longer. */
function expectedBytesChunks(data: Buffer, limit: number): Buffer[] {
  const chunks: Buffer[] = [];
  let chunkStart = 0;
  let lineStart = 0;
  while (lineStart < data.length) {
    const nl = data.indexOf(10, lineStart);
    const lineEnd = nl === -1 ? data.length : nl + 1;
    if (lineEnd - chunkStart > limit && lineStart > chunkStart) {
      chunks.push(data.subarray(chunkStart, lineStart));
      chunkStart = lineStart;
    }
    lineStart = lineEnd;
  }
  if (chunkStart < data.length) chunks.push(data.subarray(chunkStart));
  return chunks;
}

function pieces(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

test('--bytes packs lines exactly as the rule says, however the input arrives (lines straddling reads move on whole)', async () => {
  for (const [limit, piece] of [[64, 7], [301, 100], [1000, 4096], [50, 1]] as const) {
    const data = randomText(800, limit + piece, limit % 2 === 0);
    const job = jobDir();
    const result = await split({ into: job, inputs: ['-'], mode: 'bytes', size: limit, stdin: Readable.from(pieces(data, piece)) });
    const expected = expectedBytesChunks(data, limit);
    assert.deepEqual(chunkContents(job), expected, `limit ${limit}, pieces of ${piece}`);
    assert.equal(result.chunks, expected.length);
  }
});

test('--chunks K from small reads: at most K chunks, the input intact', async () => {
  const data = randomText(3000, 5);
  const file = await writeInput(data);
  const job = jobDir();
  const result = await split({ into: job, inputs: [file], mode: 'chunks', size: 7 });
  assert.ok(result.chunks <= 7 && result.chunks >= 6, `${result.chunks} chunks`);
  assert.deepEqual(concatChunks(job), data);
});

test('a line longer than a chunk goes whole into one chunk (--bytes and --lines), streamed', async () => {
  const long = Buffer.alloc(3 * 1024 * 1024 + 17, 'y');
  const data = Buffer.concat([Buffer.from('a\nb\n'), long, Buffer.from('\nc\n')]);
  for (const mode of ['bytes', 'lines'] as const) {
    const job = jobDir();
    await split({ into: job, inputs: ['-'], mode, size: mode === 'bytes' ? 4 : 1, stdin: Readable.from(pieces(data, 65536)) });
    const chunks = chunkContents(job).map((c) => c.toString());
    const expected = mode === 'bytes' ? ['a\nb\n', long.toString() + '\n', 'c\n'] : ['a\n', 'b\n', long.toString() + '\n', 'c\n'];
    assert.deepEqual(chunks, expected, mode);
  }
});

test('several inputs: a file without a final newline gets one at the boundary, never glued to the next file', async () => {
  const a = await writeInput(Buffer.from('a1\na2'));
  const b = await writeInput(Buffer.from('b1\nb2'));
  const job = jobDir();
  await split({ into: job, inputs: [a, b], mode: 'lines', size: 1 });
  assert.deepEqual(chunkContents(job).map(String), ['a1\n', 'a2\n', 'b1\n', 'b2']);
});

test('--group-by-file: names that collide after sanitising stay distinct; count = chunks on disk = manifest', async () => {
  const dirs = ['x', 'y'].map((d) => path.join(root, `collide${n}`, d));
  for (const d of dirs) await fs.mkdir(d, { recursive: true });
  const files = [path.join(dirs[0]!, 'data.tsv'), path.join(dirs[1]!, 'data.tsv'), path.join(dirs[0]!, 'data_2.tsv'), path.join(dirs[0]!, '2024.tsv')];
  for (const [i, f] of files.entries()) await fs.writeFile(f, `${i}a\n${i}b\n${i}c\n`);
  const job = jobDir();
  const result = await split({ into: job, inputs: files, mode: 'lines', size: 2, groupPerFile: true });
  assert.deepEqual(result.groups, ['data', 'data_3', 'data_2', 'file_2024']);
  const onDisk = filesUnder(path.join(job, 'chunks'));
  const manifest = await readManifest(new PosixJobStore(job));
  assert.equal(result.chunks, 8);
  assert.equal(onDisk.length, result.chunks);
  assert.equal(manifest.chunkCount, result.chunks);
  assert.deepEqual(manifest.groups, [
    { name: 'data', count: 2, width: 6 },
    { name: 'data_3', count: 2, width: 6 },
    { name: 'data_2', count: 2, width: 6 },
    { name: 'file_2024', count: 2, width: 6 },
  ]);
  const named = manifest.groups.flatMap((g) => Array.from({ length: g.count }, (_, i) => `${g.name}/${String(i).padStart(g.width, '0')}`));
  assert.deepEqual([...named].sort(), [...onDisk].sort(), 'the manifest names exactly the chunks on disk');
  assert.equal(readFileSync(path.join(job, 'chunks', 'data_2', '000000'), 'utf8'), '2a\n2b\n', 'data_2.tsv keeps its own name');
});

test('--group: a name of digits only (it would look like a chunk) or with unsafe characters is refused, nothing made', async () => {
  const input = await writeInput(Buffer.from('a\n'));
  for (const group of ['000001', 'layer 3', 'a/b']) {
    const job = jobDir();
    await assert.rejects(split({ into: job, inputs: [input], mode: 'lines', size: 1, group }), (e: unknown) => e instanceof UsageError && /--group/.test(e.message), group);
    await assert.rejects(fs.stat(job), /ENOENT/);
  }
});

test('--files: a file outside the job stays absolute, a file inside it is stored relative to it', async () => {
  const job = jobDir();
  const outside = path.join(root, `outside${n}.txt`);
  await fs.writeFile(outside, 'x\n');
  const inside = path.join(job, 'inputs', 'in.txt');
  await fs.mkdir(path.dirname(inside), { recursive: true });
  await fs.writeFile(inside, 'y\n');
  await split({ into: job, inputs: [outside, inside], mode: 'files', size: 2, force: true });
  assert.deepEqual(chunkContents(job)[0]!.toString().split('\n'), [outside, path.join('inputs', 'in.txt'), '']);
});

test('the manifest records groups and --ext; a bad --ext is refused before anything is made', async () => {
  const input = await writeInput(randomText(25, 9));
  const job = jobDir();
  await split({ into: job, inputs: [input], mode: 'lines', size: 10, ext: 'json' });
  const manifest = await readManifest(new PosixJobStore(job));
  assert.equal(manifest.protocol, 2);
  assert.equal(manifest.ext, '.json');
  assert.deepEqual(manifest.groups, [{ name: '', count: 3, width: 6 }]);
  assert.equal(manifest.chunkCount, 3);
  const bad = jobDir();
  await assert.rejects(split({ into: bad, inputs: [input], mode: 'lines', size: 10, ext: 'a/b' }), UsageError);
  await assert.rejects(fs.stat(bad), /ENOENT/);
});

test('the same split again leaves the job as it is; other settings or a changed input are refused', async () => {
  const input = await writeInput(randomText(30, 4));
  const job = jobDir();
  const first = await split({ into: job, inputs: [input], mode: 'lines', size: 10 });
  const id = (await readManifest(new PosixJobStore(job))).id;
  await fs.writeFile(path.join(job, 'out', '000000'), 'an output');
  const again = await split({ into: job, inputs: [input], mode: 'lines', size: 10 });
  assert.equal(again.action, 'unchanged');
  assert.equal(again.chunks, first.chunks);
  assert.equal((await readManifest(new PosixJobStore(job))).id, id, 'the job was not touched');
  assert.equal(filesUnder(path.join(job, 'out')).length, 1);
  await assert.rejects(split({ into: job, inputs: [input], mode: 'lines', size: 10, ext: '.txt' }), /already exists.*extension/);
  const later = new Date(Date.now() + 5000);
  await fs.utimes(input, later, later);
  await assert.rejects(split({ into: job, inputs: [input], mode: 'lines', size: 10 }), /an input changed/);

  const dir = path.join(root, `rerun-files${n}`);
  await fs.mkdir(dir);
  for (let i = 0; i < 4; i++) await fs.writeFile(path.join(dir, `${i}.png`), '');
  const filesJob = jobDir();
  await split({ into: filesJob, inputs: [path.join(dir, '*.png')], mode: 'files', size: 2 });
  assert.equal((await split({ into: filesJob, inputs: [path.join(dir, '*.png')], mode: 'files', size: 2 })).action, 'unchanged');
  await fs.writeFile(path.join(dir, '9.png'), '');
  await assert.rejects(split({ into: filesJob, inputs: [path.join(dir, '*.png')], mode: 'files', size: 2 }), /its files make 2 chunks, not 3/);
});

test('--group NAME on a job whose chunks are in groups adds the group; an existing group or a top-level job is refused', async () => {
  const a = await writeInput(randomText(20, 1));
  const b = await writeInput(randomText(30, 2));
  const job = jobDir();
  await split({ into: job, inputs: [a], mode: 'lines', size: 10, group: 'a' });
  const added = await split({ into: job, inputs: [b], mode: 'lines', size: 10, group: 'b' });
  assert.equal(added.action, 'add-group');
  assert.equal(added.written, 3);
  assert.equal(added.chunks, 5);
  const manifest = await readManifest(new PosixJobStore(job));
  assert.deepEqual(manifest.groups.map((g) => [g.name, g.count]), [['a', 2], ['b', 3]]);
  assert.equal(manifest.chunkCount, 5);
  assert.equal(manifest.complete, true);
  assert.deepEqual(filesUnder(path.join(job, 'chunks')), ['a/000000', 'a/000001', 'b/000000', 'b/000001', 'b/000002']);
  await assert.rejects(split({ into: job, inputs: [a], mode: 'lines', size: 5, group: 'b' }), /group exists/);
  const flat = jobDir();
  await split({ into: flat, inputs: [a], mode: 'lines', size: 10 });
  await assert.rejects(split({ into: flat, inputs: [b], mode: 'lines', size: 10, group: 'b' }), /top level/);
});

test('an unfinished split rewrites job.json at least every 5 s while stdin is quiet (followers judge it alive by its mtime)', async () => {
  const job = jobDir();
  const quiet = new Readable({ read() {} });
  quiet.push('a\n');
  const running = split({ into: job, inputs: ['-'], mode: 'lines', size: 1, stdin: quiet });
  const jobFile = path.join(job, 'job.json');
  const { waitUntil } = await import('../helpers/wait.js');
  await waitUntil(async () => (await fs.stat(jobFile).catch(() => undefined)) !== undefined, 5000, 'job.json');
  const first = (await fs.stat(jobFile)).mtimeMs;
  await waitUntil(async () => (await fs.stat(jobFile)).mtimeMs > first + 1500, 7000, 'job.json rewritten while no data came');
  assert.equal((await readManifest(new PosixJobStore(job))).complete, false);
  quiet.push(null);
  await running;
  assert.equal((await readManifest(new PosixJobStore(job))).complete, true);
});

test('the SIMD newline scan finds the same N-th newline as indexOf, in and out of its memory', async () => {
  const { allocateScanBuffer, isScanBuffer, nthNewline } = await import('../../src/core/split/newline-scan.js');
  const data = randomText(3000, 17);
  const fast = allocateScanBuffer(data.length);
  assert.ok(isScanBuffer(fast) && !isScanBuffer(data));
  data.copy(fast);
  let s = 99;
  const rand = (k: number) => (s = (s * 48271) % 2147483647) % k;
  for (let i = 0; i < 3000; i++) {
    const from = rand(data.length);
    const need = 1 + rand(i % 2 ? 3 : 400);
    const plain = nthNewline(data, from, need);
    assert.equal(nthNewline(fast, from, need), plain, `from ${from}, need ${need}`);
    assert.equal(nthNewline(fast.subarray(0, from + 20), from, need), nthNewline(data.subarray(0, from + 20), from, need));
  }
});

test('a glob the shell did not expand is expanded, in natural order; one that matches nothing is refused', async () => {
  const dir = path.join(root, `glob${n++}`);
  await fs.mkdir(dir);
  for (const i of [10, 2, 1]) await fs.writeFile(path.join(dir, `part${i}.tsv`), `${i}\n`);
  const job = jobDir();
  await split({ into: job, inputs: [path.join(dir, 'part*.tsv')], mode: 'lines', size: 1 });
  assert.deepEqual(chunkContents(job).map(String), ['1\n', '2\n', '10\n']);
  await assert.rejects(split({ into: jobDir(), inputs: [path.join(dir, 'nope*.tsv')], mode: 'lines', size: 1 }), /no file matches/);
});
