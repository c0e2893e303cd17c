import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { humanEvents } from '../../src/cli/report/events.js';
import { RecentRate } from '../../src/cli/report/recent-rate.js';

/** A stream that records what was written; `isTTY` decides whether it looks like a terminal. */
function sink(isTTY: boolean) {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString();
      done();
    },
  }) as Writable & { isTTY?: boolean; columns?: number };
  stream.isTTY = isTTY;
  stream.columns = 100;
  return { stream, text: () => text };
}

const failed = { type: 'chunk:failed', chunk: '000007', lane: 0, ms: 5, attempt: 3, final: true, reason: 'exit 3' } as const;

test('not a terminal: no bar and no escape codes, only the lines worth reading', () => {
  const out = sink(false);
  const report = humanEvents(out.stream, {}, { interactive: false });
  report({ type: 'work:start', job: '/j', worker: 'w', lanes: 2, chunks: 10, pending: 10, clockOffsetMs: 0 });
  report({ type: 'chunk:done', chunk: '000001', lane: 0, ms: 5, output: '/j/out/000001' });
  report(failed);
  report({ type: 'warning', message: 'slow mount' });
  report.finish();
  assert.equal(out.text(), 'failed chunk 000007 (attempt 3, no retries left): exit 3\npiecework: warning: slow mount\n');
});

test('a terminal: a cli-progress bar with counts and ETA; lines go above it and the bar is cleared at the end', () => {
  const out = sink(true);
  const report = humanEvents(out.stream, { NO_COLOR: '1' }, { interactive: true });
  report({ type: 'work:start', job: '/j', worker: 'w', lanes: 2, chunks: 10, pending: 10, clockOffsetMs: 0 });
  for (let i = 0; i < 4; i++) report({ type: 'chunk:done', chunk: `00000${i}`, lane: 0, ms: 5, output: '' });
  report(failed);
  report.finish();
  const text = out.text();
  assert.match(text, /work +█+░+ +\d+% \d+\/10/);
  assert.match(text, /ETA/);
  assert.match(text, /failed chunk 000007 \(attempt 3, no retries left\): exit 3\n/);
  assert.doesNotMatch(text, /\u001b\[3\dm/, 'NO_COLOR: no colour codes');
  assert.match(text, /\u001b\[0J$/, 'the bar is cleared when the command ends');
});

test('quiet: nothing at all, terminal or not', () => {
  const out = sink(true);
  const report = humanEvents(out.stream, {}, { interactive: true, quiet: true });
  report({ type: 'work:start', job: '/j', worker: 'w', lanes: 2, chunks: 10, pending: 10, clockOffsetMs: 0 });
  report(failed);
  report.finish();
  assert.equal(out.text(), '');
});

test('the recent rate counts the last half minute only', () => {
  let now = 0;
  const rate = new RecentRate(() => now);
  for (let i = 0; i < 10; i++) {
    now += 1000;
    rate.add();
  }
  assert.equal(rate.perSecond(), 1);
  now += 60_000;
  assert.equal(rate.perSecond(), 0);
});
