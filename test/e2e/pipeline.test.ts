import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { runPiecework } from '../helpers/cli.js';
import { filesUnder } from '../helpers/job.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-pipeline-${process.pid}-`));
after(() => fs.rm(root, { recursive: true, force: true }));

const lines = (n: number) => Array.from({ length: n }, (_, i) => `line ${i} ${'abc'.repeat(i % 7)}`).join('\n') + '\n';

test('split prints the job path; work, verify and merge give the serial result', async () => {
  const input = path.join(root, 'input.txt');
  await fs.writeFile(input, lines(5000));
  const split = await runPiecework(['split', input, '--into', path.join(root, 'job'), '--lines', '70']);
  assert.equal(split.code, 0, split.stderr);
  const job = split.stdout.trim();
  assert.equal(job, path.join(root, 'job'));
  const work = await runPiecework(['work', job, '-j', '3', '--', 'tr', 'a-z', 'A-Z']);
  assert.equal(work.code, 0, work.stderr);
  assert.match(work.stderr, /job complete/);
  assert.equal(work.stdout, '', 'work is quiet on stdout unless asked');
  const verify = await runPiecework(['verify', job]);
  assert.equal(verify.code, 0, verify.stderr);
  const merged = await runPiecework(['merge', job]);
  assert.equal(merged.code, 0);
  assert.equal(merged.stdout, lines(5000).toUpperCase());
  assert.equal(filesUnder(path.join(job, 'out')).length, filesUnder(path.join(job, 'chunks')).length);
  assert.deepEqual(filesUnder(path.join(job, 'locks')), [], 'every claim released');
  assert.deepEqual(filesUnder(path.join(job, '.tmp')), [], 'no temp file left');
  const log = readFileSync(path.join(job, 'logs', filesUnder(path.join(job, 'logs'))[0]!), 'utf8');
  assert.match(log, / lane=\d chunk=\d{6} done \d+\.\d{3}s/);
});

test('placeholders: {in}, {out}, {name} and the PIECEWORK_* environment', async () => {
  const input = path.join(root, 'p.txt');
  await fs.writeFile(input, 'a\nb\nc\n');
  const job = (await runPiecework(['split', input, '--into', path.join(root, 'pjob'), '--lines', '1', '--ext', '.txt'])).stdout.trim();
  const script = 'printf "%s %s %s|" "$1" "$PIECEWORK_NAME" "$PIECEWORK_ATTEMPT" > "$2"; cat "$3" >> "$2"';
  const work = await runPiecework(['work', job, '-j', '2', '--', 'sh', '-c', script, 'sh', '{name}', '{out}', '{in}']);
  assert.equal(work.code, 0, work.stderr);
  assert.deepEqual(filesUnder(path.join(job, 'out')), ['000000.txt', '000001.txt', '000002.txt']);
  const merged = await runPiecework(['merge', job]);
  assert.equal(merged.stdout, '000000 000000 1|a\n000001 000001 1|b\n000002 000002 1|c\n');
});

test('file names with spaces, quotes and shell metacharacters are data, never code', async () => {
  const dir = path.join(root, "odd dir $(touch pwned) 'q' \"d\" ;&|");
  await fs.mkdir(dir);
  const names = ['a b.txt', "it's.txt", '$(touch pwned2).txt', '`id`;rm -rf x.txt', 'tab\there.txt'];
  for (const name of names) await fs.writeFile(path.join(dir, name), `content of ${name}\n`);
  // As the shell hands them over after expanding a glob: one argument per name.
  const split = await runPiecework(['split', '--files', ...names.map((name) => path.join(dir, name)), '--into', path.join(dir, 'job $x')], { cwd: root });
  assert.equal(split.code, 0, split.stderr);
  const job = split.stdout.trim();
  const work = await runPiecework(['work', job, '-j', '2', '--', 'cat', '{file}'], { cwd: root });
  assert.equal(work.code, 0, work.stderr);
  const merged = (await runPiecework(['merge', job])).stdout;
  for (const name of names) assert.ok(merged.includes(`content of ${name}`), name);
  await assert.rejects(fs.stat(path.join(root, 'pwned')));
  await assert.rejects(fs.stat(path.join(root, 'pwned2')));
});

test('a --files job with no placeholder gets the files on stdin; {files} spreads into arguments', async () => {
  const dir = path.join(root, 'many');
  await fs.mkdir(dir);
  for (let i = 0; i < 5; i++) await fs.writeFile(path.join(dir, `f${i}`), `${i}\n`);
  const job = (await runPiecework(['split', '--files', path.join(dir, 'f*'), '--per-chunk', '2', '--into', path.join(root, 'fjob')])).stdout.trim();
  assert.equal((await runPiecework(['work', job, '--', 'cat'])).code, 0);
  assert.equal((await runPiecework(['merge', job])).stdout, '0\n1\n2\n3\n4\n');
  const job2 = (await runPiecework(['split', '--files', path.join(dir, 'f*'), '--per-chunk', '2', '--into', path.join(root, 'fjob2')])).stdout.trim();
  assert.equal((await runPiecework(['work', job2, '--', 'wc', '-l', '{files}'])).code, 0);
  const counts = (await runPiecework(['merge', job2])).stdout;
  assert.equal(counts.match(/total/g)?.length, 2, counts);
});

test('merge: -o is atomic, --group merges one group, --reduce hands paths to a reducer, an incomplete job is refused', async () => {
  const a = path.join(root, 'layerA.txt');
  const b = path.join(root, 'layerB.txt');
  await fs.writeFile(a, '3\n1\n2\n');
  await fs.writeFile(b, '9\n7\n8\n');
  const job = (await runPiecework(['split', a, b, '--group-by-file', '--lines', '2', '--into', path.join(root, 'mjob')])).stdout.trim();

  const early = await runPiecework(['merge', job]);
  assert.equal(early.code, 3);
  assert.match(early.stderr, /4 of 4 chunks have no output/);
  assert.equal(early.stdout, '');
  const target = path.join(root, 'merged.txt');
  assert.equal((await runPiecework(['merge', job, '-o', target])).code, 3);
  await assert.rejects(fs.stat(target), 'a refused merge writes no file');

  assert.equal((await runPiecework(['work', job, '--', 'sort', '-n'])).code, 0);
  assert.equal((await runPiecework(['merge', job, '-o', target])).code, 0);
  assert.equal(await fs.readFile(target, 'utf8'), '1\n3\n2\n7\n9\n8\n');
  assert.deepEqual((await fs.readdir(root)).filter((n) => n.startsWith('.merged')), [], 'no temp file beside the target');
  assert.equal((await runPiecework(['merge', job, '--group', 'layerB'])).stdout, '7\n9\n8\n');
  assert.equal((await runPiecework(['merge', job, '--reduce', '--', 'sort', '-m', '-n'])).stdout, '1\n2\n3\n7\n8\n9\n');
  const noGroup = await runPiecework(['merge', job, '--group', 'nope']);
  assert.equal(noGroup.code, 2);
  assert.match(noGroup.stderr, /no group "nope"/);
});

test('merge --partial merges what exists and says what is missing', async () => {
  const input = path.join(root, 'partial.txt');
  await fs.writeFile(input, 'x\ny\nz\n');
  const job = (await runPiecework(['split', input, '--lines', '1', '--into', path.join(root, 'partjob')])).stdout.trim();
  await fs.writeFile(path.join(job, 'out', '000001'), 'Y\n');
  const merged = await runPiecework(['merge', job, '--partial']);
  assert.equal(merged.code, 0);
  assert.equal(merged.stdout, 'Y\n');
  assert.match(merged.stderr, /2 missing/);
});

test('the same merge is produced by cat over out/ in natural order (one output per chunk)', async () => {
  const input = path.join(root, 'natural.txt');
  await fs.writeFile(input, lines(1200));
  const job = (await runPiecework(['split', input, '--lines', '1', '--into', path.join(root, 'njob')])).stdout.trim();
  assert.equal((await runPiecework(['work', job, '-j', '2', '--', 'cat'])).code, 0);
  const viaCat = execFileSync('sh', ['-c', 'cd "$1"/out && ls | sort -n | xargs cat', 'sh', job]).toString();
  assert.equal((await runPiecework(['merge', job])).stdout, viaCat);
  assert.equal(viaCat, lines(1200));
});
