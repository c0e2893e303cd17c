/** Heartbeat writes: a write asked for while one is in flight lands after it, with the newer record. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Heartbeat } from '../../src/core/heartbeat.js';
import type { JobStore } from '../../src/core/store/job-store.js';
import type { MountClock } from '../../src/core/store/mount-clock.js';

/** A store whose writes finish only when the test lets them, in the order they were made. */
function heldStore() {
  const written: string[] = [];
  const pending: (() => void)[] = [];
  const store = {
    write: (_folder: string, _name: string, text: string) =>
      new Promise<void>((resolve) => {
        pending.push(() => {
          written.push(JSON.parse(text).state as string);
          resolve();
        });
      }),
  } as unknown as JobStore;
  const releaseNext = async () => {
    for (let turns = 0; pending.length === 0; turns++) {
      assert.ok(turns < 100, 'no write was started');
      await new Promise((resolve) => setImmediate(resolve));
    }
    pending.shift()!();
  };
  return { store, written, releaseNext, pendingCount: () => pending.length };
}

const clock = { now: () => Date.now(), offsetMs: 0 } as unknown as MountClock;
const base = { worker: 'h.1', host: 'h', pid: 1, jobId: 'j', lanes: 1, command: ['cat'], version: '0', intervalMs: 5000 };

test('the final state written while a tick write is in flight is the one left on disk', async () => {
  const { store, written, releaseNext } = heldStore();
  const heartbeat = new Heartbeat(store, clock, base);
  const tick = heartbeat.write();
  const final = heartbeat.write('exited', 'complete');
  await releaseNext();
  await tick;
  await releaseNext();
  await final;
  assert.deepEqual(written, ['running', 'exited']);
});

test('writes asked for while one waits share the queued write', async () => {
  const { store, written, releaseNext, pendingCount } = heldStore();
  const heartbeat = new Heartbeat(store, clock, base);
  const first = heartbeat.write();
  const second = heartbeat.write('draining');
  const third = heartbeat.write('failed', 'boom');
  assert.equal(pendingCount(), 1, 'the queued write starts only when the one in flight ended');
  await releaseNext();
  await first;
  await releaseNext();
  await Promise.all([second, third]);
  assert.deepEqual(written, ['running', 'failed']);
  assert.equal(pendingCount(), 0);
});
