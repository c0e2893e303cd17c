/**
 * failed/<chunk>.json: one record per chunk that failed, rewritten (atomically, under the claim)
 * at every attempt. Only `verify --requeue` removes it (invariant 7); an output made by a later
 * attempt wins over the record, which then stays as history.
 */
import type { JobStore } from './store/job-store.js';
import { FAILURE_SUFFIX } from './store/layout.js';

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

export async function readFailure(store: JobStore, chunk: string): Promise<FailureRecord | undefined> {
  const data = await store.read('failed', chunk + FAILURE_SUFFIX);
  if (data === undefined) return undefined;
  try {
    const record = JSON.parse(data.toString('utf8')) as Partial<FailureRecord>;
    if (Number.isInteger(record.attempts) && Number.isInteger(record.maxAttempts) && typeof record.reason === 'string') return record as FailureRecord;
  } catch {
    // damaged: below
  }
  // A record we cannot read still proves the chunk failed before; starting its count again
  // could retry it forever. It counts as failed for good until `verify --requeue` clears it.
  return {
    chunk,
    attempts: 1,
    maxAttempts: 1,
    exitCode: null,
    signal: null,
    timedOut: false,
    reason: `its failure record failed/${chunk}${FAILURE_SUFFIX} is damaged (counted as failed for good; verify --requeue clears it)`,
    stderrTail: '',
    host: '?',
    worker: '?',
    at: new Date(0).toISOString(),
    command: [],
  };
}

export async function writeFailure(store: JobStore, record: FailureRecord): Promise<void> {
  await store.write('failed', record.chunk + FAILURE_SUFFIX, JSON.stringify(record, null, 2) + '\n');
}
