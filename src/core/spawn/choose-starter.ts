/**
 * Which way a lane starts its commands. PIECEWORK_SPAWN chooses: `node` (node's spawn), `bash` or
 * `sh` (a fork server in that shell), or `auto` (the default): a fork server in bash — or sh with
 * setsid(1) where bash is missing — when the job is on a local disk; node's spawn on a network
 * mount, where a command's start is not the cost that counts (round trips are) and the server's
 * reopen of the chunk's files through /proc would add one round trip each.
 */
import { existsSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { isNetworkMount } from '../mounts.js';
import type { CommandStarter } from './command-starter.js';
import { whyNotStartable } from './exit-status.js';
import { ForkServerStarter } from './fork-server-starter.js';
import { nodeStarter } from './node-starter.js';

export interface LaneStarterOptions {
  /** The worker's environment (PIECEWORK_SPAWN and PATH are read from it). */
  env: NodeJS.ProcessEnv;
  lane: number;
  worker: string;
  stderrFd: number;
  /** The job folder: on a network mount `auto` keeps node's spawn. */
  job: string;
}

export function openLaneStarter(options: LaneStarterOptions): CommandStarter {
  const choice = options.env.PIECEWORK_SPAWN || 'auto';
  if (!['auto', 'node', 'bash', 'sh'].includes(choice)) {
    throw new UsageError(`PIECEWORK_SPAWN=${choice}: not a way to start commands`, 'use auto (the default), node, bash or sh');
  }
  // The server's child reopens the worker's files through /proc (Linux).
  if (choice === 'node' || !existsSync(`/proc/${process.pid}/fd`)) return nodeStarter;
  if (choice === 'auto' && isNetworkMount(options.job)) return nodeStarter;
  const shell = choice === 'auto' ? (whyNotStartable('bash', options.env.PATH) ? 'sh' : 'bash') : choice;
  return new ForkServerStarter({
    shell,
    env: { ...options.env, PIECEWORK_LANE: String(options.lane), PIECEWORK_WORKER: options.worker },
    stderrFd: options.stderrFd,
  });
}
