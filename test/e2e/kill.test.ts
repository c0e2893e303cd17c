/**
 * Invariants 1–3 under fire: workers' whole process groups are SIGKILLed at random moments while
 * several of them run; new workers are started in their place. The job must complete, with
 * exactly one complete output per chunk and a merge equal to the serial run.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { collect, killGroup, runPiecework, startPiecework } from '../helpers/cli.js';
import { filesUnder } from '../helpers/job.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-kill-${process.pid}-`));
const everyone: ChildProcess[] = [];
after(async () => {
  everyone.forEach((c) => killGroup(c));
  await fs.rm(root, { recursive: true, force: true });
});

test('random SIGKILLs of whole worker process groups: the job still completes, nothing partial, nothing twice', async () => {
  const lines = Array.from({ length: 3000 }, (_, i) => `record ${i} ${'x'.repeat(i % 50)}`);
  const input = path.join(root, 'input.txt');
  await fs.writeFile(input, lines.join('\n') + '\n');
  const job = (await runPiecework(['split', input, '--lines', '25', '--into', path.join(root, 'job'), '--stale', '2'])).stdout.trim();
  const chunkCount = filesUnder(path.join(job, 'chunks')).length;
  // Slow enough that kills land mid-chunk, and the output is written in two steps with a pause
  // between them, so that a kill can catch a half-written output.
  const command = ['sh', '-c', 'head -c 300 > /tmp/.pw-kill-$$; sleep 0.05; tr a-z A-Z < /tmp/.pw-kill-$$; rm -f /tmp/.pw-kill-$$; tr a-z A-Z'];
  const start = () => {
    const child = startPiecework(['work', job, '-j', '2', '--quiet', '--', ...command]);
    everyone.push(child);
    return { child, result: collect(child) };
  };
  let live = [start(), start(), start()];
  let kills = 0;
  const deadline = Date.now() + 60_000;
  while (kills < 12 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 150 + Math.random() * 450));
    const victim = live[Math.floor(Math.random() * live.length)]!;
    killGroup(victim.child, 'SIGKILL');
    kills++;
    live = live.filter((w) => w !== victim).concat(start());
  }
  const results = await Promise.all(live.map((w) => w.result));
  for (const result of results) assert.equal(result.code, 0, result.stderr);

  const outputs = filesUnder(path.join(job, 'out'));
  assert.equal(outputs.length, chunkCount, 'exactly one output per chunk');
  for (const name of outputs) {
    const chunk = readFileSync(path.join(job, 'chunks', name), 'utf8');
    const expected = chunk.slice(0, 300).toUpperCase() + chunk.slice(300).toUpperCase();
    assert.equal(readFileSync(path.join(job, 'out', name), 'utf8'), expected, `output ${name} is complete`);
  }
  const merged = await runPiecework(['merge', job]);
  assert.equal(merged.stdout, lines.join('\n').toUpperCase() + '\n', 'merge equals the serial run');
  // Killed workers leave temp files; verify reports them and --requeue clears them.
  const verify = await runPiecework(['verify', job, '--requeue']);
  assert.equal(verify.code, 0, verify.stderr);
  // Chunk temps of dead workers go at once. A heartbeat write cut by a kill (a dot-file) goes
  // once it is older than the stale period: until then it cannot be told from a live write.
  assert.deepEqual(filesUnder(path.join(job, '.tmp')).filter((name) => !path.basename(name).startsWith('.')), []);
  // Lane folders of killed workers stay (empty) until their heartbeats go stale; the workers that
  // ran to the end removed theirs.
  const laneFolders = readdirSync(path.join(job, '.tmp'), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  const finishers = new Set(live.map((w) => String(w.child.pid)));
  for (const folder of laneFolders) {
    assert.ok(!finishers.has(folder.split('.')[1]!), `${folder}: a worker that exited cleanly left its lane folder`);
    assert.deepEqual(readdirSync(path.join(job, '.tmp', folder)), [], `${folder} is empty`);
  }
  assert.ok(kills >= 8, `${kills} kills happened`);
});
