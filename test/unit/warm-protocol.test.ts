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

test('a line longer than the limit keeps its start and says how long it was; the next line is whole', () => {
  const split = new LineSplitter(10);
  assert.deepEqual(split.push('0123456'), []);
  assert.deepEqual(split.push('789abcdef'), []);
  assert.deepEqual(split.push('ghij\nok\n'), ['0123456789… (the line had 20 characters; the rest was cut)', 'ok']);
  // A long `fail` stays a reply, its message cut.
  const [fail] = split.push('fail ' + 'm'.repeat(30) + '\n');
  assert.deepEqual(parseReply(fail!), { ok: false, message: 'mmmmm… (the line had 35 characters; the rest was cut)' });
  assert.deepEqual(split.push('x'.repeat(25)), []);
  assert.deepEqual(split.end(), ['xxxxxxxxxx… (the line had 25 characters; the rest was cut)']);
});

test('a line that never ends keeps the splitter small, piece after piece', () => {
  const split = new LineSplitter();
  const piece = 'y'.repeat(65536);
  for (let i = 0; i < 2000; i++) assert.deepEqual(split.push(piece), []);
  const [line] = split.push('\n');
  assert.equal(line, `${'y'.repeat(4096)}… (the line had ${65536 * 2000} characters; the rest was cut)`);
});
