/**
 * verify: is the job complete and valid? Reports missing, running, stale, failed and leftover
 * temp files; optionally runs a validator on every output; with `requeue`, removes what blocks a
 * redo — bad outputs, stale claims, exhausted failure records, crash leftovers — and nothing else.
 */
import { availableParallelism } from 'node:os';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { ignoreEvents, type EventSink } from './events.js';
import { JobLayout } from './job-folder.js';
import { inspectJob, isComplete, type JobState } from './inspect.js';
import { UsageError } from './errors.js';
import { compareNatural } from './natural-order.js';

export interface VerifyOptions {
  job: string;
  /** Validator argv run on every output; {out}, {name}, {in} are replaced, else the output is its stdin. */
  check?: string[];
  checkLanes?: number;
  requeue?: boolean;
  staleSeconds?: number;
  onEvent?: EventSink;
}

export interface BadOutput {
  chunk: string;
  output: string;
  reason: string;
}

export interface VerifyReport {
  state: JobState;
  complete: boolean;
  bad: BadOutput[];
  requeued?: { outputs: number; claims: number; failures: number; temp: number };
}

export async function verify(options: VerifyOptions): Promise<VerifyReport> {
  const layout = new JobLayout(options.job);
  if (options.check && options.check.length === 0) throw new UsageError('--check needs a command', 'e.g. --check -- python3 -m json.tool {out}');
  const state = await inspectJob(layout, { staleSeconds: options.staleSeconds });
  const bad = options.check ? await checkOutputs(layout, state, options.check, options.checkLanes ?? availableParallelism(), options.onEvent ?? ignoreEvents) : [];
  const report: VerifyReport = { state, complete: isComplete(state) && bad.length === 0, bad };
  if (options.requeue) report.requeued = await requeue(layout, state, bad);
  return report;
}

async function checkOutputs(layout: JobLayout, state: JobState, argv: string[], lanes: number, onEvent: EventSink): Promise<BadOutput[]> {
  const usesOutput = argv.some((a) => a.includes('{out}'));
  const items = [...state.outputs].map(([chunk, relative]) => ({ chunk, output: path.join(layout.outDir, relative) }));
  const bad: BadOutput[] = [];
  let checked = 0;
  let nextIndex = 0;
  const lane = async () => {
    while (nextIndex < items.length) {
      const item = items[nextIndex++]!;
      const args = argv.map((a) => a.replaceAll('{out}', item.output).replaceAll('{name}', item.chunk).replaceAll('{in}', layout.chunkPath(item.chunk)));
      const result = await execa(args[0]!, args.slice(1), {
        reject: false,
        stdin: usesOutput ? 'ignore' : { file: item.output },
        stdout: 'ignore',
        stderr: 'pipe',
        env: { PIECEWORK_OUT: item.output, PIECEWORK_NAME: item.chunk, PIECEWORK_IN: layout.chunkPath(item.chunk) },
      });
      if (result.failed) {
        const tail = String(result.stderr ?? '').trim().split('\n').slice(-1)[0] ?? '';
        const why = result.code === 'ENOENT' ? `validator not found: ${args[0]}` : result.signal ? `killed by ${result.signal}` : `exit ${result.exitCode}`;
        bad.push({ chunk: item.chunk, output: item.output, reason: tail ? `${why}: ${tail}` : why });
      }
      checked++;
      if (checked % 100 === 0 || checked === items.length) onEvent({ type: 'check:progress', checked, total: items.length, bad: bad.length });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, lanes) }, lane));
  return bad.sort((a, b) => compareNatural(a.chunk, b.chunk));
}

async function requeue(layout: JobLayout, state: JobState, bad: BadOutput[]): Promise<NonNullable<VerifyReport['requeued']>> {
  const counts = { outputs: 0, claims: 0, failures: 0, temp: 0 };
  for (const item of bad) {
    await fs.rm(item.output, { force: true });
    counts.outputs++;
  }
  for (const claim of state.stale) {
    // The owner record first: a lock without one is harmless, an owner without a lock misleads.
    await fs.rm(layout.ownerPath(claim.chunk), { force: true });
    await fs.rm(layout.lockPath(claim.chunk), { recursive: true, force: true });
    counts.claims++;
  }
  for (const failure of state.failed) {
    if (!failure.final) continue;
    await fs.rm(layout.failurePath(failure.chunk), { force: true });
    counts.failures++;
  }
  for (const name of state.leftoverTemp) {
    await fs.rm(path.join(layout.tmpDir, name), { force: true });
    counts.temp++;
  }
  // Dead lanes' folders, now empty. rmdir, not rm -r: a folder that filled again is left alone.
  for (const name of state.leftoverTempDirs) await fs.rmdir(path.join(layout.tmpDir, name)).catch(() => {});
  return counts;
}
