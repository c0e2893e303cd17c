/**
 * Starting a chunk's command, whichever way: the contract runChunk relies on. Two ways exist —
 * node's own spawn (node-starter.ts) and a lane's fork server (fork-server-starter.ts) — and both
 * must give the same results: the command leads its own process group, its stdio is wired as asked,
 * and a command that cannot start says why (ENOENT, EACCES) as a spawnError, not as an exit status.
 */

export interface CommandSpec {
  /** What to execute (resolved once per worker, see resolveExecutable) and the argv it sees. */
  file: string;
  argv: string[];
  /** The worker's environment, and the per-chunk PIECEWORK_* values added to it. */
  env: NodeJS.ProcessEnv;
  chunkEnv: Record<string, string>;
  /** A worker file descriptor, nothing (/dev/null), or a pipe fed from stdinSources. */
  stdin: number | 'ignore' | 'pipe';
  stdinSources: string[];
  stdout: number | 'ignore';
  stderrFd: number;
  /**
   * The lane's cgroup, which the command must live in (work/chunk-cgroup.ts): a fork server's child
   * joins it before it execs the command; node's spawn moves the command in once its pid is known.
   */
  cgroup?: { readonly procsFile: string; adopt(pid: number): void };
}

export interface CommandEnd {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The command could not be started: ENOENT (not found), EACCES (not executable), or another code. */
  spawnError?: string;
  /** Why, when it ended for a reason other than its own (a fork server that went away). */
  failure?: string;
}

export interface StartedCommand {
  /** Signals the command's whole process group; a no-op once it is gone. */
  killGroup(signal: NodeJS.Signals): void;
  /** How it ended; never rejects. */
  readonly ended: Promise<CommandEnd>;
}

export interface CommandStarter {
  /** 'node', or 'fork-server (bash)' / 'fork-server (setsid)', for logs and tests. */
  readonly kind: string;
  start(spec: CommandSpec): StartedCommand;
  close(): Promise<void>;
}

/** Sends a signal to a process group, ignoring a group that is gone already. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}
