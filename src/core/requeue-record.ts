/**
 * `REQUEUED` at the top of the job: written by `verify --requeue` when it removed outputs. A
 * worker remembers outputs it confirmed once (a listing can lag 20 s on sshfs); before it calls
 * a job complete it reads this record, and if it was written since the worker started, it looks
 * up again the outputs it had confirmed — so a requeue on another host is never missed.
 */
export const REQUEUE_RECORD = 'REQUEUED';

export interface RequeueRecord {
  /** ISO time by the mount's clock. */
  at: string;
  host: string;
  pid: number;
  /** Chunks whose outputs were removed (the first 10 000). */
  chunks: string[];
  more: boolean;
}

export function parseRequeueRecord(data: Buffer | undefined): RequeueRecord | undefined {
  if (!data) return undefined;
  try {
    const record = JSON.parse(data.toString('utf8')) as RequeueRecord;
    return typeof record.at === 'string' && Array.isArray(record.chunks) ? record : undefined;
  } catch {
    return undefined;
  }
}
