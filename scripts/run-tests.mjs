// Runs the test suite with node's test runner over TypeScript sources (through tsx).
// `node scripts/run-tests.mjs [tier…]` — tiers: unit, cli, store, e2e, cluster (default: all).
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

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
// A second reporter records the failures for the recap at the end.
const recapDir = mkdtempSync(join(tmpdir(), `piecework-test-recap-${process.pid}-`));
const failuresFile = join(recapDir, 'failures.jsonl');
const reporters = ['--test-reporter=spec', '--test-reporter-destination=stdout', '--test-reporter=./scripts/failures-reporter.mjs', `--test-reporter-destination=${failuresFile}`];
// Everything the tests and the processes they start put in $TMPDIR lands in one folder of this
// run, removed at the end: also what no test can remove, such as the staging folder of an SFTP
// worker that a fault test SIGKILLs. Sticky and world-writable as /tmp is: some tests run as nobody.
const suiteTmp = mkdtempSync(join(tmpdir(), `pwt${process.pid}-`));
chmodSync(suiteTmp, 0o1777);
const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...reporters, ...files], {
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { ...process.env, TMPDIR: suiteTmp },
});
// Ctrl-C reaches the tests too; the runner stays to remove the suite's folder once they stop.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
// Pass the report through, and close with one plain summary line for CI to read.
let tail = '';
child.stdout.on('data', (data) => {
  process.stdout.write(data);
  tail = (tail + data.toString()).slice(-400_000);
});
child.on('close', (code) => {
  // The runner's own totals come before its list of failures, which can be long: the last match.
  const count = (word) => Number([...tail.matchAll(new RegExp(`ℹ ${word} (\\d+)`, 'g'))].at(-1)?.[1] ?? 0);
  const failures = existsSync(failuresFile)
    ? readFileSync(failuresFile, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line))
    : [];
  rmSync(recapDir, { recursive: true, force: true });
  removeSuiteTmp(suiteTmp);
  // Suites fail because a test in them did: list the tests, each with the first lines of its reason.
  const real = failures.filter((f) => !f.todo && !/^\d+ subtests? failed$/.test(f.reason));
  if (real.length > 0) {
    console.log('\nfailed (the known gaps marked todo are not listed):');
    for (const f of real) {
      const reason = f.reason.split('\n').slice(0, 8).map((line) => line.slice(0, 300)).join('\n      ');
      console.log(`  ✖ ${f.file ? relative(process.cwd(), f.file) : '?'} › ${f.name}\n      ${reason}`);
    }
  }
  console.log(`tests: ${count('pass')} passed, ${count('fail')} failed, ${count('skipped')} skipped`);
  process.exit(code ?? 1);
});

/**
 * Each test unmounts what it mounted; a mount left by a test that crashed is detached (lazily: a
 * dead sshfs would hang anything else) before the folder is removed, so that rm never walks
 * into another file system.
 */
function removeSuiteTmp(dir) {
  const unescape = (field) => field.replace(/\\(\d{3})/g, (_, octal) => String.fromCharCode(parseInt(octal, 8)));
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((line) => unescape(line.split(' ')[1] ?? ''));
  for (const mount of mounts.filter((m) => m.startsWith(dir + '/')).reverse()) spawnSync('umount', ['-l', mount], { stdio: 'ignore' });
  rmSync(dir, { recursive: true, force: true });
}
