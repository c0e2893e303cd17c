/**
 * job.json: the job marker and the truth about the job (invariant 8). Its presence is how every
 * command knows the folder is a job and the mount under it is still there (invariant 6); its
 * contents decide the set of chunks, their names and each output's name, how the job was split,
 * whether the split finished, and the settings every worker of the job must share. verify, merge,
 * status and a worker's "job complete" start from here, never from a listing of chunks/ or out/.
 */
import { PieceworkError } from './errors.js';
import { compareNatural } from './natural-order.js';
import type { JobStore } from './store/job-store.js';
import { PROTOCOL_VERSION } from './store/layout.js';

export type SplitMode = 'lines' | 'bytes' | 'chunks' | 'files';

export interface SplitRecord {
  mode: SplitMode;
  /** lines per chunk, bytes per chunk, chunk count or files per chunk, by mode. */
  size: number;
  inputs: string[];
  /** How chunks were put in group folders: none, one per input file, or one named group. */
  grouping: 'none' | 'per-file' | 'named';
}

/** One group of chunks: '' is the top level. */
export interface ChunkGroup {
  name: string;
  count: number;
  width: number;
}

export interface JobManifest {
  protocol: number;
  tool: 'piecework';
  id: string;
  created: string;
  split: SplitRecord;
  /** The chunk set, the truth for every command: group '' is the top level; chunk i of a group is `${name ? name + '/' : ''}${String(i).padStart(width, '0')}` for i < count. */
  groups: { name: string; count: number; width: number }[];
  /** Output extension with its dot ('' for none): out/<chunk><ext>. Set by split (--ext), never by a worker. */
  ext: string;
  /** Chunks written so far (the sum of the groups' counts); final once `complete` is true. */
  chunkCount: number;
  /** False while a split is still writing chunks, or if it died before finishing. */
  complete: boolean;
  completedAt?: string;
  /** Every worker of a job must judge claims by the same numbers (DEPENDENCIES.md, sshfs). */
  staleSeconds: number;
  retries: number;
}

export async function readManifest(store: JobStore): Promise<JobManifest> {
  const text = await store.readMarker();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw damaged(store, 'it is not valid JSON');
  }
  return validateManifest(parsed, store);
}

export async function writeManifest(store: JobStore, manifest: JobManifest): Promise<void> {
  await store.writeMarker(JSON.stringify(manifest, null, 2) + '\n');
}

/** The chunk names of the job, in natural order of their relative paths (DESIGN.md). */
export function chunkNames(manifest: JobManifest): string[] {
  const names: string[] = [];
  const groups = [...manifest.groups].sort((a, b) => (a.name === '' ? -1 : b.name === '' ? 1 : compareNatural(a.name, b.name)));
  for (const group of groups) {
    const prefix = group.name ? `${group.name}/` : '';
    for (let i = 0; i < group.count; i++) names.push(prefix + String(i).padStart(group.width, '0'));
  }
  return names;
}

/** The output name of a chunk: the one name merge and verify read as its output (invariant 8). */
export function outputName(manifest: JobManifest, chunk: string): string {
  return chunk + manifest.ext;
}

function damaged(store: JobStore, why: string): PieceworkError {
  return new PieceworkError(`${store.location}/job.json is damaged: ${why}`, {
    hint: 'job.json decides the job; restore it (e.g. from a backup), or make the job again with `piecework split … --force`',
  });
}

const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isInteger(value) && value >= 0;

/** A hand-edited job.json is refused at start with what is wrong — never a failure on every chunk. */
function validateManifest(value: unknown, store: JobStore): JobManifest {
  if (typeof value !== 'object' || value === null || (value as { tool?: unknown }).tool !== 'piecework') {
    throw new PieceworkError(`${store.location}/job.json is not a piecework job marker`);
  }
  const manifest = value as Partial<JobManifest>;
  if (typeof manifest.protocol !== 'number' || manifest.protocol > PROTOCOL_VERSION) {
    throw new PieceworkError(`${store.location}/job.json uses job protocol ${String(manifest.protocol)}, newer than this piecework understands (${PROTOCOL_VERSION})`, {
      hint: 'upgrade piecework on this host to the version that made the job',
    });
  }
  if (manifest.protocol < PROTOCOL_VERSION) {
    throw new PieceworkError(`${store.location}/job.json was made by an older piecework (job protocol ${manifest.protocol}), which did not record the chunk set`, {
      hint: 'finish it with the piecework that made it, or split the input again with --force',
    });
  }
  if (typeof manifest.id !== 'string' || manifest.id === '') throw damaged(store, '"id" must be a non-empty string');
  if (!Array.isArray(manifest.groups)) throw damaged(store, '"groups" must be a list of {name, count, width}');
  const seen = new Set<string>();
  let total = 0;
  for (const group of manifest.groups as unknown[]) {
    const g = group as Partial<ChunkGroup>;
    if (typeof g !== 'object' || g === null || typeof g.name !== 'string' || !isCount(g.count) || !isCount(g.width) || g.width < 1 || g.width > 12) {
      throw damaged(store, `a group is not {name: string, count: whole number, width: 1–12}: ${JSON.stringify(group)}`);
    }
    if (g.name !== '' && !/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/.test(g.name)) throw damaged(store, `group name ${JSON.stringify(g.name)} is not a safe folder name`);
    if (seen.has(g.name)) throw damaged(store, `group ${JSON.stringify(g.name)} is listed twice`);
    seen.add(g.name);
    total += g.count;
  }
  if (typeof manifest.ext !== 'string' || manifest.ext.includes('/') || (manifest.ext !== '' && !manifest.ext.startsWith('.'))) throw damaged(store, '"ext" must be "" or start with a dot, without "/"');
  if (!isCount(manifest.chunkCount) || manifest.chunkCount !== total) throw damaged(store, `"chunkCount" (${String(manifest.chunkCount)}) must equal the chunks the groups name (${total})`);
  if (typeof manifest.complete !== 'boolean') throw damaged(store, '"complete" must be true or false');
  if (typeof manifest.staleSeconds !== 'number' || !(manifest.staleSeconds >= 2) || manifest.staleSeconds > MAX_SECONDS) throw damaged(store, `"staleSeconds" must be a number of seconds from 2 to ${MAX_SECONDS}`);
  if (!isCount(manifest.retries) || manifest.retries > 1000) throw damaged(store, '"retries" must be a whole number from 0 to 1000');
  if (typeof manifest.split !== 'object' || manifest.split === null) throw damaged(store, '"split" is missing');
  return manifest as JobManifest;
}

/** The longest duration a timer can hold (2^31 ms), in whole seconds. */
export const MAX_SECONDS = Math.floor((2 ** 31 - 1) / 1000);
