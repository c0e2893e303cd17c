import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { collect, killGroup, piecework, runPiecework, startPiecework } from '../helpers/cli.js';
import { waitUntil } from '../helpers/wait.js';
import { readdirSync } from 'node:fs';
import { quoteArgv } from '../../src/remote/quote.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-progress-${process.pid}-`));
after(() => fs.rm(root, { recursive: true, force: true }));

/** Run the CLI with a terminal on stdin/stdout/stderr (util-linux `script` makes a pty). */
function inTerminal(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; output: string }> {
  const command = `stty cols 120 rows 40; ${quoteArgv([process.execPath, piecework, ...args])}`;
  const child = spawn('script', ['-qec', command, '/dev/null'], { env: { ...process.env, CI: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
}

async function makeJob(name: string, chunks: number): Promise<string> {
  const input = path.join(root, `${name}.txt`);
  await fs.writeFile(input, Array.from({ length: chunks }, (_, i) => `line ${i}`).join('\n') + '\n');
  return path.join(root, name);
}

test('on a terminal split, work and merge draw a progress bar with an ETA, then clear it for the summary', async () => {
  const input = await makeJob('tty', 30);
  const split = await inTerminal(['split', `${input}.txt`, '--into', input, '--lines', '1']);
  assert.equal(split.code, 0, split.output);
  const work = await inTerminal(['work', input, '-j', '2', '--', 'sh', '-c', 'sleep 0.1; cat']);
  assert.equal(work.code, 0, work.output);
  assert.match(work.output, /work +█*░* +\d+% +\d+\/30/);
  assert.match(work.output, /ETA \d+s/);
  assert.match(work.output, /\u001b\[0Jwork: job complete \(30 chunks\)/, 'the bar is cleared before the summary');
  const merge = await inTerminal(['merge', input, '-o', path.join(root, 'merged.txt')]);
  assert.equal(merge.code, 0, merge.output);
  assert.match(merge.output, /merge: 30 outputs/);
});

test('NO_COLOR: the bar is drawn without colour codes; failures still print as whole lines', async () => {
  const input = await makeJob('nocolor', 6);
  await runPiecework(['split', `${input}.txt`, '--into', input, '--lines', '1']);
  const work = await inTerminal(['work', input, '-j', '1', '--retries', '0', '--', 'sh', '-c', 'test "$PIECEWORK_NAME" != 000002 && cat'], { NO_COLOR: '1' });
  assert.equal(work.code, 1);
  assert.match(work.output, /failed chunk 000002 \(attempt 1, no retries left\): exit 1\r?\n/);
  assert.doesNotMatch(work.output, /\u001b\[3\dm/);
});

test('not a terminal: no bar at all, nothing but the summary', async () => {
  const input = await makeJob('pipe', 5);
  await runPiecework(['split', `${input}.txt`, '--into', input, '--lines', '1']);
  const work = await runPiecework(['work', input, '--', 'cat']);
  assert.equal(work.code, 0);
  assert.equal(work.stderr, 'work: job complete (5 chunks); this worker: 5 outputs committed\n');
});

test("a worker's bar shows the job's progress, other workers' outputs included, with its own share beside it", async () => {
  const job = await makeJob('shared', 30);
  await runPiecework(['split', `${job}.txt`, '--into', job, '--lines', '1']);
  // A, on a terminal, is slow; B, elsewhere, does most of the job meanwhile and is then stopped,
  // so A's claims keep finding B's outputs between its own slow chunks.
  const slow = inTerminal(['work', job, '-j', '1', '--', 'sh', '-c', 'sleep 0.4; cat']);
  const outputs = () => readdirSync(path.join(job, 'out')).length;
  await waitUntil(() => outputs() >= 1, 10_000, "A's first output");
  const fast = startPiecework(['work', job, '-j', '2', '--quiet', '--', 'sh', '-c', 'sleep 0.02; cat']);
  const fastResult = collect(fast);
  try {
    await waitUntil(() => outputs() >= 20, 20_000, '20 outputs');
  } finally {
    killGroup(fast, 'SIGTERM');
  }
  await fastResult;
  const work = await slow;
  assert.equal(work.code, 0, work.output);
  const frames = [...work.output.matchAll(/(\d+)\/30 · this worker (\d+)/g)].map((m) => ({ job: Number(m[1]), mine: Number(m[2]) }));
  assert.ok(frames.length > 0, work.output);
  assert.ok(frames.some((f) => f.job >= f.mine + 10 && f.job < 30), `a frame before the end counts the other worker's outputs: ${JSON.stringify(frames)}`);
});
