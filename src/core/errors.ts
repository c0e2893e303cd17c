import { constants as osConstants } from 'node:os';

/**
 * Errors a person can act on: each carries the message, an optional hint and the exit status
 * the CLI should end with. The core throws these; only src/cli turns them into an exit.
 */

/** Exit statuses, documented in the README; scripts branch on them. */
export const ExitStatus = {
  ok: 0,
  /** Something failed: chunks failed for good, a command could not run, an I/O error. */
  failure: 1,
  /** The command line was wrong: unknown flag, missing argument, bad value. */
  usage: 2,
  /** The job is not complete (verify, merge without --partial, work on an unfinished split). */
  incomplete: 3,
  /** The job folder is missing or not a job (e.g. the shared mount dropped). */
  noJob: 4,
  /** Stopped by SIGINT / SIGTERM, as shells expect (128 + signal number). */
  interrupted: 130,
  terminated: 143,
} as const;

export type ExitStatusCode = (typeof ExitStatus)[keyof typeof ExitStatus];

export class PieceworkError extends Error {
  readonly hint: string | undefined;
  readonly exitStatus: number;

  constructor(message: string, options: { hint?: string; exitStatus?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options.hint;
    this.exitStatus = options.exitStatus ?? ExitStatus.failure;
  }
}

/**
 * A local temp file or folder (in TMPDIR: a lane's stderr, SFTP staging, a reducer's list) could
 * not be made. Said as such: an ENOENT here is not a job folder removed by hand.
 */
export class LocalTempError extends PieceworkError {
  constructor(what: string, dir: string, error: unknown) {
    const code = errorCode(error);
    super(`cannot make ${what} in the local temp folder ${dir}${code ? ` (${code})` : ''}`, {
      hint: code === 'ENOSPC' ? 'the local disk is full: free space there, or set TMPDIR to a folder on another disk' : 'set TMPDIR to an existing local folder this user can write (e.g. TMPDIR=/var/tmp)',
      cause: error,
    });
  }
}

export class UsageError extends PieceworkError {
  constructor(message: string, hint?: string) {
    super(message, { hint, exitStatus: ExitStatus.usage });
  }
}

/** The folder is not a job: never written, removed, or the mount under it went away. */
export class JobMissingError extends PieceworkError {
  constructor(jobDir: string, detail?: string) {
    super(`no piecework job at ${jobDir}${detail ? ` (${detail})` : ''}`, {
      hint: 'check the path; if the job lives on a shared mount, check that the mount is still there (mount | grep <dir>)',
      exitStatus: ExitStatus.noJob,
    });
  }
}

/** `split --force` replaced the job (another id) while this command worked on it. */
export class JobReplacedError extends PieceworkError {
  constructor(location: string, who: string) {
    super(`the job at ${location} was replaced by a new split while ${who} ran`, { hint: 'start it again for the new job' });
  }
}

export class IncompleteJobError extends PieceworkError {
  readonly missing: number;
  constructor(message: string, missing: number, hint?: string) {
    super(message, { hint, exitStatus: ExitStatus.incomplete });
    this.missing = missing;
  }
}

/** A signal asked the process to stop; the exit status follows the shell convention. */
export class InterruptedError extends PieceworkError {
  readonly signal: NodeJS.Signals;
  constructor(signal: NodeJS.Signals) {
    super(`stopped by ${signal}`, {
      // 128 + the signal's number, as shells report it: 130 SIGINT, 141 SIGPIPE, 143 SIGTERM.
      exitStatus: 128 + (osConstants.signals[signal] ?? 15),
    });
    this.signal = signal;
  }
}

/** The host cannot run the command at all: stop this worker rather than burn the job's retries. */
export class CommandUnavailableError extends PieceworkError {}

/** Errors that mean the file system under the job went away (a dropped FUSE/NFS mount). */
const mountGoneCodes = new Set(['ENOTCONN', 'EIO', 'ESTALE', 'EHOSTDOWN', 'ECONNABORTED']);

export function isMountGone(error: unknown): boolean {
  return mountGoneCodes.has(errorCode(error) ?? '');
}

export function errorCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

/** Explain a chunk command's exit status the way a shell user would want it explained. */
export function describeExit(exitCode: number | null, signal: string | null): string {
  if (signal) {
    const hints: Record<string, string> = {
      SIGKILL: 'killed (out of memory, --timeout, or kill -9)',
      SIGTERM: 'terminated',
      SIGSEGV: 'crashed (segmentation fault)',
      SIGABRT: 'aborted',
      SIGINT: 'interrupted',
    };
    return `${hints[signal] ?? 'killed'} by ${signal}`;
  }
  switch (exitCode) {
    case 126:
      return 'exit 126: command found but not executable (permissions?)';
    case 127:
      return 'exit 127: command not found';
    case 137:
      return 'exit 137: killed by SIGKILL (out of memory?)';
    default:
      return `exit ${exitCode}`;
  }
}
