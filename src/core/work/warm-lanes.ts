/**
 * `work --warm` for a whole worker: one WarmProcess per lane, the start-up watch they share, the
 * memory of each process for the heartbeat, and the checks on the command line.
 */
import { UsageError } from '../errors.js';
import type { ChunkInvocation, ChunkIo, ChunkRunResult, CommandTemplate } from './run-chunk.js';
import { treeRssKb } from './process-memory.js';
import { StartupWatch } from './startup-watch.js';
import { WarmProcess } from './warm-process.js';

export interface WarmLaneMemory {
  lane: number;
  pid: number;
  /** Requests this process answered. */
  chunks: number;
  /** Resident memory of the process and its descendants; null where /proc cannot tell. */
  rssKb: number | null;
}

export interface WarmLanesOptions {
  lanes: number;
  job: string;
  worker: string;
  maxChunksPerProcess: number | undefined;
  log(entry: { lane: number; chunk?: string; event: string; detail?: string }): void;
}

/** The chunk's files are named in the request: with --warm a lane opens no descriptor per chunk. */
export const warmChunkIo: ChunkIo = { stdin: 'ignore', stdinSources: [], stdout: 'ignore', close: () => Promise.resolve() };

const perChunkPlaceholders = ['{in}', '{out}', '{name}', '{file}', '{files}', '{attempt}', '{base}', '{stem}'];

/** A warm command starts once per lane, so it cannot take a chunk's values as arguments. */
export function checkWarmCommand(argv: string[], maxChunksPerProcess: number | undefined): void {
  const used = perChunkPlaceholders.filter((p) => argv.some((arg) => arg.includes(p)));
  if (used.length > 0) {
    throw new UsageError(`--warm: ${used.join(', ')} cannot be used: the command starts once per lane, not once per chunk`, 'read each chunk\'s "in" and "out" from its request line on stdin instead (see `piecework work --help`)');
  }
  if (maxChunksPerProcess !== undefined && (!Number.isInteger(maxChunksPerProcess) || maxChunksPerProcess < 1)) {
    throw new UsageError(`--max-chunks-per-process ${maxChunksPerProcess}: must be a whole number of at least 1`);
  }
}

/** The warm lanes of a worker, or undefined without --warm; bad flags are usage errors. */
export function warmLanesFor(warm: boolean | undefined, template: CommandTemplate, options: WarmLanesOptions): WarmLanes | undefined {
  if (!warm) {
    if (options.maxChunksPerProcess !== undefined) throw new UsageError('--max-chunks-per-process needs --warm', 'add --warm: without it every chunk gets a process of its own');
    return undefined;
  }
  checkWarmCommand(template.argv, options.maxChunksPerProcess);
  return new WarmLanes(template, options);
}

export class WarmLanes {
  readonly #lanes: WarmProcess[];

  constructor(template: CommandTemplate, options: WarmLanesOptions) {
    const startup = new StartupWatch();
    const warned = new Set<string>();
    const argv = template.argv.map((arg) => arg.replaceAll('{job}', options.job));
    this.#lanes = Array.from(
      { length: options.lanes },
      (_, lane) =>
        new WarmProcess({
          file: template.file,
          argv,
          // Python's print is fully buffered on a pipe: an "ok" without flush=True would never
          // arrive. Unbuffered unless the user chose otherwise (other languages: see
          // waiting-for-input.ts, which tells such a program apart from a slow one).
          env: { PYTHONUNBUFFERED: '1', ...template.env, PIECEWORK_WARM: '1', PIECEWORK_JOB: options.job, PIECEWORK_LANE: String(lane), PIECEWORK_WORKER: options.worker },
          maxChunksPerProcess: options.maxChunksPerProcess,
          startup,
          warned,
          log: (entry) => options.log({ lane, ...entry }),
        }),
    );
  }

  run(lane: number, run: ChunkInvocation, abandon: () => boolean): Promise<ChunkRunResult> {
    return this.#lanes[lane]!.run(run, abandon);
  }

  /** Every lane's process gets its stdin closed and a grace period to exit, then is killed. */
  async close(): Promise<void> {
    await Promise.all(this.#lanes.map((lane) => lane.close()));
  }

  async memory(): Promise<WarmLaneMemory[]> {
    const running = this.#lanes.flatMap((lane, index) => (lane.current ? [{ lane: index, ...lane.current }] : []));
    return Promise.all(running.map(async ({ lane, pid, answered }) => ({ lane, pid, chunks: answered, rssKb: (await treeRssKb(pid)) ?? null })));
  }
}
