/**
 * Waking followers when a streaming split adds chunks. split rewrites job.json about once a second
 * while it runs (and once more when it finishes), so followers watch that single file — never the
 * chunk folder, which can hold a million names. On a network mount inotify sees nothing of other
 * hosts' writes, so there chokidar polls, at a deliberate interval.
 */
import { watch } from 'chokidar';
import type { JobLayout } from './job-folder.js';
import { isNetworkMount } from './mounts.js';

export const FOLLOW_POLL_MS = 2000;

export function watchForNewChunks(layout: JobLayout, onChange: () => void): () => void {
  const watcher = watch(layout.root, {
    depth: 0,
    ignoreInitial: true,
    usePolling: isNetworkMount(layout.root),
    interval: FOLLOW_POLL_MS,
    // Only job.json and out/ matter to followers; everything else in the root is ignored.
    ignored: (file: string) => file !== layout.root && file !== layout.jobFile,
  });
  watcher.on('all', () => onChange());
  watcher.on('error', () => {});
  return () => void watcher.close();
}
