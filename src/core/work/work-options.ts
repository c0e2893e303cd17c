/**
 * What a worker is asked to do, and the checks of it that need no job: the CLI makes them before
 * it connects to anything, and work() makes them again for callers of the library.
 */
import { availableParallelism } from 'node:os';
import { UsageError } from '../errors.js';
import type { EventSink } from '../events.js';
import type { JobStore } from '../store/job-store.js';
import { checkDuration } from '../units.js';

export interface WorkOptions {
  job: string;
  /**
   * A store for `job` already open, or being opened (the CLI connects to a network store while
   * the worker's code loads); otherwise one is opened. Closed by whoever opened it.
   */
  store?: JobStore | Promise<JobStore>;
  command: string[];
  /** Chunks run at once on this host (default: its cores). */
  lanes?: number;
  /** Must equal the job's stale period when given: every worker of a job judges claims alike. */
  staleSeconds?: number;
  /** Override the job's retry count. */
  retries?: number;
  timeoutSeconds?: number;
  /** Must equal the job's output extension when given (split sets it with --ext). */
  ext?: string;
  /** Wait for chunks while the split is still streaming in. */
  follow?: boolean;
  /** fsync each output before committing it. */
  fsync?: boolean;
  /** Abort to stop: no new chunks, running commands are killed, claims released. */
  signal?: AbortSignal;
  onEvent?: EventSink;
  /** How often to look again when other workers hold the remaining chunks. */
  pollSeconds?: number;
  /** One long-lived process per lane, fed chunks as request lines (see work/warm-protocol.ts). */
  warm?: boolean;
  /** With `warm`: replace a lane's process after this many chunks. */
  maxChunksPerProcess?: number;
  /** Exit statuses that mean success besides 0 (grep's 1: "no match"). */
  successExitCodes?: number[];
  /**
   * Once this many chunks have failed for good (this worker's own, and those its claims find
   * recorded by others), write STOP — every worker of the job drains and exits — and stop.
   */
  haltAfter?: number;
}

/** Usage errors in the options, thrown before anything is opened; the number of lanes. */
export function checkWorkOptions(options: WorkOptions): number {
  if (options.command.length === 0) throw new UsageError('no command to run', 'give the command after --, e.g. piecework work JOB -- tr a-z A-Z');
  const lanes = options.lanes ?? availableParallelism();
  if (!Number.isInteger(lanes) || lanes < 1 || lanes > 4096) throw new UsageError(`-j ${options.lanes}: the number of lanes must be a whole number from 1 to 4096`);
  if (options.timeoutSeconds !== undefined) checkDuration(options.timeoutSeconds, '--timeout');
  if (options.pollSeconds !== undefined) checkDuration(options.pollSeconds, '--poll');
  for (const code of options.successExitCodes ?? []) {
    if (!Number.isInteger(code) || code < 0 || code > 255) throw new UsageError(`--success-exit ${code}: an exit status is a whole number from 0 to 255`, 'e.g. --success-exit 0,1');
  }
  if (options.successExitCodes?.some((code) => code !== 0) && options.warm) throw new UsageError('--success-exit does not apply to --warm', 'a warm command answers `ok` or `fail` for each chunk; its exit status is not per chunk');
  if (options.haltAfter !== undefined && (!Number.isInteger(options.haltAfter) || options.haltAfter < 1)) throw new UsageError(`--halt-after ${options.haltAfter}: must be a whole number of at least 1`);
  return lanes;
}
