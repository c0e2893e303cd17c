/**
 * verify: is the job complete and valid? Reports missing, running, stale, failed and leftover
 * temp files; optionally runs a validator on every output; with `requeue`, removes what blocks a
 * redo — bad outputs, stale claims of dead holders, exhausted failure records, leftovers of
 * writers known to be gone — and nothing else (invariants 7 and 10).
 */
import { availableParallelism } from 'node:os';
import { ignoreEvents, type EventSink } from './events.js';
import { inspectJob, isComplete, type JobState } from './inspect.js';
import { ExitStatus, PieceworkError, UsageError } from './errors.js';
import { outputName } from './manifest.js';
import { compareNatural } from './natural-order.js';
import type { JobStore } from './store/job-store.js';
import { withJobStore, type JobTarget } from './store/open-store.js';
import { FAILURE_SUFFIX, OWNER_SUFFIX } from './store/layout.js';
import { REQUEUE_RECORD, type RequeueRecord } from './requeue-record.js';
import { HOST } from './store/layout.js';

export interface VerifyOptions extends JobTarget {
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

/** The validator could not judge: not found, not executable, killed. Proves nothing (invariant 10). */
export class CheckNotRunError extends PieceworkError {}

export function verify(options: VerifyOptions): Promise<VerifyReport> {
  return withJobStore(options, (store) => verifyJob(store, options));
}

async function verifyJob(store: JobStore, options: VerifyOptions): Promise<VerifyReport> {
  if (options.check && options.check.length === 0) throw new UsageError('--check needs a command', 'e.g. --check -- python3 -m json.tool {out}');
  const state = await inspectJob(store, { staleSeconds: options.staleSeconds });
  const bad = options.check ? await checkOutputs(store, state, options.check, options.checkLanes ?? availableParallelism(), options.onEvent ?? ignoreEvents) : [];
  const report: VerifyReport = { state, complete: isComplete(state) && bad.length === 0, bad };
  if (options.requeue) report.requeued = await requeue(store, state, bad);
  return report;
}

async function checkOutputs(store: JobStore, state: JobState, argv: string[], lanes: number, onEvent: EventSink): Promise<BadOutput[]> {
  // Loaded only for --check.
  const { execa } = await import('execa');
  const usesOutput = argv.some((a) => a.includes('{out}'));
  const items = state.chunks.filter((c) => state.done.has(c)).map((chunk) => ({ chunk, output: outputName(state.manifest, chunk) }));
  const bad: BadOutput[] = [];
  let checked = 0;
  let nextIndex = 0;
  let cannotRun: CheckNotRunError | undefined;
  const lane = async () => {
    while (nextIndex < items.length && !cannotRun) {
      const item = items[nextIndex++]!;
      const output = store.localPath('out', item.output);
      const input = store.localPath('chunks', item.chunk);
      if (output === undefined || input === undefined) throw new UsageError(`--check runs validators on local files: ${store.location} is not a folder on this host`, 'run verify --check where the job folder is mounted');
      const args = argv.map((a) => a.replaceAll('{out}', output).replaceAll('{name}', item.chunk).replaceAll('{in}', input));
      // stderr is not buffered whole (execa's 100 MB cap made a chatty validator that passed
      // count as failed): only its end is kept, for the reason of a bad output.
      const stderrTail = new TailKeeper(STDERR_TAIL_BYTES);
      const subprocess = execa(args[0]!, args.slice(1), {
        reject: false,
        buffer: false,
        stdin: usesOutput ? 'ignore' : { file: output },
        stdout: 'ignore',
        stderr: 'pipe',
        env: { PIECEWORK_OUT: output, PIECEWORK_NAME: item.chunk, PIECEWORK_IN: input },
      });
      subprocess.stderr.on('data', (data: Buffer) => stderrTail.push(data));
      const result = await subprocess;
      if (result.exitCode !== 0) {
        const tail = lastLine(stderrTail.text());
        const notRun = validatorDidNotRun(result, args[0]!);
        if (notRun) {
          cannotRun ??= new CheckNotRunError(`the validator did not run on ${item.chunk}: ${notRun.why}${tail ? ` (${tail})` : ''}`, {
            hint: 'nothing was judged bad and nothing was removed; fix the validator command (is it installed, on PATH, executable?) and run verify again',
            exitStatus: notRun.exitStatus,
          });
          return;
        }
        bad.push({ chunk: item.chunk, output: item.output, reason: tail ? `exit ${result.exitCode}: ${tail}` : `exit ${result.exitCode}` });
      }
      checked++;
      if (checked % 100 === 0 || checked === items.length) onEvent({ type: 'check:progress', checked, total: items.length, bad: bad.length });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, lanes) }, lane));
  if (cannotRun) throw cannotRun;
  return bad.sort((a, b) => compareNatural(a.chunk, b.chunk));
}

/** How much of a validator's stderr is kept, and how long its last line may be in a reason. */
const STDERR_TAIL_BYTES = 8192;
const REASON_MAX_CHARS = 300;

/** The last `limit` bytes of a stream, in bounded memory. */
class TailKeeper {
  #pieces: Buffer[] = [];
  #length = 0;

  constructor(readonly limit: number) {}

  push(data: Buffer): void {
    this.#pieces.push(data);
    this.#length += data.length;
    while (this.#length - this.#pieces[0]!.length >= this.limit) this.#length -= this.#pieces.shift()!.length;
  }

  text(): string {
    const all = Buffer.concat(this.#pieces);
    return all.subarray(Math.max(0, all.length - this.limit)).toString('utf8');
  }
}

/** The last non-empty line, cut to a length that a report line can carry. */
function lastLine(text: string): string {
  const line = text.trim().split('\n').pop()?.trim() ?? '';
  return line.length > REASON_MAX_CHARS ? `${line.slice(0, REASON_MAX_CHARS)}…` : line;
}

/**
 * Why a validator's run proves nothing about the output, or undefined when it judged: a spawn
 * error, a signal (killed: OOM, a timeout, Ctrl-C), or the shell's 126/127 (not executable, not
 * found) — an exit status a validator does not give for a bad output. Not found and not
 * executable end verify with 127 and 126, as a shell would: 1 means bad outputs, and a script
 * that requeues on 1 must not take a typo for a verdict.
 */
function validatorDidNotRun(result: { code?: string; signal?: string; exitCode?: number }, command: string): { why: string; exitStatus: number } | undefined {
  if (result.code === 'ENOENT') return { why: `validator not found: ${command}`, exitStatus: 127 };
  if (result.code === 'EACCES') return { why: `validator not executable: ${command}`, exitStatus: 126 };
  if (result.exitCode === 127) return { why: 'it exited 127 (command not found)', exitStatus: 127 };
  if (result.exitCode === 126) return { why: 'it exited 126 (command not executable)', exitStatus: 126 };
  if (result.signal) return { why: `it was killed by ${result.signal}`, exitStatus: ExitStatus.failure };
  if (result.exitCode === undefined) return { why: 'it could not be started', exitStatus: ExitStatus.failure };
  return undefined;
}

async function requeue(store: JobStore, state: JobState, bad: BadOutput[]): Promise<NonNullable<VerifyReport['requeued']>> {
  const counts = { outputs: 0, claims: 0, failures: 0, temp: 0 };
  const removedOutputs: string[] = [];
  for (const item of bad) {
    if (await store.remove('out', item.output)) {
      counts.outputs++;
      removedOutputs.push(item.chunk);
    }
  }
  // Workers trust outputs they confirmed once; this record tells them some went again.
  if (removedOutputs.length > 0) {
    const record: RequeueRecord = { at: new Date(state.clock.now()).toISOString(), host: HOST, pid: process.pid, chunks: removedOutputs.slice(0, 10_000), more: removedOutputs.length > 10_000 };
    await store.write('top', REQUEUE_RECORD, JSON.stringify(record) + '\n');
  }
  for (const claim of state.stale) {
    // The owner record first: a lock without one is harmless, an owner without a lock misleads.
    await store.remove('locks', claim.chunk + OWNER_SUFFIX);
    if (await store.removeFolder('locks', claim.chunk)) counts.claims++;
  }
  for (const failure of state.failed) {
    if (!failure.final) continue;
    if (await store.remove('failed', failure.chunk + FAILURE_SUFFIX)) counts.failures++;
  }
  for (const name of state.leftoverTemp) {
    if (await store.remove('tmp', name)) counts.temp++;
  }
  // Dead lanes' folders, now empty. rmdir, not rm -r: a folder that filled again is left alone.
  for (const name of state.leftoverTempDirs) await store.removeFolder('tmp', name);
  return counts;
}
