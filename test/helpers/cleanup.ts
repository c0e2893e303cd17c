// A registry of things to undo (processes, mounts, namespaces, links, temp dirs), run in reverse
// order of registration so that, e.g., a mount is undone before the folder it lives in is removed.
//
// Every undo action is synchronous on purpose: the same code then runs from a test's `after` hook
// and from process 'exit' (where no promise can settle), so a crashing test still cleans up.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve, sep } from 'node:path';

/** Carried by every name this run creates (temp dirs, netns, links) so concurrent runs never collide. */
export const runTag = `pw${process.pid}`;

/** Whether a name carries a run's tag (pw12 must not match pw123's names). */
export function hasTag(name: string, tag = runTag): boolean {
  return new RegExp(`${tag}(?!\\d)`).test(name);
}

/** Environment marker given to every process we spawn, so leftovers can be found in /proc. */
export const markerEnvName = 'PIECEWORK_TESTBED_RUN';
export const markerEnv: Record<string, string> = { [markerEnvName]: runTag };

export interface CleanupHandle {
  /** Undo now (e.g. from a helper's stop()) and forget it; safe to call twice. */
  run(): void;
  /** Forget without undoing. */
  cancel(): void;
}

interface Entry {
  label: string;
  fn: () => void;
  done: boolean;
}

const entries: Entry[] = [];
let hooksInstalled = false;

export function registerCleanup(fn: () => void, label = fn.name || 'cleanup'): CleanupHandle {
  installHooks();
  const entry: Entry = { label, fn, done: false };
  entries.push(entry);
  const forget = (): void => {
    entry.done = true;
    const i = entries.indexOf(entry);
    if (i >= 0) entries.splice(i, 1);
  };
  return {
    run() {
      if (entry.done) return;
      forget();
      fn();
    },
    cancel: forget,
  };
}

/** Undo everything registered so far, newest first. Throws an AggregateError if any step failed. */
export function runCleanups(): Promise<void> {
  const errors = runCleanupsSync();
  if (errors.length === 0) return Promise.resolve();
  return Promise.reject(new AggregateError(errors, `testbed cleanup: ${errors.length} step(s) failed: ${errors.map((e) => e.message).join('; ')}`));
}

/** Best-effort variant for process exit: never throws, returns what failed. */
export function runCleanupsSync(): Error[] {
  const errors: Error[] = [];
  while (entries.length > 0) {
    const entry = entries.pop()!;
    entry.done = true;
    try {
      entry.fn();
    } catch (err) {
      errors.push(new Error(`${entry.label}: ${(err as Error).message}`, { cause: err }));
    }
  }
  return errors;
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  // 'exit' also fires after an uncaught exception, so a crashed test still unmounts and kills.
  process.on('exit', () => {
    for (const e of runCleanupsSync()) process.stderr.write(`testbed cleanup on exit: ${e.message}\n`);
  });
  // A signal handler replaces the default "die at once", so clean, then die by the same signal.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      runCleanupsSync();
      process.kill(process.pid, signal);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Undo primitives (all synchronous, all tolerant of "already gone").

interface ProcInfo {
  pid: number;
  ppid: number;
  pgid: number;
  state: string;
}

export function listProcesses(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // comm (field 2) may contain spaces and parentheses: parse after the last ')'.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.push({ pid: Number(name), state: rest[0] ?? '?', ppid: Number(rest[1]), pgid: Number(rest[2]) });
    } catch {
      // exited while we were reading
    }
  }
  return out;
}

/** Alive and not a zombie: our own dead children stay zombies until the event loop reaps them. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** pid, its process group and all its descendants (sshd puts each connection in a new session,
 * so killing the group alone would leave per-connection children behind). */
export function processTree(pid: number): number[] {
  const procs = listProcesses();
  const found = new Set<number>([pid]);
  for (const p of procs) if (p.pgid === pid) found.add(p.pid);
  let grew = true;
  while (grew) {
    grew = false;
    for (const p of procs) {
      if (found.has(p.ppid) && !found.has(p.pid)) {
        found.add(p.pid);
        grew = true;
      }
    }
  }
  return [...found];
}

export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** SIGTERM a process with its group and descendants; SIGKILL whatever survives graceMs. */
export function killTree(pid: number, graceMs = 2000): void {
  const pids = processTree(pid);
  const signalAll = (signal: NodeJS.Signals): void => {
    try {
      process.kill(-pid, signal);
    } catch {
      // not a group leader, or the group is gone
    }
    for (const p of pids) {
      try {
        process.kill(p, signal);
      } catch {
        // already gone
      }
    }
  };
  signalAll('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (pids.some(isAlive) && Date.now() < deadline) sleepSync(20);
  if (pids.some(isAlive)) signalAll('SIGKILL');
}

export function runSync(argv: readonly string[], timeoutMs = 10_000): { ok: boolean; output: string } {
  const [cmd, ...args] = argv;
  const r = spawnSync(cmd!, args, { encoding: 'utf8', timeout: timeoutMs });
  return { ok: r.status === 0, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? r.error.message : ''}`.trim() };
}

/** Mount points (decoded) as seen by a process's mount namespace ('self' = ours). */
export function mountPoints(pid: number | 'self' = 'self'): string[] {
  try {
    return readFileSync(`/proc/${pid}/mounts`, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => (line.split(' ')[1] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  } catch {
    return [];
  }
}

/**
 * Unmount a FUSE mount. `nsPid` is any live process in the mount namespace that holds the mount
 * (mounts made inside `ip netns exec` are invisible from here). A lazy unmount is the fallback
 * for a busy mount; a dead sshfs leaves a mount that fusermount3 -u still removes.
 */
export function unmountSync(mountPoint: string, nsPid?: number): void {
  const pid = nsPid ?? 'self';
  if (nsPid !== undefined && !isAlive(nsPid)) return; // namespace gone, its mounts with it
  if (!mountPoints(pid).includes(mountPoint)) return;
  const enter = nsPid === undefined ? [] : ['nsenter', '-t', String(nsPid), '-m', '--'];
  if (runSync([...enter, 'fusermount3', '-u', mountPoint]).ok) return;
  const lazy = runSync([...enter, 'umount', '-l', mountPoint]);
  if (!lazy.ok && mountPoints(pid).includes(mountPoint)) throw new Error(`cannot unmount ${mountPoint}: ${lazy.output}`);
}

/** Kill every process in a network namespace (including those in other mount namespaces). */
export function killNetnsProcesses(name: string): void {
  for (let round = 0; round < 5; round++) {
    const pids = runSync(['ip', 'netns', 'pids', name]).output.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number);
    if (pids.length === 0) return;
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    const deadline = Date.now() + 1000;
    while (pids.some(isAlive) && Date.now() < deadline) sleepSync(10);
  }
}

/** A namespace lives on while any process is in it, so kill them before deleting it. */
export function deleteNetnsSync(name: string): void {
  if (!netnsNames().includes(name)) return;
  killNetnsProcesses(name);
  const r = runSync(['ip', 'netns', 'del', name]);
  if (!r.ok && netnsNames().includes(name)) throw new Error(`ip netns del ${name}: ${r.output}`);
}

export function deleteLinkSync(name: string): void {
  if (!linkNames().includes(name)) return;
  const r = runSync(['ip', 'link', 'del', name]);
  if (!r.ok && linkNames().includes(name)) throw new Error(`ip link del ${name}: ${r.output}`);
}

/** rm -rf, but never through a live mount (that would delete the share's contents). */
export function removeDirSync(path: string): void {
  if (!isAbsolute(path) || resolve(path) === sep) throw new Error(`refusing to remove ${path}`);
  for (const mp of mountPoints()) if (mp === path || mp.startsWith(path + sep)) unmountSync(mp);
  rmSync(path, { recursive: true, force: true, maxRetries: 3 });
}

export function netnsNames(): string[] {
  return runSync(['ip', 'netns', 'list']).output.split('\n').map((l) => l.split(' ')[0] ?? '').filter(Boolean);
}

export function linkNames(): string[] {
  return runSync(['ip', '-o', 'link', 'show']).output
    .split('\n')
    .map((l) => l.split(': ')[1]?.split('@')[0] ?? '')
    .filter(Boolean);
}

export interface Leftovers {
  processes: { pid: number; cmdline: string }[];
  mounts: string[];
  netns: string[];
  links: string[];
  tempDirs: string[];
}

/**
 * What a run (this one by default) left behind: processes carrying its marker environment or
 * its tag on the command line, mounts and namespaces/links named with its tag.
 */
export function leftovers(tag = runTag): Leftovers {
  const processes: Leftovers['processes'] = [];
  for (const p of listProcesses()) {
    if (p.pid === process.pid || !isAlive(p.pid)) continue;
    let cmdline = '';
    let environ = '';
    try {
      cmdline = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      environ = readFileSync(`/proc/${p.pid}/environ`, 'utf8');
    } catch {
      continue;
    }
    if (environ.split('\0').includes(`${markerEnvName}=${tag}`) || hasTag(cmdline, tag)) processes.push({ pid: p.pid, cmdline });
  }
  return {
    processes,
    mounts: mountPoints().filter((m) => hasTag(m, tag)),
    netns: netnsNames().filter((n) => hasTag(n, tag)),
    links: linkNames().filter((n) => hasTag(n, tag)),
    tempDirs: readdirSync(tmpdir())
      .filter((n) => n.startsWith(`${tag}-`))
      .map((n) => join(tmpdir(), n)),
  };
}

/** Undo what a run that died without cleaning (e.g. SIGKILLed) left behind. */
export function reapLeftovers(tag: string): void {
  if (!/^pw\d+$/.test(tag)) throw new Error(`not a run tag: ${tag}`);
  const found = leftovers(tag);
  for (const mp of found.mounts.filter((m) => !m.startsWith('/run/netns/'))) unmountSync(mp);
  for (const p of found.processes) killTree(p.pid, 500);
  for (const ns of found.netns) deleteNetnsSync(ns);
  for (const link of found.links) deleteLinkSync(link);
  for (const dir of found.tempDirs) removeDirSync(dir);
}
