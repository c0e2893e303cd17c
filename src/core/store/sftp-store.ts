import { UsageError } from '../errors.js';
import type { JobStore } from './job-store.js';

export function openSftpStore(location: string): Promise<JobStore> {
  return Promise.reject(new UsageError(`${location}: sftp:// job addresses are not supported by this build`));
}
