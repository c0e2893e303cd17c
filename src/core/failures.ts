/**
 * failed/<chunk>.json: one record per chunk that failed, rewritten (atomically, under the claim)
 * at every attempt. Only `verify --requeue` removes it (invariant 7); an output made by a later
 * attempt wins over the record, which then stays as history.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from './atomic-write.js';
import { errorCode } from './errors.js';
import { makeGroupFolder, type JobLayout } from './job-folder.js';

export interface FailureRecord {
  chunk: string;
  attempts: number;
  /** 1 + the retries the worker allowed; the chunk has failed for good at this many attempts. */
  maxAttempts: number;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** A short human explanation ("exit 127: command not found"). */
  reason: string;
  stderrTail: string;
  host: string;
  worker: string;
  /** ISO time, by the mount's clock. */
  at: string;
  command: string[];
}

export function isExhausted(record: FailureRecord): boolean {
  return record.attempts >= record.maxAttempts;
}

export async function readFailure(layout: JobLayout, chunk: string): Promise<FailureRecord | undefined> {
  try {
    return JSON.parse(await fs.readFile(layout.failurePath(chunk), 'utf8')) as FailureRecord;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    // A damaged record must not stop the job: treat it as one failed attempt we know nothing of.
    if (error instanceof SyntaxError) return undefined;
    throw error;
  }
}

export async function writeFailure(layout: JobLayout, record: FailureRecord): Promise<void> {
  const file = layout.failurePath(record.chunk);
  const write = () => writeFileAtomic(file, JSON.stringify(record, null, 2) + '\n', { tempDir: layout.tmpDir });
  try {
    await write();
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
    await makeGroupFolder(layout.failedDir, path.dirname(file));
    await write();
  }
}
