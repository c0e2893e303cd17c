// Shared by the benchmark scenarios: timing child processes (with peak RSS), medians, the shape of
// a scenario's result, and the paths of the things under test. Every process started here is
// registered with the testbed's cleanup, so a failing scenario still leaves nothing running.
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { killTree, markerEnv, registerCleanup } from '../test/helpers/cleanup.js';

export const repoRoot = fileURLToPath(new URL('..', import.meta.url));
/** The CLI as a user runs it on the head. */
export const pieceworkBin = join(repoRoot, 'bin', 'piecework');
/** The one-file bundle that `launch` copies to other hosts. */
export const pieceworkBundle = join(repoRoot, 'dist', 'piecework.mjs');
export const peersDir = join(repoRoot, 'bench', 'peers');
export const peer = (name: string): string => join(peersDir, name);

export interface BenchContext {
  quick: boolean;
  /** Measured runs per tool (the median is reported). */
  repeats: number;
  /** Progress for the person watching (stderr). */
  log(message: string): void;
}

/** One tool's measurements in a scenario. */
export interface Row {
  tool: string;
  /** Wall times of the measured runs, ms. */
  samples: number[];
  /** Divide the median by this for "per chunk" (omit when meaningless). */
  chunks?: number;
  /** Peak resident memory, MB (the largest over the runs). */
  peakRssMb?: number;
  /** CPU (user + system, children included) of each run, ms. */
  cpuSamples?: number[];
  /** Extra columns, already formatted. */
  extra?: Record<string, string>;
  /** Not part of the comparison (e.g. the split before `work`). */
  info?: boolean;
  /** For a peer: the piecework row it is compared with (default: the first piecework row). */
  against?: string;
}

export interface Ratio {
  /** e.g. "piecework / GNU parallel" */
  label: string;
  value: number;
}

export interface TargetCheck {
  target: string;
  /** undefined: could not be judged in this run. */
  met: boolean | undefined;
  detail: string;
}

export interface ScenarioResult {
  name: string;
  title: string;
  rows: Row[];
  ratios: Ratio[];
  targets: TargetCheck[];
  /** Where piecework's time goes, measured (counts of operations per chunk and the like). */
  profile: string[];
  notes: string[];
}

export interface Scenario {
  name: string;
  title: string;
  run(ctx: BenchContext): Promise<ScenarioResult>;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export const med = (row: Row): number => median(row.samples);

export function ratio(label: string, numerator: Row | undefined, denominator: Row | undefined): Ratio {
  return { label, value: numerator && denominator ? med(numerator) / med(denominator) : NaN };
}

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Where the command's stdout goes: a file path, or dropped (default). */
  stdoutPath?: string;
  /** Called with each complete stdout line and the ms since spawn (e.g. NDJSON events). */
  onLine?: (line: string, atMs: number) => void;
  /** Measure peak RSS and CPU time (user + system, the command's whole waited-for tree). */
  usage?: boolean;
  timeoutMs?: number;
  /** Run inside this namespace host's network + mount namespaces (nsenter). */
  enterPid?: number;
}

export interface RunResult {
  ms: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** Peak RSS in MB, when asked. */
  peakRssMb?: number;
  /** User + system CPU ms of the command and its children, when asked (GNU time only). */
  cpuMs?: number;
}

const hasGnuTime = existsSync('/usr/bin/time');

/**
 * Run one command and time it from spawn to exit. Rejects if it fails: a benchmark of a broken
 * run is worthless. Peak RSS comes from GNU time (`%M`, the kernel's maxrss for the child) when
 * installed, else from polling VmHWM in /proc.
 */
export async function runTimed(argv: readonly string[], o: RunOptions = {}): Promise<RunResult> {
  const [result] = await runTogether([argv], o);
  return result!;
}

/**
 * Start several commands at once (e.g. two copies of a shell loop = two lanes); the time is from
 * the first spawn until the last exit. Each result's `ms` is that common wall time.
 */
export async function runTogether(argvs: readonly (readonly string[])[], o: RunOptions = {}): Promise<RunResult[]> {
  const started = performance.now();
  const runs = argvs.map((argv, i) => startOne(argv, o, started, i));
  const results = await Promise.all(runs);
  const ms = performance.now() - started;
  for (const r of results) r.ms = ms;
  const bad = results.find((r) => r.code !== 0);
  if (bad) {
    const i = results.indexOf(bad);
    throw new Error(`${argvs[i]!.join(' ')} failed (${bad.signal ?? `exit ${bad.code}`}): ${bad.stderr.trim().slice(-1500)}`);
  }
  return results;
}

let rssSeq = 0;

function startOne(argv: readonly string[], o: RunOptions, started: number, index: number): Promise<RunResult> {
  let full = [...argv];
  let rssFile: string | undefined;
  let rssCleanup: { cancel(): void } | undefined;
  if (o.usage && hasGnuTime) {
    const file = join(tmpdir(), `pw${process.pid}-rss-${rssSeq++}-${index}`);
    rssFile = file;
    // Removed when read, or by the cleanup if the run is interrupted first.
    rssCleanup = registerCleanup(() => rmSync(file, { force: true }), `rm ${file}`);
    full = ['/usr/bin/time', '-f', '%M %U %S', '-o', rssFile, ...full];
  }
  if (o.enterPid !== undefined) full = ['nsenter', '-t', String(o.enterPid), '-n', '-m', '--', ...full];
  const [cmd, ...args] = full;
  return new Promise((resolve, reject) => {
    const wantsStdout = o.stdoutPath !== undefined || o.onLine !== undefined;
    // detached: its own process group, so cleanup can kill the whole tree by pid.
    const child = spawn(cmd!, args, {
      cwd: o.cwd,
      env: { ...process.env, ...markerEnv, ...o.env },
      stdio: ['ignore', wantsStdout ? 'pipe' : 'ignore', 'pipe'],
      detached: true,
    });
    const pid = child.pid;
    if (pid === undefined) {
      child.once('error', reject);
      return;
    }
    const undo = registerCleanup(() => killTree(pid, 500), `kill ${argv[0]} (${pid})`);
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => {
      stderr = (stderr + text).slice(-8192);
    });
    if (child.stdout) {
      const file = o.stdoutPath ? createWriteStream(o.stdoutPath) : undefined;
      let partial = '';
      child.stdout.on('data', (data: Buffer) => {
        file?.write(data);
        if (!o.onLine) return;
        const at = performance.now() - started;
        const text = partial + data.toString('utf8');
        const lines = text.split('\n');
        partial = lines.pop()!;
        for (const line of lines) o.onLine(line, at);
      });
      child.stdout.on('end', () => file?.end());
    }
    // Without GNU time: poll the high-water mark while it runs (the direct child only).
    let hwmKb = 0;
    const poller = o.usage && !hasGnuTime ? setInterval(() => (hwmKb = Math.max(hwmKb, readHwmKb(pid))), 20) : undefined;
    const timer = o.timeoutMs ? setTimeout(() => killTree(pid, 500), o.timeoutMs) : undefined;
    child.once('error', (error) => {
      clearInterval(poller);
      clearTimeout(timer);
      undo.cancel();
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearInterval(poller);
      clearTimeout(timer);
      undo.cancel();
      let peakRssMb: number | undefined;
      let cpuMs: number | undefined;
      if (rssFile) {
        // GNU time writes "Command exited with non-zero status N" first when the command fails.
        const [kb, user, sys] = (readFileSync(rssFile, 'utf8').trim().split('\n').at(-1) ?? '').split(' ').map(Number);
        peakRssMb = (kb ?? NaN) / 1024;
        cpuMs = ((user ?? NaN) + (sys ?? NaN)) * 1000;
        rmSync(rssFile, { force: true });
        rssCleanup?.cancel();
      } else if (poller) {
        peakRssMb = hwmKb / 1024;
      }
      resolve({ ms: performance.now() - started, code, signal, stderr, peakRssMb, cpuMs });
    });
  });
}

function readHwmKb(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export function ensureDir(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function isTool(name: string): boolean {
  return process.env.PATH?.split(':').some((d) => existsSync(join(d, name))) ?? false;
}

/** Whether the number is finite and at most `limit`; undefined (not judged) when it is NaN. */
export function atMost(value: number, limit: number): boolean | undefined {
  return Number.isFinite(value) ? value <= limit : undefined;
}

export const fmtMs = (ms: number): string => (!Number.isFinite(ms) ? '–' : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : ms >= 10 ? `${ms.toFixed(0)} ms` : `${ms.toFixed(2)} ms`);
export const fmtRatio = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '–');

/** Collects runs into rows, one per tool, in the order tools first appear. */
export class Rows {
  readonly rows: Row[] = [];

  get(tool: string): Row | undefined {
    return this.rows.find((r) => r.tool === tool);
  }

  add(tool: string, result: Pick<RunResult, 'ms' | 'peakRssMb' | 'cpuMs'>, more: Omit<Row, 'tool' | 'samples'> = {}): Row {
    let row = this.get(tool);
    if (!row) {
      row = { tool, samples: [], ...more };
      this.rows.push(row);
    }
    row.samples.push(result.ms);
    if (result.cpuMs !== undefined && Number.isFinite(result.cpuMs)) (row.cpuSamples ??= []).push(result.cpuMs);
    if (result.peakRssMb !== undefined && Number.isFinite(result.peakRssMb)) row.peakRssMb = Math.max(row.peakRssMb ?? 0, result.peakRssMb);
    return row;
  }
}

/** Run a profiling step; a failure there is reported in the profile, never loses the timings. */
export async function profileStep(profile: string[], what: string, step: () => Promise<void>): Promise<void> {
  try {
    await step();
  } catch (error) {
    profile.push(`${what}: could not be measured (${(error as Error).message.split('\n')[0]})`);
  }
}

/** What one fork+exec costs node here: the floor a process per chunk pays, before any Python. */
export async function spawnCostMs(count: number): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    await new Promise<void>((resolve, reject) => spawn('/bin/true', [], { stdio: 'ignore' }).once('exit', () => resolve()).once('error', reject));
  }
  return (performance.now() - started) / count;
}
