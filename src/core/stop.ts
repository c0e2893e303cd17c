/**
 * stop: a STOP file in the job asks every worker on every host to take no new chunk and to exit
 * after its current ones. Workers look for it every few seconds.
 */
import { promises as fs } from 'node:fs';
import { writeFileAtomic } from './atomic-write.js';
import { HOST, JobLayout } from './job-folder.js';
import { readManifest } from './manifest.js';
import { isWorkerAlive, readHeartbeats } from './heartbeat.js';
import { mountClockFor } from './inspect.js';

export interface StopResult {
  job: string;
  /** Workers whose heartbeat says they are alive (they will drain and exit). */
  liveWorkers: string[];
  cleared: boolean;
}

export async function requestStop(job: string, options: { clear?: boolean; reason?: string } = {}): Promise<StopResult> {
  const layout = new JobLayout(job);
  const manifest = await readManifest(layout);
  if (options.clear) {
    await fs.rm(layout.stopFile, { force: true });
  } else {
    const record = { requestedAt: new Date().toISOString(), host: HOST, pid: process.pid, reason: options.reason ?? 'piecework stop' };
    await writeFileAtomic(layout.stopFile, JSON.stringify(record) + '\n', { tempDir: layout.tmpDir });
  }
  const clock = await mountClockFor(layout);
  const live = (await readHeartbeats(layout)).filter((h) => isWorkerAlive(h, clock.now(), manifest.staleSeconds * 1000));
  return { job: layout.root, liveWorkers: live.map((h) => h.worker), cleared: options.clear ?? false };
}
