/**
 * This host's part of a worker's lanes: each lane's stderr file, the way it starts commands (a
 * fork server is a fork of this whole process) and its cgroup. None of it touches the job, so a
 * worker makes it while its store connects and the job is read: ~50 ms of forks and cgroup calls
 * that no longer stand between the start and the first claim.
 */
import { tmpdir } from 'node:os';
import { openLaneStarter } from '../spawn/choose-starter.js';
import type { CommandStarter } from '../spawn/command-starter.js';
import { nodeStarter } from '../spawn/node-starter.js';
import { ChunkCgroup } from './chunk-cgroup.js';
import { StderrCapture } from './stderr-capture.js';

export interface LocalLanesOptions {
  lanes: number;
  workerId: string;
  /** The environment commands run with (PIECEWORK_SPAWN and PATH choose the starter). */
  env: NodeJS.ProcessEnv;
  /** --warm: a lane's own process starts its command; no fork server, no cgroup. */
  warm: boolean;
  /** The job folder on this host (a disk or a mount); undefined for a network store. */
  localJob: string | undefined;
}

export class LocalLanes {
  readonly stderr: StderrCapture[] = [];
  readonly starters: CommandStarter[] = [];
  readonly cgroups: (ChunkCgroup | undefined)[] = [];

  private constructor() {}

  /** Everything made, or nothing left: a failure closes the pieces made before it. */
  static async open(options: LocalLanesOptions): Promise<LocalLanes> {
    const made = new LocalLanes();
    try {
      const files = await Promise.allSettled(Array.from({ length: options.lanes }, () => StderrCapture.open()));
      for (const file of files) if (file.status === 'fulfilled') made.stderr.push(file.value);
      const failed = files.find((file): file is PromiseRejectedResult => file.status === 'rejected');
      if (failed) throw failed.reason;
      for (const [lane, stderr] of made.stderr.entries()) {
        // How each lane starts its commands: a small fork server, or node's spawn (spawn/).
        made.starters.push(options.warm ? nodeStarter : openLaneStarter({ env: options.env, lane, worker: options.workerId, stderrFd: stderr.fd, job: options.localJob ?? tmpdir() }));
      }
      if (!options.warm) made.cgroups.push(...(await Promise.all(made.stderr.map((_, lane) => ChunkCgroup.open(`${options.workerId}.${lane}`)))));
      return made;
    } catch (error) {
      await made.close();
      throw error;
    }
  }

  #closing: Promise<void> | undefined;

  /** Close every piece; again returns the same promise. */
  close(): Promise<void> {
    return (this.#closing ??= Promise.all([...this.stderr.map((file) => file.close().catch(() => {})), ...this.starters.map((starter) => starter.close().catch(() => {})), ...this.cgroups.map((cgroup) => cgroup?.close().catch(() => {}))]).then(() => {}));
  }
}
