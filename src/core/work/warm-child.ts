/**
 * One start of a warm command: the process (leader of its own group, so that a kill reaches
 * everything it started), its stdout cut into lines, and its end.
 *
 * "Ended" means its stdout is drained, not just that it exited: a reply written just before it
 * died must still be read as a reply. When the leader exits, the rest of its group is killed —
 * whatever it left would write into chunks it no longer owns, and would hold the pipe open.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { settlesWithin } from './lane-pace.js';
import { LineSplitter } from './warm-protocol.js';
import { requestPipeOf } from './waiting-for-input.js';

const KILL_GRACE_MS = 3000;
/** After the leader exits, how long a descendant outside its group may hold stdout open. */
const DRAIN_AFTER_EXIT_MS = 1000;
/** After its stdout closes, how long before a process that has not exited is taken to live on. */
const EXIT_AFTER_EOF_MS = 1000;

export interface WarmSpawn {
  file: string;
  argv: string[];
  env: NodeJS.ProcessEnv;
  /** Where its stderr goes: the lane's StderrCapture. */
  stderrFd: number;
}

export class WarmChild {
  readonly pid: number;
  /** Settles once it exited and its stdout is drained. */
  readonly ended: Promise<void>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Requests it answered. */
  answered = 0;
  /** Answers `ok` whose output it had closed (looked at in /proc): see WarmProcess's #stillWriting. */
  closedOutputs = 0;
  /** It closed its stdout and lived on: it could never answer again, so it was killed. */
  closedStdout = false;
  /** Its stdin as /proc names it (`socket:[…]`), to tell a read of a request from any other read. */
  readonly requestPipe: string | undefined;
  /** Every complete stdout line; the lane swaps this per request. */
  onLine: (line: string) => void = () => {};
  /**
   * Called once it has ended (or at once, if it had when this is set). One slot the lane swaps per
   * request, not a reaction added to `ended` per request: those would pile up, each holding its
   * chunk's state, for as long as the process lives — 5 KB a chunk, a gigabyte in 200 000.
   */
  get onEnded(): () => void {
    return this.#onEnded;
  }
  set onEnded(callback: () => void) {
    this.#onEnded = callback;
    if (this.#hasEnded) queueMicrotask(callback);
  }
  #onEnded: () => void = () => {};
  #hasEnded = false;
  readonly #child: ChildProcess;

  private constructor(child: ChildProcess) {
    this.#child = child;
    this.pid = child.pid!;
    this.requestPipe = requestPipeOf(this.pid);
    const lines = new LineSplitter();
    child.stdin!.on('error', () => {}); // EPIPE once it died: its exit status says why
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (text: string) => lines.push(text).forEach((line) => this.onLine(line)));
    // The end of its stdout usually comes with its exit, in either order. Without an exit soon
    // after, it closed stdout (os.close(1), a daemonising library) and would be waited on forever.
    // Not once it was asked to exit (stdin closed): its shutdown may take its time.
    child.stdout!.on('end', () => {
      const eofTimer = setTimeout(() => {
        if (this.exit !== undefined || child.stdin!.writableEnded) return;
        this.closedStdout = true;
        this.terminate();
      }, EXIT_AFTER_EOF_MS);
      eofTimer.unref();
      child.once('exit', () => clearTimeout(eofTimer));
    });
    this.ended = new Promise((resolve) => {
      let drainTimer: NodeJS.Timeout | undefined;
      const done = () => {
        clearTimeout(drainTimer);
        lines.end().forEach((line) => this.onLine(line));
        resolve();
      };
      child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        this.#killGroup('SIGKILL');
        drainTimer = setTimeout(done, DRAIN_AFTER_EXIT_MS);
        drainTimer.unref();
      });
      child.on('close', done);
    });
    void this.ended.then(() => {
      this.#hasEnded = true;
      this.#onEnded();
    });
  }

  /** Start the command; a spawn that fails (not found, not executable) gives its error code. */
  static async start(how: WarmSpawn): Promise<WarmChild | { spawnError: string }> {
    let child: ChildProcess;
    try {
      child = spawn(how.file, how.argv.slice(1), { argv0: how.argv[0], stdio: ['pipe', 'pipe', how.stderrFd], env: how.env, detached: true });
    } catch (error) {
      return { spawnError: (error as NodeJS.ErrnoException).code ?? 'error' };
    }
    if (child.pid === undefined) {
      const error = await new Promise<NodeJS.ErrnoException>((resolve) => child.once('error', resolve));
      return { spawnError: error.code ?? 'error' };
    }
    child.on('error', () => {}); // after a successful spawn only kill() can fail, and is retried
    return new WarmChild(child);
  }

  send(line: string): void {
    this.#child.stdin!.write(line);
  }

  /** SIGTERM to the whole group, SIGKILL to what is left after a grace period. */
  terminate(): void {
    this.#killGroup('SIGTERM');
    const hard = setTimeout(() => this.#killGroup('SIGKILL'), KILL_GRACE_MS);
    hard.unref();
    void this.ended.then(() => clearTimeout(hard));
  }

  /** Close its stdin — its cue to exit — and end it by signal if it has not within `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    this.#child.stdin!.end();
    if (!(await settlesWithin(this.ended, graceMs))) this.terminate();
    await this.ended;
  }

  #killGroup(signal: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, signal);
    } catch {
      // The group is gone already.
    }
  }
}
