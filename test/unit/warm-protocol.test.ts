import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeRequest, LineSplitter, parseReply } from '../../src/core/work/warm-protocol.js';

test('only exact "ok", exact "fail" and lines starting "fail " are replies', () => {
  const cases: [string, ReturnType<typeof parseReply>][] = [
    ['ok', { ok: true }],
    ['ok\r', { ok: true }],
    ['fail', { ok: false, message: '' }],
    ['fail cannot parse line 3', { ok: false, message: 'cannot parse line 3' }],
    ['fail   spaced  ', { ok: false, message: 'spaced' }],
    ['OK', undefined],
    [' ok', undefined],
    ['ok ', undefined],
    ['ok then', undefined],
    ['okay', undefined],
    ['failed', undefined],
    ['fail-safe mode', undefined],
    ['', undefined],
  ];
  for (const [line, reply] of cases) assert.deepEqual(parseReply(line), reply, JSON.stringify(line));
});

test('a request is one JSON line with the protocol version first, whatever the file names hold', () => {
  const line = encodeRequest({ in: '/job/chunks/a\nb', out: '/job/.tmp/x', name: 'a\nb', files: null, attempt: 2, job: '/job' });
  assert.equal(line.indexOf('\n'), line.length - 1, 'one line');
  assert.deepEqual(JSON.parse(line), { v: 1, in: '/job/chunks/a\nb', out: '/job/.tmp/x', name: 'a\nb', files: null, attempt: 2, job: '/job' });
  assert.ok(line.startsWith('{"v":1,'));
});

test('lines split across reads are joined; a last line without newline comes at the end', () => {
  const split = new LineSplitter();
  assert.deepEqual(split.push('o'), []);
  assert.deepEqual(split.push('k\nfa'), ['ok']);
  assert.deepEqual(split.push('il x\n\nstray'), ['fail x', '']);
  assert.deepEqual(split.end(), ['stray']);
  assert.deepEqual(split.end(), []);
});
