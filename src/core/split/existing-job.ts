/**
 * What `split --into FOLDER` does with what is already there, decided before anything is
 * written:
 *   - nothing, or an empty folder: create the job;
 *   - the same split again (same inputs, unchanged since, same mode, size, grouping, extension
 *     and settings, and complete): leave it as it is and say so — so that
 *     `piecework work "$(piecework split data --into J)" -- …` can be run again;
 *   - `--group NAME` on a complete job whose chunks are all in groups: add that group;
 *   - `--force`: replace it, but only when no live worker works on it (invariant 10): old
 *     workers would run their old command on the new job's chunks;
 *   - anything else: refuse.
 */
import { PieceworkError, UsageError } from '../errors.js';
import { isWorkerAlive, readHeartbeats, type HeartbeatRecord } from '../heartbeat.js';
import { readManifest, type JobManifest, type SplitRecord } from '../manifest.js';
import { JOB_ENTRY_NAMES, JOB_FOLDER_NAMES, PROTOCOL_VERSION } from '../store/layout.js';
import type { SplitJobWrites } from './job-writes.js';

export interface SplitRequest {
  split: SplitRecord;
  /** The group named with --group, if any. */
  group?: string;
  ext: string;
  staleSeconds: number;
  retries: number;
  /** Stdin is never the same input twice as far as anyone can tell. */
  readsStdin: boolean;
  /** The newest modification time of the input files (ms). */
  newestInputMtimeMs: number;
  /** --files: the chunks the files found now make (a glob that matches more files is another split). */
  fileListChunks?: number;
  force: boolean;
}

export type JobPlan =
  | { action: 'create' }
  | { action: 'replace' }
  | { action: 'unchanged'; manifest: JobManifest }
  | { action: 'add-group'; manifest: JobManifest };

export async function planJob(writes: SplitJobWrites, request: SplitRequest): Promise<JobPlan> {
  const root = writes.location;
  let entries: string[] | undefined;
  try {
    entries = await writes.topLevel();
  } catch (error) {
    if (error instanceof PieceworkError && error.exitStatus === 2) throw new UsageError(`${root} exists and is not a folder`, 'choose a new or empty folder for --into');
    throw error;
  }
  if (entries === undefined || entries.length === 0) return { action: 'create' };
  const manifest = entries.includes('job.json') ? await readManifest(writes.store).catch(() => undefined) : undefined;

  const notAJob = entries.includes('job.json') ? undefined : foldersOfOthers(root, entries);
  if (request.force) {
    if (notAJob?.refuseForce) throw notAJob.refuseForce;
    await refuseIfWorkersAlive(writes, manifest);
    return { action: 'replace' };
  }
  if (notAJob) throw notAJob.refuse;
  if (!manifest) throw new UsageError(`${root}/job.json cannot be read as a job`, 'choose another --into, or add --force to replace it');

  const differences = differencesFrom(manifest, request);
  if (differences.length === 0) return { action: 'unchanged', manifest };
  if (request.group !== undefined && request.split.grouping === 'named') return { action: 'add-group', manifest: checkGroupCanBeAdded(manifest, request, root) };
  throw new UsageError(
    `a job already exists at ${root} (${manifest.chunkCount} chunks, split ${manifest.complete ? 'complete' : 'unfinished'}) and ${differences.join('; ')}`,
    'choose another --into, add --force to replace that job (its chunks and outputs are deleted), or --group NAME to add a group to it',
  );
}

/**
 * Names a job has and a user's folder rarely does: with two of them, a folder without job.json is
 * what is left of a job (a cut-short --force removes job.json first, then its folders in order).
 */
const JOB_ONLY_ENTRIES = ['.tmp', 'locks', 'failed', 'workers'];

/**
 * A non-empty folder without job.json. `--force` removes a job's entries: where the folder is not
 * what is left of a job, its own `out/`, `chunks/` or `logs/` would go with them — so then it is
 * refused, and the plain refusal does not suggest it.
 */
function foldersOfOthers(root: string, entries: string[]): { refuse: UsageError; refuseForce?: UsageError } {
  const named = entries.filter((name) => JOB_ENTRY_NAMES.includes(name));
  if (named.length === 0) return { refuse: new UsageError(`${root} is not empty and is not a job`, 'choose an empty or new folder for --into, or add --force to make the job beside what is there') };
  if (entries.filter((name) => JOB_ONLY_ENTRIES.includes(name)).length >= 2) return { refuse: new UsageError(`${root} is not a job: it holds what is left of one (${named.join(', ')}), without its job.json`, 'add --force to replace it, or choose an empty or new folder for --into') };
  const them = named.map((name) => (JOB_FOLDER_NAMES.includes(name) ? `${name}/` : name)).join(', ');
  const refuse = new UsageError(`${root} is not empty and is not a job, and its ${them} ${named.length > 1 ? 'are' : 'is'} named like a job's`, `choose an empty or new folder for --into: --force would delete ${named.length > 1 ? 'them' : 'it'}`);
  return { refuse, refuseForce: new UsageError(`${root} is not a job: --force would delete its ${them}, which piecework did not make`, 'choose an empty or new folder for --into') };
}

/** Why the job is not what this split would make; empty when it is. */
function differencesFrom(manifest: JobManifest, request: SplitRequest): string[] {
  const found: string[] = [];
  const was = manifest.split;
  const now = request.split;
  if (manifest.protocol !== PROTOCOL_VERSION || !Array.isArray(manifest.groups)) return [`it was made by another version of piecework (protocol ${manifest.protocol})`];
  if (!manifest.complete) found.push('its split is unfinished (still running, or it died)');
  if (request.readsStdin) found.push('this split reads stdin, which cannot be compared with what made it');
  if (was.mode !== now.mode || was.size !== now.size) found.push(`it was split by ${was.mode} ${was.size}, not ${now.mode} ${now.size}`);
  if (JSON.stringify(was.inputs) !== JSON.stringify(now.inputs)) found.push(`it was made from ${was.inputs.join(' ')}`);
  else if (request.newestInputMtimeMs > Date.parse(manifest.created)) found.push('an input changed after it was made');
  else if (request.fileListChunks !== undefined && request.fileListChunks !== manifest.chunkCount) found.push(`its files make ${manifest.chunkCount} chunks, not ${request.fileListChunks}`);
  const groupNow = request.group ?? '';
  const groupWas = manifest.groups.length === 1 ? manifest.groups[0]!.name : undefined;
  if (was.grouping !== now.grouping || (now.grouping === 'named' && groupWas !== groupNow)) found.push('its chunks are grouped differently');
  if (manifest.ext !== request.ext) found.push(`its output extension is ${JSON.stringify(manifest.ext)}`);
  if (manifest.staleSeconds !== request.staleSeconds || manifest.retries !== request.retries) found.push(`its --stale/--retries are ${manifest.staleSeconds}/${manifest.retries}`);
  return found;
}

/**
 * A group can be added to a complete job whose chunks are all in groups. Not to a job with
 * chunks at the top level: those are one unnamed set, and `merge` of the whole job would then
 * put the new group after them as if it continued that set.
 */
function checkGroupCanBeAdded(manifest: JobManifest, request: SplitRequest, root: string): JobManifest {
  const name = request.group!;
  const refuse = (why: string, hint: string) => new UsageError(`cannot add group ${name} to ${root}: ${why}`, hint);
  if (manifest.protocol !== PROTOCOL_VERSION || !Array.isArray(manifest.groups)) throw refuse(`it was made by another version of piecework (protocol ${manifest.protocol})`, 'make a new job, or replace it with --force');
  if (!manifest.complete) throw refuse('its split is unfinished (still running, or it died)', 'wait for that split to end; if it died, run it again with --force');
  if (manifest.groups.some((g) => g.name === name)) throw refuse('that group exists already', 'choose another --group NAME, or --force to replace the whole job');
  if (manifest.groups.some((g) => g.name === '' && g.count > 0)) throw refuse('its chunks are at the top level, not in groups', 'a group can be added only to a job split with --group or --group-by-file');
  if ((manifest.split.mode === 'files') !== (request.split.mode === 'files')) throw refuse(manifest.split.mode === 'files' ? 'its chunks are file lists (--files)' : 'its chunks are data, not file lists', 'give the group the same kind of input as the job');
  if (manifest.ext !== request.ext) throw refuse(`its output extension is ${JSON.stringify(manifest.ext)}`, manifest.ext ? `add --ext ${manifest.ext}` : 'leave out --ext');
  return manifest;
}

async function refuseIfWorkersAlive(writes: SplitJobWrites, manifest: JobManifest | undefined): Promise<void> {
  const heartbeats = await readHeartbeats(writes.store);
  if (heartbeats.length === 0) return;
  // Alive or not is judged by the mount's clock (invariant 5), as workers and verify judge it.
  const clock = await writes.mountClock();
  const staleMs = (manifest?.staleSeconds ?? 60) * 1000;
  const live = heartbeats.filter((h) => isWorkerAlive(h, clock.now(), staleMs));
  if (live.length === 0) return;
  throw new UsageError(
    `${live.length === 1 ? 'a live worker is' : `${live.length} live workers are`} working on ${writes.location}: ${live.map(describeWorker).join(', ')}`,
    `replacing the job under them would run their command on the new chunks: run \`piecework stop ${writes.location}\`, wait until \`piecework status ${writes.location}\` shows no worker, then split --force again`,
  );
}

function describeWorker(record: HeartbeatRecord): string {
  return `${record.host} pid ${record.pid}`;
}
