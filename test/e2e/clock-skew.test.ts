/**
 * Invariant 5: hosts' clocks may disagree by minutes. faketime shifts a worker's clock
 * (Date.now) but not the times the file system stamps — exactly a host with a wrong clock
 * sharing a file server. Every chunk's command appends its name to a ledger, so a chunk run
 * twice shows up there.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { collect, killGroup, runPiecework, startPiecework } from '../helpers/cli.js';
import { filesUnder } from '../helpers/job.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-skew-${process.pid}-`));
const everyone: ChildProcess[] = [];
after(async () => {
  everyone.forEach((c) => killGroup(c));
  await fs.rm(root, { recursive: true, force: true });
});

const STALE = 6;

async function makeJob(name: string, count: number): Promise<{ job: string; ledger: string }> {
  const input = path.join(root, `${name}.txt`);
  await fs.writeFile(input, Array.from({ length: count }, (_, i) => `${i}`).join('\n') + '\n');
  const job = (await runPiecework(['split', input, '--lines', '1', '--stale', String(STALE), '--into', path.join(root, name)])).stdout.trim();
  return { job, ledger: path.join(root, `${name}.ledger`) };
}

/** Appends "<chunk> <tag>" to the ledger, then takes `seconds` to copy its input. */
const recording = (ledger: string, tag: string, seconds: number) => ['sh', '-c', `echo "$PIECEWORK_NAME ${tag}" >> ${ledger}; sleep ${seconds}; cat`];

function start(job: string, command: string[], skew?: string) {
  const child = startPiecework(['work', job, '-j', '1', '--quiet', '--', ...command], skew ? { wrapper: ['faketime', '-f', skew] } : {});
  everyone.push(child);
  return { child, result: collect(child) };
}

function ledgerRuns(ledger: string): Map<string, string[]> {
  const runs = new Map<string, string[]>();
  for (const line of readFileSync(ledger, 'utf8').trim().split('\n')) {
    const [chunk, tag] = line.split(' ');
    runs.set(chunk!, [...(runs.get(chunk!) ?? []), tag!]);
  }
  return runs;
}

async function waitForLedger(ledger: string, predicate: (runs: Map<string, string[]>) => boolean): Promise<void> {
  const until = Date.now() + 30_000;
  for (;;) {
    const ok = await fs.access(ledger).then(() => predicate(ledgerRuns(ledger)), () => false);
    if (ok) return;
    if (Date.now() > until) throw new Error('timed out waiting for the ledger');
    await new Promise((r) => setTimeout(r, 100));
  }
}

for (const skew of ['+300s', '-300s']) {
  test(`a worker whose clock is ${skew} off neither steals live claims nor has its own stolen`, async () => {
    const { job, ledger } = await makeJob(`live${skew}`, 6);
    // Chunks last longer than the stale period: only refreshed claims keep them exclusive.
    const skewed = start(job, recording(ledger, 'skewed', STALE + 3), skew);
    const honest = start(job, recording(ledger, 'honest', STALE + 3));
    const results = await Promise.all([skewed.result, honest.result]);
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const twice = [...ledgerRuns(ledger)].filter(([, tags]) => tags.length > 1);
    assert.deepEqual(twice, [], 'no chunk ran twice');
    assert.equal(filesUnder(path.join(job, 'out')).length, 6);
  });
}

test('a worker whose clock is 5 minutes fast dies holding a claim: it is taken over within the stale period, not 5 minutes', async () => {
  const { job, ledger } = await makeJob('dead-fast', 2);
  const fast = start(job, recording(ledger, 'fast', 600), '+300s');
  await waitForLedger(ledger, (runs) => runs.size === 1);
  killGroup(fast.child, 'SIGKILL');
  await fast.result;
  const killedAt = Date.now();
  const honest = start(job, recording(ledger, 'honest', 0));
  const result = await honest.result;
  assert.equal(result.code, 0, result.stderr);
  const recoveredAfter = (Date.now() - killedAt) / 1000;
  assert.ok(recoveredAfter < STALE + 20, `recovered after ${recoveredAfter.toFixed(1)}s (stale ${STALE}s; the skew is 300s)`);
  assert.equal(filesUnder(path.join(job, 'out')).length, 2);
});
