/**
 * Turning a shell's exit status back into what node's spawn reports, so that both ways of starting
 * a command give the same result (see command-starter.ts).
 *
 * Limit: a shell reports a command killed by signal N as status 128+N, the same number a command
 * that chose to exit 128+N gives. Statuses 129–192 that name a signal are read as that signal —
 * right for crashes (SIGSEGV 139, SIGABRT 134), OOM kills (137) and our own stops, wrong for a
 * command that exits 130 by itself, which node would have reported as exit 130.
 */
import { accessSync, constants, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { CommandEnd } from './command-starter.js';

const signalNames = new Map<number, NodeJS.Signals>(Object.entries(os.constants.signals).map(([name, number]) => [number, name as NodeJS.Signals]));

export function commandEndFromStatus(status: number, file: string, searchPath: string | undefined): CommandEnd {
  // 126/127 are also what a shell says when exec fails: node's spawn would have failed with
  // ENOENT/EACCES instead, and the worker stops on those — so look at the file, as exec did.
  if (status === 126 || status === 127) {
    const spawnError = whyNotStartable(file, searchPath);
    if (spawnError) return { exitCode: null, signal: null, spawnError };
  }
  const signal = status > 128 ? signalNames.get(status - 128) : undefined;
  return signal ? { exitCode: null, signal } : { exitCode: status, signal: null };
}

/** ENOENT or EACCES as execvp would meet them for this file; undefined when it can be executed. */
export function whyNotStartable(file: string, searchPath: string | undefined): 'ENOENT' | 'EACCES' | undefined {
  const candidates = file.includes('/') ? [file] : (searchPath ?? '').split(':').map((dir) => path.join(dir || '.', file));
  let found: 'EACCES' | undefined;
  for (const candidate of candidates) {
    try {
      statSync(candidate);
    } catch {
      continue;
    }
    try {
      if (!statSync(candidate).isFile()) throw new Error('not a file');
      accessSync(candidate, constants.X_OK);
      return undefined;
    } catch {
      found = 'EACCES';
    }
  }
  return found ?? 'ENOENT';
}
