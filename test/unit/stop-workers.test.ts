// templates/stop-workers.sh on this machine (what `stop --now` runs on each host over SSH): it
// finds the job's workers by argv and job id, SIGTERMs them, SIGKILLs what is left after the
// grace period together with the commands they started, and touches nothing else.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseStopOutput, renderStopScript } from '../../src/remote/stop.js';

const dir = join(tmpdir(), `pw${process.pid}-stop-workers-test`);
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

function alive(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** A stand-in worker: `node <tool> work <job>`; it obeys SIGTERM or ignores it, and runs a "command". */
function startWorker(tool: string, job: string): { pid: number; childPid: () => number | undefined } {
  const child = spawn(process.execPath, [tool, 'work', job, '-j', '1', '--', 'cat'], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  children.push(child);
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return { pid: child.pid!, childPid: () => (/^child (\d+)$/m.exec(out) ? Number(/^child (\d+)$/m.exec(out)![1]) : undefined) };
}

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

void test('stop-workers ends this job\'s workers (by path and by id), escalates to SIGKILL with their commands, and spares the rest', async () => {
  for (const name of ['jobA', 'jobB', 'bin']) mkdirSync(join(dir, name), { recursive: true });
  writeFileSync(join(dir, 'jobA', 'job.json'), JSON.stringify({ tool: 'piecework', id: 'aaaa1111' }, null, 2));
  writeFileSync(join(dir, 'jobB', 'job.json'), JSON.stringify({ tool: 'piecework', id: 'bbbb2222' }, null, 2));
  // The same job under another name (another mount point on the host).
  symlinkSync(join(dir, 'jobA'), join(dir, 'alias'));
  const obeying = join(dir, 'bin', 'piecework.mjs');
  writeFileSync(obeying, "process.on('SIGTERM', () => process.exit(143));\nsetInterval(() => {}, 1000);\n");
  const stubborn = join(dir, 'stubborn', 'piecework.mjs');
  mkdirSync(join(dir, 'stubborn'));
  writeFileSync(
    stubborn,
    "import { spawn } from 'node:child_process';\nconst c = spawn('sleep', ['300'], { detached: true, stdio: 'ignore' });\nconsole.log('child ' + c.pid);\nprocess.on('SIGTERM', () => {});\nsetInterval(() => {}, 1000);\n",
  );
  const other = join(dir, 'bin', 'other.mjs');
  writeFileSync(other, 'setInterval(() => {}, 1000);\n');

  const byPath = startWorker(obeying, join(dir, 'jobA'));
  const byId = startWorker(stubborn, join(dir, 'alias'));
  const otherJob = startWorker(obeying, join(dir, 'jobB'));
  const notPiecework = startWorker(other, join(dir, 'jobA'));
  await until(() => byId.childPid() !== undefined);
  const command = byId.childPid()!;

  const script = await renderStopScript({ remoteJob: `${join(dir, 'jobA')}/`, jobId: 'aaaa1111', graceSeconds: 1 });
  const run = spawnSync('sh', ['-s'], { input: script, encoding: 'utf8', timeout: 30_000 });
  assert.equal(run.status, 0, run.stderr);
  const out = parseStopOutput(run.stdout);
  assert.deepEqual(out.found?.sort(), [byPath.pid, byId.pid].sort());
  assert.deepEqual(out.exited, [byPath.pid]);
  assert.deepEqual(out.killed?.sort(), [byId.pid, command].sort());
  await until(() => !alive(byPath.pid) && !alive(byId.pid) && !alive(command));
  assert.ok(alive(otherJob.pid), 'a worker of another job is spared');
  assert.ok(alive(notPiecework.pid), 'a process that is not piecework is spared');

  // Nothing left: found= is empty, and the script still succeeds.
  const again = spawnSync('sh', ['-s'], { input: script, encoding: 'utf8', timeout: 30_000 });
  assert.equal(again.status, 0, again.stderr);
  assert.deepEqual(parseStopOutput(again.stdout), { found: [], exited: [], killed: [] });
});

void test('stop-workers refuses bad values', async () => {
  const script = (await renderStopScript({ remoteJob: '/x', graceSeconds: 1 })).replace("\nPW_GRACE=1\n", "\nPW_GRACE=soon\n");
  const run = spawnSync('sh', ['-s'], { input: script, encoding: 'utf8' });
  assert.equal(run.status, 2);
  assert.match(run.stderr, /PW_GRACE must be whole seconds/);
});
