/**
 * Starting commands with node's own spawn: the fallback, and what a multi-file stdin needs. Raw
 * file descriptors rather than execa: on this per-chunk path that costs about half as much per
 * spawn and the data never passes through node. But libuv forks the whole worker for each command,
 * which is what fork-server-starter.ts avoids.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { signalGroup, type CommandEnd, type CommandSpec, type CommandStarter, type StartedCommand } from './command-starter.js';

export const nodeStarter: CommandStarter = {
  kind: 'node',
  start: startWithNode,
  close: () => Promise.resolve(),
};

export function startWithNode(spec: CommandSpec): StartedCommand {
  let child: ChildProcess;
  try {
    // detached: the command leads its own process group, so a kill reaches its whole tree.
    child = spawn(spec.file, spec.argv.slice(1), { argv0: spec.argv[0], stdio: [spec.stdin, spec.stdout, spec.stderrFd], env: { ...spec.env, ...spec.chunkEnv }, detached: true });
  } catch (error) {
    const spawnError = (error as NodeJS.ErrnoException).code ?? 'error';
    return { killGroup: () => {}, ended: Promise.resolve({ exitCode: null, signal: null, spawnError }) };
  }
  const ended = new Promise<CommandEnd>((resolve) => {
    child.on('error', (error: NodeJS.ErrnoException) => resolve({ exitCode: null, signal: null, spawnError: error.code ?? 'error' }));
    child.on('exit', (exitCode, signal) => resolve({ exitCode, signal }));
  });
  if (child.pid !== undefined) spec.cgroup?.adopt(child.pid);
  if (spec.stdin === 'pipe') pipeFiles(spec.stdinSources, child.stdin!);
  return {
    killGroup: (signal) => {
      if (child.pid !== undefined) signalGroup(child.pid, signal);
    },
    ended,
  };
}

/** The data of a multi-file --files chunk, concatenated on the command's stdin. */
function pipeFiles(files: string[], target: Writable): void {
  target.on('error', () => {}); // EPIPE when the command stops reading early: its exit status tells.
  const next = (index: number) => {
    if (index >= files.length) {
      target.end();
      return;
    }
    const source: Readable = createReadStream(files[index]!);
    source.on('error', (error) => target.destroy(error));
    source.on('end', () => next(index + 1));
    source.pipe(target, { end: false });
  };
  next(0);
}
