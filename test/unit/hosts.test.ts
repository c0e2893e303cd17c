import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../../src/core/errors.js';
import { formatHost, parseHostList, parseHostSpec, parseHostsFile, resolveHosts, type HostSpec } from '../../src/remote/hosts.js';

const dir = join(tmpdir(), `pw${process.pid}-hosts-test`);
before(() => mkdirSync(dir, { recursive: true }));
after(() => rmSync(dir, { recursive: true, force: true }));

test('host specs parse as [N/][user@]host[:port], IPv6 in brackets', () => {
  const cases: [string, Omit<HostSpec, 'source'>][] = [
    ['lab1', { host: 'lab1', port: 22 }],
    ['lab1.example.org', { host: 'lab1.example.org', port: 22 }],
    ['alice@lab1', { user: 'alice', host: 'lab1', port: 22 }],
    ['lab1:2222', { host: 'lab1', port: 2222 }],
    ['8/lab1', { host: 'lab1', port: 22, lanes: 8 }],
    ['16/bob@10.0.0.7:2200', { user: 'bob', host: '10.0.0.7', port: 2200, lanes: 16 }],
    ['[::1]:2222', { host: '::1', port: 2222 }],
    ['root@[fe80::1%eth0]', { user: 'root', host: 'fe80::1%eth0', port: 22 }],
    ['4/carol@[2001:db8::5]:22', { user: 'carol', host: '2001:db8::5', port: 22, lanes: 4 }],
    ['fe80::1', { host: 'fe80::1', port: 22 }],
    ['host_with_underscore', { host: 'host_with_underscore', port: 22 }],
    ['  lab1  ', { host: 'lab1', port: 22 }],
  ];
  for (const [text, expected] of cases) {
    assert.deepEqual(parseHostSpec(text, 'x'), { ...expected, source: 'x' }, text);
  }
});

test('bad host specs say what is wrong', () => {
  const cases: [string, RegExp][] = [
    ['0/lab1', /lanes must be at least 1/],
    ['x/lab1', /lanes prefix must be a number/],
    ['lab1:0', /bad port "0"/],
    ['lab1:70000', /bad port "70000"/],
    ['lab1:ssh', /bad port "ssh"/],
    ['lab1 lab2', /unexpected space/],
    ['[::1', /missing "\]"/],
    ['[::1]2222', /unexpected "2222" after "\]"/],
    ['a@@b', /bad user name/],
    ['-lab', /bad host name/],
    ['lab1.', /bad host name/],
    ['::zz::', /bad address/],
    ['@lab1', /bad user name ""/],
  ];
  for (const [text, message] of cases) assert.throws(() => parseHostSpec(text, 'x'), message, text);
});

test('a hosts file skips comments and blank lines and records each line number', () => {
  const text = ['# lab machines', '', '8/alice@lab1   # the big one', '  lab2:2222', '\t', '[::1]:2200', ''].join('\n');
  assert.deepEqual(parseHostsFile(text, 'lab.txt'), [
    { user: 'alice', host: 'lab1', port: 22, lanes: 8, source: 'lab.txt:3' },
    { host: 'lab2', port: 2222, source: 'lab.txt:4' },
    { host: '::1', port: 2200, source: 'lab.txt:6' },
  ]);
});

test('a malformed line is a usage error naming the file and its line number', () => {
  const cases: [string, RegExp][] = [
    ['lab1\nlab2:99999\n', /^lab\.txt:2: bad port "99999"/],
    ['# c\n\n\n0/lab3\n', /^lab\.txt:4: lanes must be at least 1/],
    ['lab1\r\nlab 2\r\n', /^lab\.txt:2: unexpected space/],
  ];
  for (const [text, message] of cases) {
    assert.throws(
      () => parseHostsFile(text, 'lab.txt'),
      (error: unknown) => error instanceof UsageError && error.exitStatus === 2 && message.test(error.message) && /\[N\/\]\[user@\]host/.test(error.hint ?? ''),
      JSON.stringify(text),
    );
  }
});

test('--hosts a,b,c is a list; a bad item is named by its position', () => {
  assert.deepEqual(parseHostList('4/lab1, lab2:2222,,root@lab3'), [
    { host: 'lab1', port: 22, lanes: 4, source: '--hosts' },
    { host: 'lab2', port: 2222, source: '--hosts' },
    { user: 'root', host: 'lab3', port: 22, source: '--hosts' },
  ]);
  assert.throws(() => parseHostList('lab1,lab2:x'), /--hosts \(item 2\): bad port "x"/);
});

test('resolveHosts reads files, takes lists, and refuses duplicates and missing files', async () => {
  const file = join(dir, 'lab.txt');
  writeFileSync(file, '2/lab1\nlab2\n');
  const specs = await resolveHosts([file, 'lab3,3/lab4']);
  assert.deepEqual(specs.map((s) => [formatHost(s), s.lanes, s.source]), [
    ['lab1', 2, `${file}:1`],
    ['lab2', undefined, `${file}:2`],
    ['lab3', undefined, '--hosts'],
    ['lab4', 3, '--hosts'],
  ]);
  await assert.rejects(resolveHosts([file, 'lab2']), /lab2 is listed twice \(.*lab\.txt:2 and --hosts\)/);
  await assert.rejects(resolveHosts([join(dir, 'missing.txt')]), /no such file/);
  await assert.rejects(resolveHosts(['conf/lab']), /no such file/);
  await assert.rejects(resolveHosts([dir]), /is a folder/);
  writeFileSync(join(dir, 'empty.txt'), '# nothing here\n');
  await assert.rejects(resolveHosts([join(dir, 'empty.txt')]), /names no host/);
  // The same host on another port or as another user is another login.
  assert.equal((await resolveHosts(['lab1,lab1:2222,bob@lab1'])).length, 3);
});

test('formatHost writes what a person would type', () => {
  assert.equal(formatHost({ host: 'lab1', port: 22 }), 'lab1');
  assert.equal(formatHost({ user: 'a', host: 'lab1', port: 2222 }), 'a@lab1:2222');
  assert.equal(formatHost({ host: '::1', port: 2222 }), '[::1]:2222');
  assert.equal(formatHost({ host: '::1', port: 22 }), '::1');
});
