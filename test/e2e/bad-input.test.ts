import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { collect, killGroup, nobodyCannotRun, runPiecework, startPiecework } from '../helpers/cli.js';
import { filesUnder } from '../helpers/job.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-bad-${process.pid}-`));
const mounts: string[] = [];
after(async () => {
  for (const m of mounts) {
    try {
      execFileSync('umount', ['-l', m]);
    } catch {
      // not mounted
    }
  }
  await fs.rm(root, { recursive: true, force: true });
});

const noStack = (stderr: string) => assert.doesNotMatch(stderr, /\n\s+at .+:\d+:\d+/, 'no stack trace');

test('a missing job: exit 4, a one-line message with a hint, no stack', async () => {
  for (const cmd of ['work', 'verify', 'merge', 'stop']) {
    const args = cmd === 'work' ? [cmd, path.join(root, 'nope'), '--', 'cat'] : [cmd, path.join(root, 'nope')];
    const result = await runPiecework(args);
    assert.equal(result.code, 4, `${cmd}: ${result.stderr}`);
    assert.match(result.stderr, /^piecework: no piecework job at .*nope \(job\.json not found\)\n  check the path/);
    noStack(result.stderr);
  }
});

test('usage errors exit 2 with a clear message: unknown flag, missing argument, bad value, no command', async () => {
  const cases: [string[], RegExp][] = [
    [['work', root, '--bogus', '--', 'cat'], /Unknown argument: bogus/],
    [['split', 'x.txt'], /--into/],
    [['split', 'x.txt', '--into', path.join(root, 'j'), '--bytes', '12Q'], /--bytes 12Q: not a size/],
    [['split', 'x.txt', '--into', path.join(root, 'j'), '--lines', '0'], /--lines 0: must be a whole number/],
    [['split', 'x', '--into', 'y', '--lines', '5', '--bytes', '1M'], /mutually exclusive/],
    [['frobnicate'], /Unknown argument|Did you mean/],
    [[], /give a command/],
  ];
  for (const [args, pattern] of cases) {
    const result = await runPiecework(args);
    assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stderr, pattern, args.join(' '));
    noStack(result.stderr);
  }
  const input = path.join(root, 'in.txt');
  await fs.writeFile(input, 'a\n');
  const job = (await runPiecework(['split', input, '--into', path.join(root, 'usage-job')])).stdout.trim();
  const noCommand = await runPiecework(['work', job]);
  assert.equal(noCommand.code, 2);
  assert.match(noCommand.stderr, /no command to run\n  give the command after --/);
});

test('split over an existing job is refused and leaves it untouched', async () => {
  const input = path.join(root, 'exists.txt');
  await fs.writeFile(input, 'a\nb\n');
  const job = path.join(root, 'exists-job');
  assert.equal((await runPiecework(['split', input, '--into', job])).code, 0);
  const before = await fs.readFile(path.join(job, 'job.json'), 'utf8');
  // The same split again is not refused (it leaves the job as it is: test/unit/split-cli.test.ts); another one is.
  const again = await runPiecework(['split', input, '--into', job, '--lines', '1']);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /a job already exists at .* \(1 chunks, split complete\) and it was split by lines 1000, not lines 1\n  choose another --into, add --force/);
  assert.equal(await fs.readFile(path.join(job, 'job.json'), 'utf8'), before);
});

test('an unreadable input is refused before a job is made', { skip: nobodyCannotRun() }, async () => {
  const input = path.join(root, 'secret.txt');
  await fs.writeFile(input, 'x\n', { mode: 0o600 });
  await fs.chmod(root, 0o777);
  const job = path.join(root, 'unreadable-job');
  // root reads everything: run the CLI as nobody to get a real EACCES.
  const result = await runPiecework(['split', input, '--into', job], { wrapper: ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--'] });
  assert.equal(result.code, 2, result.stderr);
  assert.match(result.stderr, /secret\.txt: permission denied/);
  await assert.rejects(fs.stat(job));
  const missing = await runPiecework(['split', path.join(root, 'missing.txt'), '--into', job]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /missing\.txt: no such file/);
});

test('a dropped mount: the worker stops with a clear error and writes nothing into the bare mountpoint', async () => {
  const mountpoint = path.join(root, 'mnt');
  await fs.mkdir(mountpoint);
  const input = path.join(root, 'drop.txt');
  await fs.writeFile(input, Array.from({ length: 40 }, (_, i) => `${i}`).join('\n') + '\n');
  // Claims held when the mount dropped cannot be released; the rerun takes them over once stale.
  const job = (await runPiecework(['split', input, '--lines', '1', '--stale', '3', '--into', path.join(mountpoint, 'job')])).stdout.trim();
  const worker = startPiecework(['work', job, '-j', '2', '--', 'sh', '-c', 'sleep 0.3; cat']);
  const result = collect(worker);
  try {
    while (filesUnder(path.join(job, 'out')).length < 3) await new Promise((r) => setTimeout(r, 50));
    // What an unmount looks like from a path: the folder is suddenly an empty directory.
    await fs.rename(mountpoint, path.join(root, 'mnt-was'));
    await fs.mkdir(mountpoint);
    const { code, stderr } = await result;
    assert.equal(code, 4, stderr);
    assert.match(stderr, /no piecework job at .*\/mnt\/job/);
    assert.match(stderr, /mount/);
    noStack(stderr);
    assert.deepEqual(await fs.readdir(mountpoint), [], 'nothing written into the bare mountpoint');
  } finally {
    killGroup(worker);
  }
  // Mounted again: the job completes, no chunk lost.
  await fs.rm(mountpoint, { recursive: true });
  await fs.rename(path.join(root, 'mnt-was'), mountpoint);
  assert.equal((await runPiecework(['work', job, '--', 'cat'])).code, 0);
  assert.equal((await runPiecework(['verify', job])).code, 0);
});

test('disk full during commit: a clear message, nothing partial, and a rerun after freeing space completes', async () => {
  const disk = path.join(root, 'small');
  await fs.mkdir(disk);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', `pw-small-${process.pid}`, disk]);
  mounts.push(disk);
  const input = path.join(root, 'big.txt');
  await fs.writeFile(input, Array.from({ length: 20 }, (_, i) => `${i}`).join('\n') + '\n');
  const job = (await runPiecework(['split', input, '--lines', '1', '--into', path.join(disk, 'job')])).stdout.trim();
  const filler = path.join(disk, 'filler');
  // Each output is 300 KiB: the disk fills after a few.
  const grow = ['sh', '-c', 'cat; head -c 307200 /dev/zero'];
  const full = await runPiecework(['work', job, '-j', '1', '--', ...grow]);
  assert.equal(full.code, 1, full.stderr);
  assert.match(full.stderr, /the disk holding the job is full/);
  assert.match(full.stderr, /free space and start the worker again/);
  noStack(full.stderr);
  for (const name of filesUnder(path.join(job, 'out'))) assert.equal((await fs.stat(path.join(job, 'out', name))).size, name.length > 0 ? (await fs.readFile(path.join(job, 'chunks', name))).length + 307200 : 0, `${name} is complete`);
  assert.deepEqual(filesUnder(path.join(job, '.tmp')).filter((n) => !n.startsWith('.')), [], 'no partial output left');
  // Free space (make the disk bigger) and rerun: the job completes with the same outputs.
  await fs.rm(filler, { force: true });
  execFileSync('mount', ['-o', 'remount,size=16m', disk]);
  const rerun = await runPiecework(['work', job, '--', ...grow]);
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.equal((await runPiecework(['verify', job])).code, 0);
});

test('merge onto a full disk (stdout on /dev/full, or -o on a full tmpfs): it says the result could not be written, not that an output went missing, and leaves no partial -o file', async () => {
  const input = path.join(root, 'merge-full.txt');
  await fs.writeFile(input, Array.from({ length: 40 }, (_, i) => `${i}`).join('\n') + '\n');
  const job = (await runPiecework(['split', input, '--lines', '4', '--into', path.join(root, 'merge-full-job')])).stdout.trim();
  assert.equal((await runPiecework(['work', job, '-q', '--', 'cat'])).code, 0);

  const toFull = await runPiecework(['merge', job], { wrapper: ['sh', '-c', 'exec "$@" > /dev/full', 'sh'] });
  assert.equal(toFull.code, 1, toFull.stderr);
  assert.match(toFull.stderr, /^piecework: merge could not write its result: No space left on device\n {2}the disk the result goes to is full/);
  assert.doesNotMatch(toFull.stderr, /output may have been removed|this is a bug/);
  noStack(toFull.stderr);

  const disk = path.join(root, 'merge-small');
  await fs.mkdir(disk);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', `pw-merge-small-${process.pid}`, disk]);
  mounts.push(disk);
  // Fill it to the last block (the write that does not fit fails, which is the point).
  await fs.writeFile(path.join(disk, 'filler'), Buffer.alloc(128 * 1024)).catch(() => {});
  const toFile = await runPiecework(['merge', job, '-o', path.join(disk, 'all.txt')]);
  assert.equal(toFile.code, 1, toFile.stderr);
  assert.match(toFile.stderr, /merge could not write its result: No space left on device/);
  noStack(toFile.stderr);
  assert.deepEqual(await fs.readdir(disk), ['filler'], 'no partial result, no temp file');
});
