/**
 * What a command handler may touch of the outside world, passed in so that `main(argv)` is
 * testable: output streams, the environment, and signals (only installed when asked for).
 */
import type { Writable } from 'node:stream';
import { constants as osConstants } from 'node:os';

export interface CliContext {
  stdout: Writable;
  stderr: Writable;
  stdin: NodeJS.ReadableStream;
  env: NodeJS.ProcessEnv;
  /** stderr is a terminal: progress may be drawn. */
  interactive: boolean;
  /** An AbortSignal aborted by the first SIGINT/SIGTERM; handlers are installed on first use. */
  signals(): { signal: AbortSignal; received: () => NodeJS.Signals | undefined };
  /** Exit status the command wants, when it returns normally. */
  exitStatus: number;
}

export function processContext(): CliContext {
  let installed: ReturnType<CliContext['signals']> | undefined;
  let abortOnPipeClosed: (() => void) | undefined;
  // `piecework … | head`: when the reader goes away, stop quietly — a worker as on SIGTERM
  // (claims released, nothing half-made), anything else at once.
  let pipeClosed = false;
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    if (pipeClosed) return; // every later write fails the same way
    pipeClosed = true;
    if (abortOnPipeClosed) abortOnPipeClosed();
    else process.exit(0);
  });
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    interactive: Boolean(process.stderr.isTTY) && !process.env.CI,
    exitStatus: 0,
    signals() {
      if (installed) return installed;
      const controller = new AbortController();
      let received: NodeJS.Signals | undefined;
      const onSignal = (signal: NodeJS.Signals) => {
        if (received) {
          // A second signal: the user means it. Leave now with the conventional status.
          process.exit(128 + (osConstants.signals[signal] ?? 15));
        }
        received = signal;
        controller.abort(signal);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      abortOnPipeClosed = () => onSignal('SIGPIPE');
      installed = { signal: controller.signal, received: () => received };
      return installed;
    },
  };
}

let current: CliContext | undefined;

/** main() sets the context for the command it runs; handlers read it here. */
export function setContext(context: CliContext): void {
  current = context;
}

export function getContext(): CliContext {
  if (!current) current = processContext();
  return current;
}
