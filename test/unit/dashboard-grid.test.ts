import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { StatusScan } from '../../src/core/status-scan.js';
import { orderChunks } from '../../src/core/status-scan.js';
import { chunkGrid, MAX_CELLS } from '../../src/dashboard/grid.js';
import type { JobManifest } from '../../src/core/manifest.js';

function scanOf(chunks: string[], parts: Partial<StatusScan> = {}): StatusScan {
  return {
    job: '/j',
    manifest: { complete: true } as JobManifest,
    clock: { offsetMs: 0, now: () => 0 },
    now: 0,
    staleSeconds: 60,
    chunks,
    done: new Set(),
    stray: [],
    running: [],
    stale: [],
    failed: [],
    heartbeats: [],
    stopRequested: false,
    ...parts,
  };
}

const names = (n: number) => Array.from({ length: n }, (_, i) => String(i).padStart(6, '0'));
const failure = (chunk: string, final: boolean) => ({ chunk, attempts: 1, maxAttempts: 3, final, reason: 'exit 1', host: 'h', at: '', stderrTail: '' });

test('chunks are ordered naturally: groups folder by folder, numbers as numbers, any listing order', () => {
  assert.deepEqual(orderChunks(['000002', '000010', '000001']), ['000001', '000002', '000010']);
  assert.deepEqual(orderChunks(['layer10/000001', 'layer2/000003', 'layer2/000001']), ['layer2/000001', 'layer2/000003', 'layer10/000001']);
  // Mixed widths (a streaming split past 999999) must not fall back to byte order.
  assert.deepEqual(orderChunks(['1000000', '999999']), ['999999', '1000000']);
});

test('one cell per chunk for small jobs, with each state counted in its cell', () => {
  const chunks = names(10).reverse();
  const grid = chunkGrid(
    scanOf(chunks, {
      done: new Set(['000000', '000001', '000009']),
      running: [{ chunk: '000002', ageSeconds: 1 }],
      stale: [{ chunk: '000003', ageSeconds: 900 }],
      failed: [failure('000004', true), failure('000005', false), failure('000003', true)],
    }),
  );
  assert.equal(grid.cells, 10);
  assert.equal(grid.chunksPerCell, 1);
  assert.deepEqual(grid.done, [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual(grid.running, [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
  // A stale claim wins over the failure record of the same chunk: someone will retry it.
  assert.deepEqual(grid.stale, [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(grid.failed, [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
  assert.deepEqual(grid.retrying, [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
  assert.deepEqual(grid.firstChunk, names(10));
});

test('a million chunks fold into at most MAX_CELLS cells of consecutive chunks, fast', () => {
  const chunks = names(1_000_000);
  const done = new Set(chunks.slice(0, 600_000));
  const started = process.hrtime.bigint();
  const grid = chunkGrid(scanOf(chunks, { done, running: [{ chunk: '600001', ageSeconds: 1 }] }));
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  assert.ok(grid.cells <= MAX_CELLS, `${grid.cells} cells`);
  assert.equal(grid.chunksPerCell, Math.ceil(1_000_000 / MAX_CELLS));
  assert.equal(grid.done.reduce((a, b) => a + b, 0), 600_000);
  assert.equal(grid.running[Math.floor(600_001 / grid.chunksPerCell)], 1);
  assert.equal(grid.firstChunk[1], String(grid.chunksPerCell).padStart(6, '0'));
  assert.ok(ms < 3000, `grid took ${ms} ms`);
});
