import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { piecework, runPiecework } from '../helpers/cli.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-completion-${process.pid}-`));
after(() => fs.rm(root, { recursive: true, force: true }));

test('yargs answers completion queries on the strict parser without running a command', async () => {
  const commands = await runPiecework(['--get-yargs-completions', 'piecework', '']);
  assert.equal(commands.code, 0, commands.stderr);
  for (const name of ['split', 'work', 'verify', 'merge', 'status', 'dashboard', 'completion']) assert.match(commands.stdout, new RegExp(`^${name}$`, 'm'));
  const flags = await runPiecework(['--get-yargs-completions', 'piecework', 'status', '--']);
  assert.match(flags.stdout, /^--watch$/m);
  assert.match(flags.stdout, /^--interval$/m);
  // The words are only completed, never run: no job, no error.
  const noRun = await runPiecework(['--get-yargs-completions', 'piecework', 'status', '/nonexistent', '']);
  assert.equal(noRun.code, 0);
  assert.equal(noRun.stderr, '');
});

/** Source the bash script, complete `words`, and return what bash would offer. */
function bashComplete(script: string, words: string[]): string[] {
  const program = [
    `source ${JSON.stringify(script)}`,
    `COMP_WORDS=(${words.map((w) => JSON.stringify(w)).join(' ')}); COMP_CWORD=${words.length - 1}`,
    '_piecework_completions; printf "%s\\n" "${COMPREPLY[@]}"',
  ].join('\n');
  // The script calls the piecework the user typed: put ours first on PATH under that name.
  const result = spawnSync('bash', ['--norc', '-c', program], { encoding: 'utf8', env: { ...process.env, PATH: `${path.dirname(piecework)}:${process.env.PATH}`, SHELL: '/bin/zsh' } });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout.split('\n').filter(Boolean);
}

test('the bash script completes commands and flags, and leaves paths to bash', async () => {
  const printed = await runPiecework(['completion', 'bash']);
  assert.equal(printed.code, 0);
  assert.match(printed.stdout, /complete -o bashdefault -o default -F _piecework_completions piecework/);
  const script = path.join(root, 'piecework.bash');
  await fs.writeFile(script, printed.stdout);
  assert.deepEqual(bashComplete(script, ['piecework', 'st']), ['stop', 'status']);
  assert.deepEqual(bashComplete(script, ['piecework', 'status', '--w']), ['--watch', '--w']);
  // A JOB argument: nothing from piecework, so bash's own file completion (-o default) takes over.
  assert.deepEqual(bashComplete(script, ['piecework', 'status', '/tm']), []);
});

test('the zsh script is chosen by name or by $SHELL and is valid zsh', async (t) => {
  const zsh = await runPiecework(['completion'], { env: { SHELL: '/usr/bin/zsh' } });
  assert.match(zsh.stdout, /^#compdef piecework/);
  assert.match((await runPiecework(['completion'], { env: { SHELL: '/bin/bash' } })).stdout, /^###-begin-piecework-completions-###/);
  assert.equal((await runPiecework(['completion', 'fish'])).code, 2);
  if (spawnSync('zsh', ['--version']).status !== 0) return t.skip('zsh is not installed');
  const file = path.join(root, '_piecework');
  await fs.writeFile(file, zsh.stdout);
  assert.equal(spawnSync('zsh', ['-n', file]).status, 0);
});
