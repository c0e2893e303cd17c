import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { split } from '../../src/core/split/split.js';
import { readManifest } from '../../src/core/manifest.js';
import { JobLayout } from '../../src/core/job-folder.js';
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
    const manifest = await readManifest(new JobLayout(job));
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
  const manifest = await readManifest(new JobLayout(job));
  assert.equal(manifest.complete, false);
  assert.equal(filesUnder(path.join(job, '.tmp')).length, 0, 'no half-written chunk left behind');
});

test('an unreadable input is refused before any job is made', async () => {
  const job = jobDir();
  await assert.rejects(split({ into: job, inputs: [path.join(root, 'nope.txt')], mode: 'lines', size: 1 }), /no such file/);
  await assert.rejects(fs.stat(job), /ENOENT/);
});
