/**
 * Starting commands through a lane's fork server (issue 11) must behave exactly as node's spawn:
 * every test runs the same chunk through node's spawn, a bash fork server and a plain-sh one (sh
 * with setsid(1)), with real processes, and expects the same result from each.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { openChunkIo, prepareCommand, runChunk, type ChunkRunResult } from '../../src/core/work/run-chunk.js';
import type { CommandStarter } from '../../src/core/spawn/command-starter.js';
import { FORK_SERVER_SCRIPT } from '../../src/core/spawn/fork-server-script.js';
import { ForkServerStarter } from '../../src/core/spawn/fork-server-starter.js';
import { nodeStarter } from '../../src/core/spawn/node-starter.js';
import { StderrCapture } from '../../src/core/work/stderr-capture.js';
import { StopSignal } from '../../src/core/work/stop-signal.js';
import { ChunkCgroup } from '../../src/core/work/chunk-cgroup.js';
import { runCleanups } from '../helpers/cleanup.js';
import { runPiecework } from '../helpers/cli.js';
import { makeTempDir } from '../helpers/tmp.js';
import { waitUntil } from '../helpers/wait.js';

const root = makeTempDir('fork-server');
const stderr = await StderrCapture.open();
const starters: Record<string, CommandStarter> = {
  node: nodeStarter,
  bash: new ForkServerStarter({ shell: 'bash', env: { ...process.env, PIECEWORK_LANE: '0', PIECEWORK_WORKER: 'w' }, stderrFd: stderr.fd }),
  sh: new ForkServerStarter({ shell: 'sh', env: { ...process.env, PIECEWORK_LANE: '0', PIECEWORK_WORKER: 'w' }, stderrFd: stderr.fd }),
};
after(async () => {
  await Promise.all(Object.values(starters).map((starter) => starter.close()));
  await stderr.close();
  await runCleanups();
});

let serial = 0;
interface Ran extends ChunkRunResult {
  output: string;
}

/** One chunk whose data is `input`, run with `argv` through `starter`; its output read back. */
async function runOne(starter: CommandStarter, argv: string[], options: { input?: string; timeoutMs?: number; stop?: StopSignal; files?: string[]; opened?: (tempOutput: string) => void } = {}): Promise<Ran> {
  const n = ++serial;
  const chunkPath = path.join(root, `chunk-${n}`);
  const tempOutput = path.join(root, `out-${n}`);
  writeFileSync(chunkPath, options.input ?? '');
  const template = prepareCommand(argv);
  const io = await openChunkIo(template, { chunkPath, files: options.files, tempOutput });
  options.opened?.(tempOutput);
  try {
    const result = await runChunk(
      template,
      { chunk: `c${n}`, chunkPath, files: options.files, tempOutput, job: root, attempt: 1, lane: 0, worker: 'w', timeoutMs: options.timeoutMs, stop: options.stop ?? new StopSignal(), stderr, starter },
      io,
    );
    return { ...result, output: existsSync(tempOutput) ? readFileSync(tempOutput, 'utf8') : '' };
  } finally {
    await io.close();
  }
}

/** The same chunk through every starter: their results, which must agree. */
async function runEverywhere(argv: string[], options: Parameters<typeof runOne>[2] = {}): Promise<Ran> {
  const results: Record<string, Ran> = {};
  for (const [name, starter] of Object.entries(starters)) results[name] = await runOne(starter, argv, options);
  for (const name of ['bash', 'sh']) assert.deepEqual(results[name], results.node, `${name} fork server gives what node's spawn gives for ${JSON.stringify(argv)}`);
  return results.node!;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('the servers start in the mode asked for', async () => {
  assert.equal(await (starters.bash as ForkServerStarter).ready(), 'fork-server (bash)');
  assert.equal(await (starters.sh as ForkServerStarter).ready(), 'fork-server (sh)');
});

test('argv reaches exec intact: spaces, newlines, quotes, $, globs, backslashes, non-ASCII', async () => {
  const tricky = ['two words', 'new\nline', "it's", '"dq"', '$HOME', '$(touch /tmp/pw-pwned)', '`id`', '*', '~', '-n', 'a\\b', '\\n', 'é ü', '日本語 😀', "é'ü", '', "'", 'tab\there', '\r'];
  const result = await runEverywhere(['printf', '%s\\0', ...tricky]);
  assert.equal(result.ok, true);
  assert.deepEqual(result.output.split('\0').slice(0, -1), tricky);
  assert.equal(existsSync('/tmp/pw-pwned'), false);
});

test('a request longer than a pipe holds reaches exec whole', async () => {
  // bash reads a counted request (shell-words.ts): a pipe hands it over in pieces of 64 KiB.
  const long = ['x'.repeat(100_000), 'é'.repeat(20_000)];
  const result = await runEverywhere(['printf', '%s\\0', ...long]);
  assert.deepEqual(result.output.split('\0').slice(0, -1), long);
});

test('the bash server reads a request in a few system calls, not one per byte', async () => {
  const bash = await (starters.bash as ForkServerStarter).ready();
  assert.equal(bash, 'fork-server (bash)');
  // The server is this process's child whose command name is bash; /proc/PID/io counts its reads.
  const servers = execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(process.pid)]).toString().trim().split('\n').map((line) => line.trim().split(/\s+/)).filter(([, comm]) => comm === 'bash');
  assert.equal(servers.length, 1, `one bash server among ${JSON.stringify(servers)}`);
  const reads = () => Number(/^syscr: (\d+)$/m.exec(readFileSync(`/proc/${servers[0]![0]}/io`, 'utf8'))![1]);
  const words = Array.from({ length: 100 }, (_, i) => `argument-${i}`); // a request of ~1.5 KB
  await runOne(starters.bash!, ['true', ...words]);
  const before = reads();
  const result = await runOne(starters.bash!, ['true', ...words]);
  assert.equal(result.ok, true);
  const delta = reads() - before;
  assert.ok(delta < 20, `${delta} reads for one request`);
});

test('stdin is the chunk, stdout the output; the PIECEWORK_ values are in the environment', async () => {
  const piped = await runEverywhere(['cat'], { input: 'line 1\nline 2\n' });
  assert.equal(piped.output, 'line 1\nline 2\n');
  // Each starter runs its own chunk: compare what does not depend on the chunk's name.
  for (const starter of Object.values(starters)) {
    const env = await runOne(starter, ['sh', '-c', 'printf "%s|%s|%s|%s" "$PIECEWORK_NAME" "$PIECEWORK_ATTEMPT" "$PIECEWORK_LANE" "$PIECEWORK_WORKER"']);
    assert.equal(env.output, `c${serial}|1|0|w`);
  }
  const placeholders = await runEverywhere(['sh', '-c', 'cat "$1" > "$2"; echo done', 'sh', '{in}', '{out}'], { input: 'by name\n' });
  assert.equal(placeholders.ok, true);
});

test('stdout is the file the worker opened, as it opened it: not truncated a second time', async () => {
  // The worker hands over a fresh empty file. A shell's `>` truncates it again, and ext4 takes a
  // truncated file for one being replaced: it writes the file out when it is closed, and its
  // removal then waits for the disk (0.3 ms a chunk idle, ~2 ms busy: SFTP staging, `make bench`).
  // Seen here through a file that is not empty when the command starts.
  const result = await runEverywhere(['true'], { opened: (tempOutput) => writeFileSync(tempOutput, 'there before\n') });
  assert.equal(result.output, 'there before\n');
});

test('exit statuses, signals and stderr come back as from node', async () => {
  const failed = await runEverywhere(['sh', '-c', 'echo oops >&2; exit 3']);
  assert.equal(failed.exitCode, 3);
  assert.equal(failed.stderrTail, 'oops\n');
  const crashed = await runEverywhere(['sh', '-c', 'kill -SEGV $$']);
  assert.equal(crashed.signal, 'SIGSEGV');
  assert.equal(crashed.exitCode, null);
  const ok = await runEverywhere(['true']);
  assert.equal(ok.ok, true);
});

test('126/127: a missing or non-executable command is a spawn error; a script exiting 127 is not', async () => {
  const missing = await runEverywhere([path.join(root, 'no-such-command'), 'x']);
  assert.equal(missing.spawnError, 'ENOENT');
  assert.equal(missing.reason.startsWith('command not found'), true);
  const missingByName = await runEverywhere(['pw-no-such-command-anywhere']);
  assert.equal(missingByName.spawnError, 'ENOENT');
  const plain = path.join(root, 'not-executable');
  writeFileSync(plain, '#!/bin/sh\necho hi\n');
  chmodSync(plain, 0o644);
  const denied = await runEverywhere([plain]);
  assert.equal(denied.spawnError, 'EACCES');
  const inner = await runEverywhere(['sh', '-c', 'exit 127']);
  assert.equal(inner.exitCode, 127);
  assert.equal(inner.spawnError, undefined);
});

test('the command leads its own process group and SIGINT is not ignored in it', async () => {
  for (const starter of Object.values(starters)) {
    const result = await runOne(starter, ['sh', '-c', 'read -r pid _ _ _ pgid _ < /proc/self/stat; echo "$pid $pgid"; grep SigIgn /proc/self/status']);
    const [ids, ignored] = result.output.trim().split('\n');
    const [pid, pgid] = ids!.split(' ');
    assert.equal(pid, pgid, `${starter.kind}: the command's pid is its process group`);
    // SIGINT is bit 1 of the mask. (Other bits may be inherited from whatever started the tests.)
    const mask = BigInt(`0x${/SigIgn:\s+([0-9a-f]+)/.exec(ignored!)![1]}`);
    assert.equal(mask & 2n, 0n, `${starter.kind}: SIGINT is not ignored (${ignored})`);
  }
});

describe('stopping', () => {
  for (const name of Object.keys(starters)) {
    test(`${name}: --timeout kills the whole tree, grandchild included`, async () => {
      const pidFile = path.join(root, `grandchild-${name}`);
      const result = await runOne(starters[name]!, ['sh', '-c', `sleep 30 & echo $! > ${pidFile}; wait`], { timeoutMs: 400 });
      assert.equal(result.timedOut, true);
      assert.equal(result.ok, false);
      assert.equal(result.signal, 'SIGTERM');
      const grandchild = Number(readFileSync(pidFile, 'utf8'));
      await waitUntil(() => !alive(grandchild), 5000, `grandchild ${grandchild} to be killed`);
    });

    test(`${name}: aborting stops the command`, async () => {
      const pidFile = path.join(root, `abort-${name}`);
      const stop = new StopSignal();
      const running = runOne(starters[name]!, ['sh', '-c', `echo $$ > ${pidFile}; exec sleep 30`], { stop });
      await waitUntil(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').length > 0, 5000, 'the command to start');
      stop.stop();
      const result = await running;
      assert.equal(result.aborted, true);
      assert.equal(result.ok, false);
    });

    test(`${name}: aborted before it starts, it never runs on`, async () => {
      const stop = new StopSignal();
      stop.stop();
      const started = Date.now();
      const result = await runOne(starters[name]!, ['sleep', '30'], { stop });
      assert.equal(result.aborted, true);
      assert.ok(Date.now() - started < 5000, 'ended at once');
    });
  }
});

for (const name of ['bash', 'sh']) {
  test(`${name}: a fork server killed mid-run fails that chunk clearly, kills its command, and is restarted`, async () => {
    const pidFile = path.join(root, `orphan-${name}`);
    const running = runOne(starters[name]!, ['sh', '-c', `echo $$ > ${pidFile}; exec sleep 30`]);
    await waitUntil(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').length > 0, 5000, 'the command to start');
    const command = Number(readFileSync(pidFile, 'utf8'));
    const server = Number(readFileSync(`/proc/${command}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
    process.kill(server, 'SIGKILL');
    const result = await running;
    assert.equal(result.ok, false);
    assert.match(result.reason, /fork server ended \(killed by SIGKILL\); its command was killed/);
    await waitUntil(() => !alive(command), 5000, 'the orphaned command to be killed');
    const next = await runOne(starters[name]!, ['cat'], { input: 'again\n' });
    assert.equal(next.output, 'again\n');
    assert.equal(starters[name]!.kind, `fork-server (${name})`);
  });
}

test('the lane cgroup: a fork server child joins it before its exec (not moved in afterwards); node moves its child in', { skip: process.getuid?.() !== 0 && 'cgroups are made by root here' }, async (t) => {
  const cgroup = await ChunkCgroup.open(`fork-server-test.${process.pid}.0`);
  if (!cgroup) return t.skip('no cgroup2 mount here');
  try {
    for (const [name, starter] of Object.entries(starters)) {
      const adopted: number[] = [];
      const output = path.join(root, `cgroup-${name}`);
      const fd = openSync(output, 'w');
      try {
        const started = starter.start({
          file: 'cat',
          argv: ['cat', '/proc/self/cgroup'],
          env: process.env,
          chunkEnv: {},
          stdin: 'ignore',
          stdinSources: [],
          stdout: fd,
          stderrFd: stderr.fd,
          // Records, moves nothing: only a child that joined by itself can be in the cgroup.
          cgroup: { procsFile: cgroup.procsFile, adopt: (pid) => void adopted.push(pid) },
        });
        assert.equal((await started.ended).exitCode, 0, name);
      } finally {
        closeSync(fd);
      }
      if (name === 'node') assert.equal(adopted.length, 1, 'node: the child is moved in by its pid');
      else {
        assert.match(readFileSync(output, 'utf8'), new RegExp(`^0::/.*${path.basename(cgroup.path)}$`, 'm'), `${name}: the command ran in the lane cgroup`);
        assert.deepEqual(adopted, [], `${name}: nothing to move afterwards`);
      }
    }
  } finally {
    await cgroup.close();
  }
});

test('a multi-file stdin goes through node, with the same result', async () => {
  const a = path.join(root, 'file-a');
  const b = path.join(root, 'file-b');
  writeFileSync(a, 'from a\n');
  writeFileSync(b, 'from b\n');
  const result = await runEverywhere(['cat'], { files: [a, b] });
  assert.equal(result.output, 'from a\nfrom b\n');
});

test('a shell that is not there: the lane falls back to node, and says why', async () => {
  const starter = new ForkServerStarter({ shell: '/nonexistent/bash', env: process.env, stderrFd: stderr.fd });
  assert.equal(await starter.ready(), 'node');
  assert.match(starter.fallbackReason ?? '', /ENOENT/);
  const result = await runOne(starter, ['cat'], { input: 'still works\n' });
  assert.equal(result.output, 'still works\n');
  await starter.close();
});

test('work: both ways give the same outputs; a bad PIECEWORK_SPAWN is a usage error, not a stack', async () => {
  const input = path.join(root, 'lines.txt');
  writeFileSync(input, Array.from({ length: 40 }, (_, i) => `line ${i}\n`).join(''));
  const merged: Record<string, string> = {};
  for (const way of ['node', 'bash', 'sh', 'auto']) {
    const job = (await runPiecework(['split', input, '--into', path.join(root, `job-${way}`), '--lines', '3'])).stdout.trim();
    const worked = await runPiecework(['work', job, '-j', '2', '-q', '--', 'tr', 'a-z', 'A-Z'], { env: { PIECEWORK_SPAWN: way } });
    assert.equal(worked.code, 0, worked.stderr);
    merged[way] = (await runPiecework(['merge', job])).stdout;
  }
  for (const way of ['bash', 'sh', 'auto']) assert.equal(merged[way], merged.node, `${way} merges as node`);
  assert.equal(merged.node, readFileSync(input, 'utf8').toUpperCase());
  const bad = await runPiecework(['work', path.join(root, 'job-node'), '--', 'cat'], { env: { PIECEWORK_SPAWN: 'fork' } });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /PIECEWORK_SPAWN=fork: not a way to start commands/);
  assert.doesNotMatch(bad.stderr, /at .*\.js:\d+/);
});

test('the fork server script is shellcheck-clean as sh and as bash', { skip: !hasShellcheck() && 'shellcheck is not installed' }, () => {
  const script = path.join(root, 'fork-server.sh');
  writeFileSync(script, FORK_SERVER_SCRIPT);
  for (const shell of ['sh', 'bash']) execFileSync('shellcheck', ['-s', shell, script], { stdio: 'pipe' });
});

function hasShellcheck(): boolean {
  try {
    execFileSync('shellcheck', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
