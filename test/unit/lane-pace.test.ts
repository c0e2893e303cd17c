import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LanePace, PREPARE_AHEAD_MAX_RUN_MS, settlesWithin } from '../../src/core/work/lane-pace.js';

test('no chunk is readied ahead before a command has finished once: its length is unknown', () => {
  const pace = new LanePace();
  assert.equal(pace.prepareAheadAfterMs(), undefined);
  assert.equal(pace.prepareDepth(), 1);
});

test('short chunks: the next is prepared at once when preparing takes longer than running', () => {
  const pace = new LanePace();
  pace.recordRun(30);
  pace.recordPrepare(90);
  assert.equal(pace.prepareAheadAfterMs(), 0);
  assert.equal(pace.prepareDepth(), 3, 'enough chunks ready for the commands to cover one preparation');
});

test('short commands that outlast their preparation: the next is still prepared as one starts', () => {
  // A 20 ms command with a 3 ms preparation: "shortly before the end" (14 ms in) was missed
  // whenever the command ended early, and the lane then prepared on its critical path.
  const pace = new LanePace();
  pace.recordRun(20);
  pace.recordPrepare(3);
  assert.equal(pace.prepareAheadAfterMs(), 0);
  assert.equal(pace.prepareDepth(), 1);
});

test('a chunk is prepared shortly before the current one is expected to end, not at its start', () => {
  const pace = new LanePace();
  pace.recordRun(2000);
  pace.recordPrepare(100);
  assert.equal(pace.prepareAheadAfterMs(), 1800);
  assert.equal(pace.prepareDepth(), 1);
});

test('long chunks are never prepared ahead: a claim would sit idle while other hosts wait', () => {
  const pace = new LanePace();
  pace.recordRun(PREPARE_AHEAD_MAX_RUN_MS + 1);
  pace.recordPrepare(10);
  assert.equal(pace.prepareAheadAfterMs(), undefined);
});

test('depth is capped: a slow mount does not make a lane hoard claims', () => {
  const pace = new LanePace();
  pace.recordRun(1);
  pace.recordPrepare(500);
  assert.equal(pace.prepareDepth(), 8);
});

test('the averages follow a change in chunk length', () => {
  const pace = new LanePace();
  pace.recordRun(100);
  for (let i = 0; i < 40; i++) pace.recordRun(60_000);
  assert.equal(pace.prepareAheadAfterMs(), undefined, 'chunks became long: no more preparing ahead');
});

test('settlesWithin: true when the promise settles first (rejections too), false after the time', async () => {
  assert.equal(await settlesWithin(Promise.resolve(), 50), true);
  assert.equal(await settlesWithin(Promise.reject(new Error('x')), 50), true);
  assert.equal(await settlesWithin(new Promise(() => {}), 20), false);
  assert.equal(await settlesWithin(Promise.resolve(), 0), false, 'no waiting at all when asked for 0 ms');
});
