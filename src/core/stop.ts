/**
 * stop: a STOP file in the job asks every worker on every host to take no new chunk and to exit
 * after its current ones. Workers look for it every few seconds.
 */
import { readManifest } from './manifest.js';
import { isWorkerAlive, readHeartbeats } from './heartbeat.js';
import { mountClockFor } from './inspect.js';
import { HOST, STOP_FILE } from './store/layout.js';
import { withJobStore, type JobTarget } from './store/open-store.js';

export interface StopResult {
  job: string;
  /** Workers whose heartbeat says they are alive (they will drain and exit). */
  liveWorkers: string[];
  cleared: boolean;
}

export function requestStop(target: JobTarget, options: { clear?: boolean; reason?: string } = {}): Promise<StopResult> {
  return withJobStore(target, async (store) => {
    const manifest = await readManifest(store);
    if (options.clear) {
      await store.remove('top', STOP_FILE);
    } else {
      const record = { requestedAt: new Date().toISOString(), host: HOST, pid: process.pid, reason: options.reason ?? 'piecework stop', jobId: manifest.id };
      await store.write('top', STOP_FILE, JSON.stringify(record) + '\n');
    }
    const clock = await mountClockFor(store);
    const live = (await readHeartbeats(store)).filter((h) => h.jobId === manifest.id && isWorkerAlive(h, clock.now(), manifest.staleSeconds * 1000));
    return { job: store.location, liveWorkers: live.map((h) => h.worker), cleared: options.clear ?? false };
  });
}
