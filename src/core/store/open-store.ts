/**
 * Which store serves a job address: `sftp://[user@]host[:port]/path` reaches the folder over SFTP
 * (no mount); anything else is a folder this host opens (a local disk or a mount).
 */
import type { JobStore } from './job-store.js';
import { PosixJobStore } from './posix-store.js';

export function isRemoteAddress(location: string): boolean {
  return /^sftp:\/\//i.test(location);
}

export async function openJobStore(location: string): Promise<JobStore> {
  if (isRemoteAddress(location)) {
    // Loaded only for sftp:// jobs: a worker on a mount never loads ssh2.
    const { openSftpStore } = await import('./sftp-store.js');
    return openSftpStore(location);
  }
  return new PosixJobStore(location);
}

/** Where a core function is told its job: an address, or a store the caller already opened. */
export interface JobTarget {
  job: string;
  store?: JobStore;
}

/** Run `use` with the target's store, opening (and afterwards closing) one if the caller did not. */
export async function withJobStore<T>(target: JobTarget, use: (store: JobStore) => Promise<T>): Promise<T> {
  if (target.store) return use(target.store);
  const store = await openJobStore(target.job);
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}
