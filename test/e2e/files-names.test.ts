/**
 * --files jobs whose outputs are named after their inputs, as hand-written loops name them:
 * {base}/{stem} in work's command, and merge --into-dir (scans/a.png → results/a.json).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runPiecework } from '../helpers/cli.js';
import { filesUnder } from '../helpers/job.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-files-names-${process.pid}-`));
after(() => fs.rm(root, { recursive: true, force: true }));

async function filesJob(name: string, inputs: string[]): Promise<string> {
  for (const input of inputs) {
    await fs.mkdir(path.dirname(path.join(root, input)), { recursive: true });
    await fs.writeFile(path.join(root, input), `data of ${input}\n`);
  }
  const job = path.join(root, name);
  const split = await runPiecework(['split', '--files', ...inputs.map((i) => path.join(root, i)), '--into', job, '--ext', '.json']);
  assert.equal(split.code, 0, split.stderr);
  return job;
}

test('{base} and {stem} in the command are the input file\'s name and its name without the extension', async () => {
  const job = await filesJob('placeholders', ['scans/a.png', 'scans/b.tar.gz']);
  const work = await runPiecework(['work', job, '--', 'sh', '-c', 'echo "$0 $1"', '{base}', '{stem}']);
  assert.equal(work.code, 0, work.stderr);
  assert.equal((await runPiecework(['merge', job])).stdout, 'a.png a\nb.tar.gz b.tar\n');
});

test('merge --into-dir: each output named after its input, hard-linked; collisions and existing files refused', async () => {
  const job = await filesJob('into', ['scans/a.png', 'scans/b.png', 'scans/c.jpg']);
  assert.equal((await runPiecework(['work', job, '--', 'sh', '-c', 'tr a-z A-Z < {file}'])).code, 0);
  const results = path.join(root, 'results');
  const merged = await runPiecework(['merge', job, '--into-dir', results]);
  assert.equal(merged.code, 0, merged.stderr);
  assert.match(merged.stderr, /merge: 3 outputs → .*results\/ \(3 hard-linked, 0 copied\)/);
  assert.deepEqual(filesUnder(results), ['a.json', 'b.json', 'c.json']);
  assert.equal(readFileSync(path.join(results, 'b.json'), 'utf8'), `DATA OF SCANS/B.PNG\n`);
  assert.equal(statSync(path.join(results, 'a.json')).ino, statSync(path.join(job, 'out', '000000.json')).ino);
  // Run again into the same folder: nothing is overwritten.
  const again = await runPiecework(['merge', job, '--into-dir', results]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /^piecework: .*results\/a\.json exists already; nothing was written\n {2}give an empty or new folder/);

  const clash = await filesJob('clash', ['x/a.png', 'y/a.png']);
  assert.equal((await runPiecework(['work', clash, '--', 'cat'])).code, 0);
  const refused = await runPiecework(['merge', clash, '--into-dir', path.join(root, 'clash-out')]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /^piecework: --into-dir: .*x\/a\.png and .*y\/a\.png would both become a\.json\n/);
  assert.doesNotMatch(refused.stderr, /\n\s+at /);
  assert.deepEqual(filesUnder(path.join(root, 'clash-out')), [], 'nothing written');

  const input = path.join(root, 'lines.txt');
  await fs.writeFile(input, 'a\n');
  const lines = path.join(root, 'lines');
  await runPiecework(['split', input, '--into', lines]);
  await runPiecework(['work', lines, '--', 'cat']);
  const notFiles = await runPiecework(['merge', lines, '--into-dir', path.join(root, 'x')]);
  assert.equal(notFiles.code, 2);
  assert.match(notFiles.stderr, /not split with --files/);
});
