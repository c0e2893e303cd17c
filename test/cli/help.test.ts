/**
 * Help and mistakes of everyday use (issue 12): examples that can be copied at 80 columns, usage
 * lines that show the command after --, and hints for a command given without -- or as one string.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runPiecework } from '../helpers/cli.js';
import { lineJob } from '../helpers/job.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-help-${process.pid}-`));
after(() => fs.rm(root, { recursive: true, force: true }));

/** The help's lines with ` \` continuations joined back, as a shell would read a pasted example. */
const joined = (help: string) => help.replace(/ \\\n\s*/g, ' ');

test('at 80 columns every example stays whole and copyable: no line is wider, long ones continue with \\', async () => {
  for (const [command, example] of [
    ['work', "piecework work jobs/x --timeout 600 --retries 1 -- sh -c 'sort {in} | uniq -c'"],
    ['launch', 'piecework launch /srv/share/jobs/score --hosts 4/lab1,4/lab2 --mount me@head:/srv/share --at /mnt/share -- ./score.sh'],
    ['verify', 'piecework verify jobs/x --check --requeue -- python3 -m json.tool {out}'],
  ] as const) {
    const help = await runPiecework([command, '--help'], { env: { COLUMNS: '80' } });
    assert.equal(help.code, 0, help.stderr);
    for (const line of help.stdout.split('\n')) assert.ok(line.length <= 80, `${command} --help: a line of ${line.length} columns: ${line}`);
    assert.ok(joined(help.stdout).split('\n').some((line) => line.trim() === example), `${command} --help shows, copyable:\n${example}\n---\n${help.stdout}`);
  }
});

test('usage lines show the command after --', async () => {
  const usage = async (...args: string[]) => (await runPiecework([...args, '--help'])).stdout.trim().split('\n')[0];
  assert.equal(await usage('work'), 'piecework work <job> [options] -- COMMAND ARGS…');
  assert.equal(await usage('launch'), 'piecework launch <job> [options] -- COMMAND ARGS…');
  assert.equal(await usage('verify'), 'piecework verify <job> [options] [--check -- VALIDATOR ARGS…]');
  assert.equal(await usage('merge'), 'piecework merge <job> [options] [--reduce -- COMMAND ARGS…]');
});

test('`work J wc -l` (no --): a usage error that says the command goes after --', async () => {
  const job = await lineJob(root, 'no-dashes', 1);
  const result = await runPiecework(['work', job, 'wc', '-l']);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /^piecework: Unknown arguments: l, wc\n {2}the command to run goes after --, e\.g\. piecework work JOB … -- wc -l\n$/);
  // Elsewhere the hint stays the general one.
  const other = await runPiecework(['status', job, 'extra']);
  assert.match(other.stderr, /see `piecework --help`/);
});

test("-- 'sort | uniq -c' (a shell line as one argument): not found, with the sh -c line to write", async () => {
  const job = await lineJob(root, 'shell-line', 1);
  const result = await runPiecework(['work', job, '--', 'sort | uniq -c']);
  assert.equal(result.code, 127);
  assert.match(result.stderr, /piecework: command not found: sort \| uniq -c \(exit 127\) on this host\n {2}commands run without a shell, so "sort \| uniq -c" was taken as the name of one program: for a pipeline or other shell syntax write -- sh -c 'sort \| uniq -c'/);
  assert.doesNotMatch(result.stderr, /\n\s+at /);
  // A plain missing program keeps the install hint.
  const missing = await runPiecework(['work', await lineJob(root, 'missing', 1), '--', 'no-such-program-pw']);
  assert.equal(missing.code, 127);
  assert.match(missing.stderr, /install it on every worker host/);
});
