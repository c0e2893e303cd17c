/**
 * Starting a lane's commands through its fork server (fork-server.ts). The worker keeps opening a
 * chunk's files itself, ahead of time (openChunkIo); the server's child reopens them through
 * /proc/WORKER/fd/N, which gives the same file without naming the job's folder again.
 *
 * Falls back to node's spawn for a chunk whose stdin is several files (a pipe node feeds), and for
 * the rest of the lane when the server cannot start or keeps dying. A server that dies while a
 * command runs costs that chunk an attempt (its command is killed: nobody could wait for it); the
 * next chunk starts a new server.
 */
import { ForkServer } from './fork-server.js';
import { signalGroup, type CommandEnd, type CommandSpec, type CommandStarter, type StartedCommand } from './command-starter.js';
import { commandEndFromStatus } from './exit-status.js';
import { startWithNode } from './node-starter.js';
import { requestLine } from './shell-words.js';

export interface ForkServerStarterOptions {
  shell: string;
  /** The server's environment: the worker's, with the lane's constant PIECEWORK_* values. */
  env: NodeJS.ProcessEnv;
  stderrFd: number;
}

/** Servers a lane may lose before it gives up on them and uses node's spawn. */
const MAX_SERVER_STARTS = 4;

const chunkEnvOrder = ['PIECEWORK_IN', 'PIECEWORK_OUT', 'PIECEWORK_NAME', 'PIECEWORK_FILE', 'PIECEWORK_FILES', 'PIECEWORK_JOB', 'PIECEWORK_ATTEMPT'];

export class ForkServerStarter implements CommandStarter {
  readonly #options: ForkServerStarterOptions;
  #server: Promise<ForkServer | undefined>;
  #starts = 0;
  /** Why this lane now starts its commands with node's spawn. */
  fallbackReason: string | undefined;

  constructor(options: ForkServerStarterOptions) {
    this.#options = options;
    this.#server = this.#startServer();
  }

  get kind(): string {
    return this.fallbackReason ? 'node' : `fork-server (${this.#options.shell})`;
  }

  /** Resolves once the first server is ready or has failed (then the lane uses node's spawn). */
  async ready(): Promise<string> {
    await this.#server;
    return this.kind;
  }

  start(spec: CommandSpec): StartedCommand {
    if (spec.stdin === 'pipe' || this.fallbackReason) return startWithNode(spec);
    const line = requestLine([
      spec.stdin === 'ignore' ? '/dev/null' : `/proc/${process.pid}/fd/${spec.stdin}`,
      spec.stdout === 'ignore' ? '/dev/null' : `/proc/${process.pid}/fd/${spec.stdout}`,
      spec.file,
      ...chunkEnvOrder.map((name) => spec.chunkEnv[name] ?? ''),
      // The child writes itself into the lane's cgroup before its exec (fork-server-script.ts).
      spec.cgroup?.procsFile ?? '',
      ...spec.argv,
    ]);
    if (line === undefined) return startWithNode(spec); // NUL in an argument: let node refuse it alike
    let pid: number | undefined;
    let viaSetsid = false;
    let pendingSignal: NodeJS.Signals | undefined;
    let ended = false;
    const killGroup = (signal: NodeJS.Signals) => {
      if (pid === undefined) {
        pendingSignal = signal;
        return;
      }
      // Under setsid(1) the child leads its group only once setsid ran: until then, itself.
      if (!signalGroup(pid, signal) && viaSetsid && !ended) {
        try {
          process.kill(pid, signal);
        } catch {
          // gone
        }
      }
    };
    const endedPromise = this.#live().then(
      (server) =>
        new Promise<CommandEnd>((resolve) => {
          if (!server) {
            startWithNode(spec).ended.then(resolve, () => {});
            return;
          }
          viaSetsid = server.mode === 'setsid';
          server.request(line, {
            onPid: (value) => {
              pid = value;
              if (pendingSignal) killGroup(pendingSignal);
            },
            onStatus: (status) => {
              ended = true;
              resolve(commandEndFromStatus(status, spec.file, spec.env.PATH));
            },
            onGone: (error) => {
              if (pid !== undefined) killGroup('SIGKILL');
              ended = true;
              resolve({ exitCode: null, signal: null, failure: `${error.message}; its command was killed` });
            },
          });
        }),
    );
    return { killGroup, ended: endedPromise };
  }

  async close(): Promise<void> {
    const server = await this.#server;
    await server?.close();
  }

  /** The lane's server, started again if it died; undefined once the lane fell back to node. */
  async #live(): Promise<ForkServer | undefined> {
    const server = await this.#server;
    if (server?.alive || this.fallbackReason) return server?.alive ? server : undefined;
    this.#server = this.#startServer();
    return this.#server;
  }

  async #startServer(): Promise<ForkServer | undefined> {
    if (++this.#starts > MAX_SERVER_STARTS) {
      this.fallbackReason = `the fork server ended ${MAX_SERVER_STARTS} times`;
      return undefined;
    }
    try {
      return await ForkServer.start(this.#options);
    } catch (error) {
      this.fallbackReason = (error as Error).message;
      return undefined;
    }
  }
}
