/**
 * One fork-server process (the script in fork-server-script.ts) and its reply protocol. It serves
 * one command at a time — a lane runs one at a time — and is started detached, so that a Ctrl-C on
 * the terminal reaches the worker, which stops the commands itself, and not the server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { FORK_SERVER_SCRIPT } from './fork-server-script.js';
import { countedRequest } from './shell-words.js';

export type ForkServerMode = 'bash' | 'setsid';

export interface ForkServerOptions {
  /** bash (preferred: job control without an extra exec) or a POSIX sh with setsid(1). */
  shell: string;
  env: NodeJS.ProcessEnv;
  /** Becomes the commands' stderr (the server's fd 4). */
  stderrFd: number;
}

/** What the server says about one request. */
export interface ServerRequestEvents {
  onPid(pid: number): void;
  onStatus(status: number): void;
  /** The server went away before the status came. */
  onGone(error: Error): void;
}

/** How long a shell may take to start and say it is ready. */
const READY_TIMEOUT_MS = 10_000;

export class ForkServer {
  readonly mode: ForkServerMode;
  readonly #child: ChildProcess;
  readonly #requests: Writable;
  readonly #replies: Readable;
  #buffer = '';
  #current: ServerRequestEvents | undefined;
  #gone: Error | undefined;
  readonly #exited: Promise<void>;

  private constructor(child: ChildProcess, mode: ForkServerMode, buffer: string, exited: Promise<void>) {
    this.#child = child;
    this.mode = mode;
    this.#requests = child.stdin!;
    this.#replies = child.stdio[3] as Readable;
    this.#buffer = buffer;
    this.#exited = exited;
    this.#replies.on('data', (data: string) => this.#onData(data));
    const onGone = (why: string) => {
      if (this.#gone) return;
      this.#gone = new Error(`the lane's fork server ended (${why})`);
      const current = this.#current;
      this.#current = undefined;
      current?.onGone(this.#gone);
    };
    child.on('exit', (code, signal) => onGone(signal ? `killed by ${signal}` : `exit ${code}`));
    // The pipe closes as the server dies; its exit, which says how, comes just after.
    this.#replies.on('close', () => setTimeout(() => onGone('its reply pipe closed'), 1000).unref());
    this.#requests.on('error', () => onGone('its request pipe broke'));
    this.#idle();
  }

  /** Starts a server and waits for it to say it is ready; rejects with the reason it cannot. */
  static start(options: ForkServerOptions): Promise<ForkServer> {
    return new Promise((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = spawn(options.shell, ['-c', FORK_SERVER_SCRIPT, 'piecework-fork-server'], {
          stdio: ['pipe', 'ignore', 'ignore', 'pipe', options.stderrFd],
          env: options.env,
          detached: true,
        });
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      const exited = new Promise<void>((done) => child.once('exit', () => done()));
      const replies = child.stdio[3] as Readable;
      replies.setEncoding('utf8');
      let buffer = '';
      const fail = (why: string) => {
        cleanup();
        child.kill('SIGKILL');
        reject(new Error(why));
      };
      const onData = (data: string) => {
        buffer += data;
        const end = buffer.indexOf('\n');
        if (end < 0) return;
        const line = buffer.slice(0, end);
        cleanup();
        if (line === 'R bash' || line === 'R setsid') resolve(new ForkServer(child, line.slice(2) as ForkServerMode, buffer.slice(end + 1), exited));
        else fail(line.startsWith('E ') ? line.slice(2) : `unexpected reply: ${line}`);
      };
      const onError = (error: Error) => fail(`${options.shell}: ${(error as NodeJS.ErrnoException).code ?? error.message}`);
      const onExit = (code: number | null, signal: string | null) => fail(`${options.shell} ended before it was ready (${signal ?? `exit ${code}`})`);
      const timer = setTimeout(() => fail(`${options.shell} did not start within ${READY_TIMEOUT_MS / 1000}s`), READY_TIMEOUT_MS);
      function cleanup() {
        clearTimeout(timer);
        replies.off('data', onData);
        child.off('error', onError);
        child.off('exit', onExit);
      }
      replies.on('data', onData);
      child.on('error', onError);
      child.on('exit', onExit);
    });
  }

  get alive(): boolean {
    return this.#gone === undefined;
  }

  /** Sends one request line (from requestLine); the events say what became of it. */
  request(line: string, events: ServerRequestEvents): void {
    if (this.#current) throw new Error('a fork server runs one command at a time');
    if (this.#gone) {
      events.onGone(this.#gone);
      return;
    }
    this.#current = events;
    // Referenced while a command runs: the worker must not exit while waiting for its status.
    this.#busy();
    this.#requests.write(this.mode === 'bash' ? countedRequest(line) : line);
  }

  /** Ends the server: it exits at the end of its input; killed if it lingers. */
  async close(): Promise<void> {
    this.#requests.end();
    const late = setTimeout(() => this.#child.kill('SIGKILL'), 2000);
    await this.#exited;
    clearTimeout(late);
  }

  #onData(data: string): void {
    this.#buffer += data;
    let end: number;
    while ((end = this.#buffer.indexOf('\n')) >= 0) {
      const line = this.#buffer.slice(0, end);
      this.#buffer = this.#buffer.slice(end + 1);
      const current = this.#current;
      if (!current) continue;
      const value = Number(line.slice(2));
      if (line.startsWith('P ')) current.onPid(value);
      else if (line.startsWith('X ')) {
        this.#current = undefined;
        this.#idle();
        current.onStatus(value);
      }
    }
  }

  #busy(): void {
    this.#child.ref();
    (this.#replies as Readable & { ref?: () => void }).ref?.();
  }

  #idle(): void {
    this.#child.unref();
    (this.#replies as Readable & { unref?: () => void }).unref?.();
    (this.#requests as Writable & { unref?: () => void }).unref?.();
  }
}
