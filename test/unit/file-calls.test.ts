// The two ways the job store makes its per-chunk file calls (store/file-calls.ts): inline on a
// local disk, through the thread pool elsewhere; and which folders count as a local disk.
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileSystemTypeOf, isOnLocalDisk } from '../../src/core/mounts.js';
import { inlineCallbackFs, inlineCalls, threadPoolCalls } from '../../src/core/store/file-calls.js';
import { makeTempDir } from '../helpers/tmp.js';

test('inline and thread-pool calls give the same answers and the same errors', async () => {
  const dir = makeTempDir('file-calls');
  writeFileSync(join(dir, 'file'), 'x');
  for (const calls of [inlineCalls, threadPoolCalls]) {
    assert.equal(await calls.statOrMissing(join(dir, 'missing')), undefined);
    assert.equal((await calls.statOrMissing(join(dir, 'file')))?.size, 1);
    await assert.rejects(calls.statOrMissing(join(dir, 'file', 'below')), { code: 'ENOTDIR' });
    assert.equal(await calls.readFileOrMissing(join(dir, 'missing')), undefined);
    assert.equal((await calls.readFileOrMissing(join(dir, 'file')))?.toString(), 'x');
    await assert.rejects(calls.readFileOrMissing(join(dir, 'file', 'below')), { code: 'ENOTDIR' });
    await assert.rejects(calls.readFileOrMissing(dir), { code: 'EISDIR' });
    assert.ok((await calls.lstat(join(dir, 'file'))).isFile());
    await calls.rename(join(dir, 'file'), join(dir, 'moved'));
    await calls.rename(join(dir, 'moved'), join(dir, 'file'));
    await assert.rejects(calls.rename(join(dir, 'missing'), join(dir, 'other')), { code: 'ENOENT' });
  }
});

test('the inline fs given to proper-lockfile calls back after the call returns, as node:fs does', () => {
  const dir = makeTempDir('file-calls');
  const order: string[] = [];
  inlineCallbackFs.mkdir(join(dir, 'lock'), (error) => order.push(`mkdir ${error?.code ?? 'ok'}`));
  inlineCallbackFs.mkdir(join(dir, 'lock'), (error) => order.push(`again ${error?.code ?? 'ok'}`));
  inlineCallbackFs.stat(join(dir, 'lock'), (error, stat) => order.push(`stat ${error?.code ?? (stat.isDirectory() ? 'dir' : '?')}`));
  order.push('returned');
  return new Promise<void>((resolve) =>
    setImmediate(() => {
      assert.deepEqual(order, ['returned', 'mkdir ok', 'again EEXIST', 'stat dir']);
      resolve();
    }),
  );
});

test('a local disk is told apart from what is not one, through symlinks', (t) => {
  const dir = makeTempDir('file-calls');
  const type = fileSystemTypeOf(dir);
  if (!type || !/^(ext[234]|xfs|btrfs|tmpfs|overlay)$/.test(type)) return t.skip(`the temp folder is on ${type ?? 'an unknown file system'}`);
  assert.equal(isOnLocalDisk(dir), true);
  assert.equal(isOnLocalDisk('/proc/self'), false, 'procfs is no disk');
  mkdirSync(join(dir, 'sub'));
  symlinkSync('/proc/self', join(dir, 'link-to-proc'));
  assert.equal(isOnLocalDisk(join(dir, 'sub')), true);
  assert.equal(isOnLocalDisk(join(dir, 'link-to-proc')), false, 'where the link leads counts, not where it sits');
  assert.equal(isOnLocalDisk(join(dir, 'missing')), false, 'unknown is not local');
});
