// Runs the test suite with node's test runner over TypeScript sources (through tsx).
// `node scripts/run-tests.mjs [tier…]` — tiers: unit, cli, store, e2e, cluster (default: all).
import { spawn } from 'node:child_process';
import { readdirSync, existsSync } from 'node:fs';

const tiers = process.argv.slice(2).length ? process.argv.slice(2) : ['unit', 'cli', 'store', 'e2e', 'faults', 'cluster'];
const files = tiers.flatMap((tier) => {
  const dir = `test/${tier}`;
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f.endsWith('.test.ts')).sort().map((f) => `${dir}/${f}`);
});
if (files.length === 0) {
  console.error('no test files found for tiers: ' + tiers.join(', '));
  process.exit(1);
}
// One file at a time: cluster tests start sshd and mounts, and this machine has two cores.
const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
// Pass the report through, and close with one plain summary line for CI to read.
let tail = '';
child.stdout.on('data', (data) => {
  process.stdout.write(data);
  tail = (tail + data.toString()).slice(-400_000);
});
child.on('close', (code) => {
  // The runner's own totals come before its list of failures, which can be long: the last match.
  const count = (word) => Number([...tail.matchAll(new RegExp(`ℹ ${word} (\\d+)`, 'g'))].at(-1)?.[1] ?? 0);
  console.log(`tests: ${count('pass')} passed, ${count('fail')} failed, ${count('skipped')} skipped`);
  process.exit(code ?? 1);
});
