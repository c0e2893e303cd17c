/**
 * `launch --wait`: after the workers are started, follow the job folder — the only coordinator —
 * until the job is complete, or until no worker is left alive to complete it. Reads the folder
 * through the core's status scan every few seconds (one listing per folder, aggregated); never
 * asks the hosts or the provider, whose view can be wrong (a preempted instance still "RUNNING").
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { JobMissingError } from '../core/errors.js';
import { mountClockFor } from '../core/inspect.js';
import { openJobStore } from '../core/store/open-store.js';
import type { MountClock } from '../core/store/mount-clock.js';
import { jobStatus, type JobStatus } from '../core/status.js';

export interface FollowOptions {
  /** Between two reads of the folder. Default 2 s. */
  intervalMs?: number;
  /**
   * How long to wait for a first live worker before giving up (instances boot, a Slurm array
   * waits in the queue). Once a worker has been seen, the job is given up on as soon as none is
   * alive. Default 60 s.
   */
  startupMs?: number;
  /**
   * When the last live worker stopped beating without saying it exited, how long to keep
   * waiting for one to come back before giving up. Default 30 s.
   */
  quietMs?: number;
  /**
   * Asked (at most every 5 s) while no worker has been seen: true when whatever was launched has
   * ended for sure — a Slurm array that left the queue — so no worker will come. Undefined: cannot say.
   */
  launchEnded?: () => Promise<boolean | undefined>;
  signal?: AbortSignal;
  /** Called after every read of the folder. */
  onProgress?: (status: JobStatus) => void;
}

export interface FollowOutcome {
  complete: boolean;
  /**
   * complete; no-workers: none alive (any more, or within startupMs); launch-ended: what was
   * launched ended before a worker was seen alive; interrupted: the signal.
   */
  reason: 'complete' | 'no-workers' | 'launch-ended' | 'interrupted';
  status: JobStatus | undefined;
  elapsedMs: number;
}

export async function followJob(job: string, options: FollowOptions = {}): Promise<FollowOutcome> {
  const store = await openJobStore(job);
  const intervalMs = options.intervalMs ?? 2000;
  const startupMs = options.startupMs ?? 60_000;
  const started = Date.now();
  let clock: MountClock | undefined;
  let clockAt = 0;
  const quietMs = options.quietMs ?? 30_000;
  let seenAlive = false;
  let noneAliveSince: number | undefined;
  let status: JobStatus | undefined;
  let errorsInARow = 0;
  let launchAskedAt = 0;
  for (;;) {
    if (options.signal?.aborted) return { complete: false, reason: 'interrupted', status, elapsedMs: Date.now() - started };
    try {
      // The mount's clock is measured (a probe file) once a minute, not on every read.
      if (!clock || Date.now() - clockAt > 60_000) {
        clock = await mountClockFor(store);
        clockAt = Date.now();
      }
      status = await jobStatus(store, { clock });
      errorsInARow = 0;
    } catch (error) {
      // A scan racing with workers (a file renamed under it) is retried; a job that is gone is not.
      if (error instanceof JobMissingError || ++errorsInARow >= 5) throw error;
    }
    if (status) {
      options.onProgress?.(status);
      if (status.complete) return { complete: true, reason: 'complete', status, elapsedMs: Date.now() - started };
      if (status.workers.alive > 0) {
        seenAlive = true;
        noneAliveSince = undefined;
      } else {
        noneAliveSince ??= Date.now();
        // Workers that said they exited are gone for sure. Workers that only stopped beating may
        // be stalled (a mount or network hiccup) rather than dead: give them quietMs to come back.
        const onlySilent = status.workers.dead > 0;
        const givenUp = seenAlive ? !onlySilent || Date.now() - noneAliveSince >= quietMs : Date.now() - started > startupMs;
        if (givenUp) return { complete: false, reason: 'no-workers', status, elapsedMs: Date.now() - started };
      }
    }
    if (!seenAlive && options.launchEnded && Date.now() - launchAskedAt >= 5000) {
      launchAskedAt = Date.now();
      if ((await options.launchEnded()) === true) {
        // One more look: the last task's worker may have finished the job as it ended.
        status = await jobStatus(store, clock ? { clock } : {}).catch(() => status);
        if (status?.complete) return { complete: true, reason: 'complete', status, elapsedMs: Date.now() - started };
        if (!status || status.workers.alive === 0) return { complete: false, reason: 'launch-ended', status, elapsedMs: Date.now() - started };
      }
    }
    try {
      await sleep(intervalMs, undefined, options.signal ? { signal: options.signal } : {});
    } catch {
      return { complete: false, reason: 'interrupted', status, elapsedMs: Date.now() - started };
    }
  }
}

/** One progress line: "57 of 120 done · 6 running · 3 workers alive · 11/s · ETA 6 s". */
export function progressLine(status: JobStatus): string {
  const { counts, workers } = status;
  const parts = [`${counts.done} of ${counts.chunks} done`];
  if (counts.running) parts.push(`${counts.running} running`);
  if (counts.stale) parts.push(`${counts.stale} stale`);
  if (counts.failed) parts.push(`${counts.failed} failed`);
  parts.push(`${workers.alive} worker${workers.alive === 1 ? '' : 's'} alive`);
  if (status.rate.chunksPerSecond > 0) parts.push(`${formatRate(status.rate.chunksPerSecond)}/s`);
  if (status.etaSeconds !== null) parts.push(`ETA ${formatSeconds(status.etaSeconds)}`);
  return parts.join(' · ');
}

function formatRate(perSecond: number): string {
  return perSecond >= 10 ? perSecond.toFixed(0) : perSecond.toFixed(1);
}

export function formatSeconds(seconds: number): string {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}
