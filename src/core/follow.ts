/**
 * Following a split that is still streaming chunks in (`work --follow`, `merge --follow`).
 *
 * split rewrites job.json about once a second while chunks come, and at least every few seconds
 * while its input is quiet, so followers watch that single file — never the chunk folder, which
 * can hold a million names. On a network mount inotify sees nothing of other hosts' writes, so
 * there chokidar polls, at a deliberate interval.
 *
 * A split that died leaves job.json saying "incomplete" forever: a follower that sees job.json
 * unchanged for SPLIT_SILENT_MS (by its own clock, so hosts' clocks never matter) says so and stops.
 */
import { PieceworkError } from './errors.js';
import type { JobManifest } from './manifest.js';
import type { JobStore } from './store/job-store.js';
import { isNetworkMount } from './mounts.js';

export const FOLLOW_POLL_MS = 2000;
/**
 * Longer than split's longest silence (5 s) plus an sshfs attribute cache (20 s), with margin.
 * PIECEWORK_SPLIT_SILENT_SECONDS changes it (tests; mounts with longer caches).
 */
export const SPLIT_SILENT_MS = Number(process.env.PIECEWORK_SPLIT_SILENT_SECONDS ?? 60) * 1000 || 60_000;

export async function watchForNewChunks(store: JobStore, onChange: () => void): Promise<() => void> {
  const root = store.localPath('top', '');
  const marker = store.localPath('top', 'job.json');
  if (root === undefined || marker === undefined) return () => {};
  const { watch } = await import('chokidar');
  const watcher = watch(root, {
    depth: 0,
    ignoreInitial: true,
    usePolling: isNetworkMount(root),
    interval: FOLLOW_POLL_MS,
    // Only job.json matters to followers; everything else in the root is ignored.
    ignored: (file: string) => file !== root && file !== marker,
  });
  watcher.on('all', () => onChange());
  watcher.on('error', () => {});
  return () => void watcher.close();
}

const lastChange = new WeakMap<JobStore, { mtimeMs: number; count: number; seenAt: number }>();

/** Throw when the split writing this unfinished job has shown no sign of life for too long. */
export async function checkSplitAlive(store: JobStore, manifest: JobManifest, silentMs = SPLIT_SILENT_MS): Promise<void> {
  const info = await store.markerInfo();
  const now = Date.now();
  const mtimeMs = info?.mtimeMs ?? 0;
  const previous = lastChange.get(store);
  if (!previous || previous.mtimeMs !== mtimeMs || previous.count !== manifest.chunkCount) {
    lastChange.set(store, { mtimeMs, count: manifest.chunkCount, seenAt: now });
    return;
  }
  if (now - previous.seenAt > silentMs) {
    throw new PieceworkError(`the split writing ${store.location} stopped before it finished: job.json has not changed for ${Math.round((now - previous.seenAt) / 1000)}s (${manifest.chunkCount} chunks so far)`, {
      hint: 'if the split is still running somewhere, its host cannot write to the job; otherwise run the split again (--force replaces the job), or work on the chunks written so far without --follow',
      exitStatus: 3,
    });
  }
}
