/**
 * The chaos run: workers SIGKILLed, SIGSTOPped past the stale period and resumed, `verify
 * --requeue` every few seconds and `merge --follow` alongside — then the invariants, for each of
 * several seeds: every chunk has exactly one complete output, merge and the follower are
 * byte-identical to a serial run, no successful chunk was charged a failed attempt. Everything
 * reaches the job through its path here; chaos-sftp.test.ts runs the same chaos over SFTP.
 */
import { test, after } from 'node:test';
import { chaosSeeds, runChaos } from '../helpers/chaos.js';
import { makeTempDir } from '../helpers/tmp.js';
import { runCleanups } from '../helpers/cleanup.js';

const root = makeTempDir('chaos');
const SEEDS = chaosSeeds([1, 2, 3]);

after(() => runCleanups());

for (const seed of SEEDS) {
  test(`chaos, seed ${seed}: kills, freezes past the stale period, requeues and a follower — one output per chunk, merges equal a serial run`, async (t) => {
    await runChaos({ name: `seed-${seed}`, seed, root, worker: (job) => ({ address: job, kind: 'posix' }), report: (line) => t.diagnostic(line) });
  });
}
