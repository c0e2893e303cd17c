/**
 * merge --into-dir: the outputs of a --files job named after their inputs, as hand-written loops
 * name them (`scans/a.png` → `DIR/a.json`: the input's stem and the job's output extension). Each
 * output is hard-linked into DIR when it can be (same file system), else copied (temp + rename).
 * Every name is decided before anything is written: two inputs with one stem, or a name already
 * in DIR, are refused with both named — nothing is overwritten.
 */
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import { errorCode, IncompleteJobError, PieceworkError, UsageError } from './errors.js';
import { chunkNames, outputName, readManifest } from './manifest.js';
import { confirmOutputs } from './scan.js';
import { mapBounded } from './concurrency.js';
import type { JobStore } from './store/job-store.js';
import { withJobStore, type JobTarget } from './store/open-store.js';

export interface MergeIntoDirOptions extends JobTarget {
  dir: string;
  /** Place the outputs that exist, even if the job is incomplete. */
  partial?: boolean;
  group?: string;
}

export interface MergeIntoDirResult {
  outputs: number;
  missing: number;
  /** Outputs hard-linked (the rest were copied). */
  linked: number;
  target: string;
}

export function mergeIntoDir(options: MergeIntoDirOptions): Promise<MergeIntoDirResult> {
  return withJobStore(options, (store) => placeOutputs(store, options));
}

async function placeOutputs(store: JobStore, options: MergeIntoDirOptions): Promise<MergeIntoDirResult> {
  const manifest = await readManifest(store);
  if (manifest.split.mode !== 'files') {
    throw new UsageError('--into-dir names outputs after their input files: this job was not split with --files', 'merge into one stream instead: piecework merge JOB > all');
  }
  const dir = path.resolve(options.dir);
  const root = store.localPath('top', '');
  if (root !== undefined) {
    const relative = path.relative(root, dir);
    if (relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative))) throw new UsageError(`--into-dir ${options.dir} is inside the job folder`, 'give a folder outside the job');
  }
  const chunks = chunkNames(manifest).filter((c) => !options.group || c.startsWith(`${options.group}/`));
  const done = await confirmOutputs(store, manifest, chunks);
  const missing = chunks.filter((c) => !done.has(c));
  if (!options.partial && (missing.length > 0 || !manifest.complete)) {
    throw new IncompleteJobError(`job incomplete: ${missing.length} of ${chunks.length} chunks have no output yet`, missing.length, 'see what is missing with `piecework verify JOB`, or place what exists with --partial');
  }

  // Decide every name first: one input per chunk, no two inputs with one stem.
  const present = chunks.filter((c) => done.has(c));
  const inputs = await mapBounded(present, 16, async (chunk) => {
    const listed = (await store.read('chunks', chunk))?.toString('utf8').split('\n').filter(Boolean) ?? [];
    if (listed.length !== 1) {
      throw new UsageError(`chunk ${chunk} has ${listed.length} input files: --into-dir needs one input file per chunk`, 'split with --per-chunk 1 (the default), or merge into one stream');
    }
    return listed[0]!;
  });
  const byName = new Map<string, string>();
  const placements = present.map((chunk, i) => {
    const input = inputs[i]!;
    const base = path.basename(input);
    const ext = path.extname(base);
    const name = (ext ? base.slice(0, -ext.length) : base) + manifest.ext;
    const other = byName.get(name);
    if (other !== undefined) throw new UsageError(`--into-dir: ${other} and ${input} would both become ${name}`, 'inputs with the same name in different folders (or extensions) cannot share one folder: merge per group (--group), or rename the inputs');
    byName.set(name, input);
    return { chunk, name, output: outputName(manifest, chunk) };
  });

  await fs.mkdir(dir, { recursive: true }).catch((error: unknown) => {
    throw new PieceworkError(`cannot make ${options.dir}: ${(error as Error).message}`, { hint: 'check the path and its permissions' });
  });
  const existing = new Set(await fs.readdir(dir));
  const taken = placements.find((p) => existing.has(p.name));
  if (taken) throw new PieceworkError(`${path.join(options.dir, taken.name)} exists already; nothing was written`, { hint: 'give an empty or new folder: --into-dir never overwrites a file' });

  const linked = await mapBounded(placements, 8, async ({ name, output }) => place(store, output, path.join(dir, name)));
  return { outputs: placements.length, missing: missing.length, linked: linked.filter(Boolean).length, target: dir };
}

/** A hard link when the output is a local file on the same file system; else a copy. True if linked. */
async function place(store: JobStore, output: string, target: string): Promise<boolean> {
  const local = store.localPath('out', output);
  if (local !== undefined) {
    try {
      await fs.link(local, target);
      return true;
    } catch (error) {
      // EXDEV: another file system; EPERM: a file system without hard links. Copy instead.
      if (errorCode(error) !== 'EXDEV' && errorCode(error) !== 'EPERM' && errorCode(error) !== 'EMLINK') throw error;
    }
  }
  const source = await store.readStream('out', output);
  if (!source) throw new PieceworkError(`the output of ${output} went away while merging`, { hint: 'was the job requeued meanwhile? run the merge again' });
  const temp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}`);
  try {
    await pipeline(source, createWriteStream(temp, { flags: 'wx' }));
    await fs.link(temp, target); // fails with EEXIST rather than replace a file that appeared meanwhile
  } finally {
    await fs.unlink(temp).catch(() => {});
  }
  return false;
}
