/**
 * piecework as a library: the same protocol the commands use, with no terminal in sight.
 *   import { split, work, verify, merge } from 'piecework';
 */
export { split, type SplitOptions, type SplitResult, DEFAULT_RETRIES, DEFAULT_STALE_SECONDS } from './core/split/split.js';
export { work, type WorkOptions, type WorkReport, CommandUnavailableError } from './core/work/worker.js';
export { verify, type VerifyOptions, type VerifyReport, type BadOutput } from './core/verify.js';
export { merge, type MergeOptions, type MergeResult } from './core/merge.js';
export { requestStop, type StopResult } from './core/stop.js';
export { inspectJob, isComplete, type JobState, type ClaimState, type FailureState } from './core/inspect.js';
export { JobLayout } from './core/store/layout.js';
export { readManifest, type JobManifest } from './core/manifest.js';
export { compareNatural, sortNatural } from './core/natural-order.js';
export { ExitStatus, PieceworkError, UsageError, JobMissingError, IncompleteJobError, InterruptedError } from './core/errors.js';
export type { PieceworkEvent, EventSink } from './core/events.js';
export { PACKAGE_VERSION } from './core/version.js';
export { jobStatus } from './core/status.js';
export type { JobStatus, HostStatus } from './core/status.js';
