// Where piecework's time goes: system calls counted with strace (the worker's own, apart from
// the commands it runs), and a V8 CPU profile of the worker summarised by function.
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { processTree } from '../test/helpers/cleanup.js';
import { isTool, runTimed, type RunOptions } from './lib.js';

export const hasStrace = isTool('strace');

const TICK_MS = 10; // USER_HZ: 100 on Linux

/**
 * CPU (user + system, ms) a long-running process and everything under it have used so far: each
 * live process's own time plus what its waited-for children used (so exited ones count once).
 * Take it before and after a run: the difference is what the run cost, e.g. an sshd or a mount.
 */
export function treeCpuMs(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      // utime stime cutime cstime: fields 14–17, i.e. 11–14 after the state (comm may hold spaces).
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      // exited meanwhile
    }
  }
  return ticks * TICK_MS;
}

export interface SyscallCounts {
  /** By the worker process and its threads (libuv's pool does the file work). */
  worker: Map<string, number>;
  /** Of those, calls naming a path under `pathPrefix`, by syscall. */
  onPath: Map<string, number>;
  /** By the commands it ran (fork → exec → exit), all together. */
  children: Map<string, number>;
  childProcesses: number;
}

/**
 * Run `argv` under `strace -f` with one output file per thread/process, then split the counts:
 * a file whose execve is not node's (or the launcher's) is a child command. Only the classes
 * given are traced (file: calls naming a path; desc: calls on file descriptors; process: clone…).
 */
export async function countSyscalls(argv: readonly string[], o: RunOptions & { dir: string; pathPrefix: string; classes?: string }): Promise<SyscallCounts> {
  const outDir = join(o.dir, `strace-${Date.now()}`);
  mkdirSync(outDir, { recursive: true });
  const prefix = join(outDir, 't');
  await runTimed(['strace', '-f', '-ff', '-qq', '-o', prefix, '-e', `trace=${o.classes ?? 'file,desc,process'}`, ...argv], o);
  const counts: SyscallCounts = { worker: new Map(), onPath: new Map(), children: new Map(), childProcesses: 0 };
  const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  for (const file of readdirSync(outDir)) {
    const text = readFileSync(join(outDir, file), 'utf8');
    const execs = [...text.matchAll(/^execve\("([^"]*)"/gm)].map((m) => m[1]!);
    const isChild = execs.some((p) => !/(?:^|\/)(?:node|env|piecework|piecework\.mjs|strace)$/.test(p));
    if (isChild) counts.childProcesses++;
    for (const line of text.split('\n')) {
      const m = /^([a-z_0-9]+)\(/.exec(line);
      if (!m) continue;
      const name = m[1]!;
      if (isChild) {
        bump(counts.children, name);
        continue;
      }
      bump(counts.worker, name);
      const path = /"([^"]*)"/.exec(line)?.[1];
      if (path !== undefined && path.startsWith(o.pathPrefix)) bump(counts.onPath, name);
    }
  }
  return counts;
}

export const total = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);

/** "openat 3.0, statx 2.0, …" per unit, largest first. */
export function perUnit(m: Map<string, number>, units: number, top = 8): string {
  return [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, v]) => `${k} ${(v / units).toFixed(v / units >= 10 ? 0 : 1)}`)
    .join(', ');
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface CpuSummary {
  totalMs: number;
  idleMs: number;
  gcMs: number;
  /** Self time by function, largest first: "name (file)". */
  functions: { name: string; ms: number }[];
  /** Self time by where the code lives: node internals, piecework, each dependency. */
  areas: { name: string; ms: number }[];
}

/** Summarise the .cpuprofile that `node --cpu-prof --cpu-prof-dir DIR` left in DIR. */
export function summariseCpuProfile(dir: string): CpuSummary {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no .cpuprofile in ${dir}`);
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  // timeDeltas[i] is the time before sample i: attribute it to that sample's node.
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  }
  const fn = new Map<string, number>();
  const area = new Map<string, number>();
  let idleMs = 0;
  let gcMs = 0;
  let totalMs = 0;
  for (const [id, ms] of self) {
    const node = byId.get(id)!;
    const { functionName, url } = node.callFrame;
    totalMs += ms;
    if (functionName === '(idle)') idleMs += ms;
    if (functionName === '(garbage collector)') gcMs += ms;
    const where = areaOf(url, functionName);
    area.set(where, (area.get(where) ?? 0) + ms);
    const key = `${functionName || '(anonymous)'}${url ? ` (${basename(url)}:${node.callFrame.lineNumber + 1})` : ''}`;
    fn.set(key, (fn.get(key) ?? 0) + ms);
  }
  const sorted = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]).map(([name, ms]) => ({ name, ms }));
  return { totalMs, idleMs, gcMs, functions: sorted(fn).filter((f) => f.name !== '(idle)'), areas: sorted(area) };
}

function areaOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return `node ${url.slice(5).split('/').slice(0, 2).join('/')}`;
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  const own = /\/dist\/(.+)$/.exec(url);
  if (own) return `piecework ${own[1]}`;
  return basename(url);
}
