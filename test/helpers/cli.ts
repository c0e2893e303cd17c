/**
 * Run the built CLI as a user would: a real process, real exit status, real stdout/stderr.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { registerCleanup } from './cleanup.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const piecework = path.join(repoRoot, 'bin/piecework');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Prefix argv, e.g. ['faketime', '-f', '+300s'] to run the CLI under a skewed clock. */
  wrapper?: string[];
}

/**
 * Workers that a test SIGKILLs cannot remove their lanes' cgroups (src/core/work/chunk-cgroup.ts)
 * nor end their commands: when the test file ends, what is left in those of processes that are
 * gone is killed, and the cgroups removed.
 */
let cgroupSweepRegistered = false;
function sweepLaneCgroupsAtEnd(): void {
  if (cgroupSweepRegistered) return;
  cgroupSweepRegistered = true;
  registerCleanup(() => {
    const root = /^\S+ (\S+) cgroup2 /m.exec(readFileSync('/proc/self/mounts', 'utf8'))?.[1];
    if (!root) return;
    for (const name of readdirSync(root)) {
      const pid = /^piecework-.+\.(\d+)\.\d+$/.exec(name)?.[1];
      if (pid === undefined || existsSync(`/proc/${pid}`)) continue;
      try {
        // A SIGKILLed worker's commands live on (a test that plays a dead host): end them too.
        writeFileSync(path.join(root, name, 'cgroup.kill'), '1');
        removeWhenEmpty(path.join(root, name));
      } catch {
        // still in use, or gone already
      }
    }
  }, 'remove the lane cgroups of workers that were killed');
}

/** `setpriv` argv that runs the CLI as nobody (root reads and writes everything: no EACCES otherwise). */
export const asNobody = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--'];

/**
 * Why tests that run the CLI as nobody cannot run here, or false: a checkout inside a private
 * folder (mktemp -d makes one) hides bin/piecework from nobody.
 */
export function nobodyCannotRun(): string | false {
  const result = spawnSync(asNobody[0]!, [...asNobody.slice(1), 'test', '-r', piecework]);
  return result.status === 0 ? false : `nobody cannot read ${piecework} (a folder on the way is private)`;
}

/** rmdir a cgroup whose processes were just killed: they take a moment to be reaped (≤ 1 s here). */
function removeWhenEmpty(cgroup: string): void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 100; i++) {
    try {
      rmdirSync(cgroup);
      return;
    } catch {
      Atomics.wait(pause, 0, 0, 10);
    }
  }
}

export function startPiecework(args: string[], options: RunOptions = {}): ChildProcess {
  sweepLaneCgroupsAtEnd();
  const argv = [...(options.wrapper ?? []), process.execPath, piecework, ...args];
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: options.cwd,
    env: { ...process.env, NO_COLOR: '1', ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
    // Its own process group, so that a test can kill the worker and every command it started.
    detached: true,
  });
  if (options.input !== undefined) child.stdin.end(options.input);
  else child.stdin.end();
  // faketime keeps its shared clock in /dev/shm under its pid and removes it when it exits by
  // itself; a test that kills the group (SIGKILL) would leave the two files behind.
  if (argv[0] === 'faketime' && child.pid !== undefined) {
    const pid = child.pid;
    child.once('exit', () => {
      for (const name of [`faketime_shm_${pid}`, `sem.faketime_sem_${pid}`]) rmSync(path.join('/dev/shm', name), { force: true });
    });
  }
  return child;
}

export function collect(child: ChildProcess): Promise<RunResult> {
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

export function runPiecework(args: string[], options: RunOptions = {}): Promise<RunResult> {
  return collect(startPiecework(args, options));
}

/** Kill a detached child's whole process group. */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}
