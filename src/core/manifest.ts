/**
 * job.json: the job marker. Its presence is how every command knows the folder is a job and the
 * mount under it is still there (invariant 6); its contents say how the job was split, whether
 * the split finished, and the settings every worker of the job must share.
 */
import { promises as fs } from 'node:fs';
import { errorCode, isMountGone, JobMissingError, PieceworkError } from './errors.js';
import { writeFileAtomic } from './atomic-write.js';
import { PROTOCOL_VERSION, type JobLayout } from './job-folder.js';

export type SplitMode = 'lines' | 'bytes' | 'chunks' | 'files';

export interface SplitRecord {
  mode: SplitMode;
  /** lines per chunk, bytes per chunk, chunk count or files per chunk, by mode. */
  size: number;
  inputs: string[];
  /** How chunks were put in group folders: none, one per input file, or one named group. */
  grouping: 'none' | 'per-file' | 'named';
}

export interface JobManifest {
  protocol: number;
  tool: 'piecework';
  id: string;
  created: string;
  split: SplitRecord;
  /** Chunks written so far; final once `complete` is true. */
  chunkCount: number;
  /** The chunk set, the truth for every command: group '' is the top level; chunk i of a group is `${name ? name + '/' : ''}${String(i).padStart(width, '0')}` for i < count. */
  groups: { name: string; count: number; width: number }[];
  /** Output extension with its dot ('' for none): out/<chunk><ext>. Set by split (--ext), never by a worker. */
  ext: string;
  /** False while a split is still writing chunks, or if it died before finishing. */
  complete: boolean;
  completedAt?: string;
  /** Every worker of a job must judge claims by the same numbers (DEPENDENCIES.md, sshfs). */
  staleSeconds: number;
  retries: number;
}

export async function readManifest(layout: JobLayout): Promise<JobManifest> {
  let text: string;
  try {
    text = await fs.readFile(layout.jobFile, 'utf8');
  } catch (error) {
    if (isMountGone(error)) throw new JobMissingError(layout.root, `the file system answered ${errorCode(error)}: the mount looks gone`);
    if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') throw new JobMissingError(layout.root, 'job.json not found');
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new PieceworkError(`${layout.jobFile} is not valid JSON`, { hint: 'the job marker is damaged; re-create the job with `piecework split … --force`' });
  }
  return validateManifest(parsed, layout.jobFile);
}

function validateManifest(value: unknown, file: string): JobManifest {
  const manifest = value as Partial<JobManifest>;
  if (typeof manifest !== 'object' || manifest === null || manifest.tool !== 'piecework' || typeof manifest.id !== 'string') {
    throw new PieceworkError(`${file} is not a piecework job marker`);
  }
  if (typeof manifest.protocol !== 'number' || manifest.protocol > PROTOCOL_VERSION) {
    throw new PieceworkError(`${file} uses job protocol ${String(manifest.protocol)}, newer than this piecework understands (${PROTOCOL_VERSION})`, {
      hint: 'upgrade piecework on this host to the version that made the job',
    });
  }
  return manifest as JobManifest;
}

export async function writeManifest(layout: JobLayout, manifest: JobManifest): Promise<void> {
  await writeFileAtomic(layout.jobFile, JSON.stringify(manifest, null, 2) + '\n', { tempDir: layout.tmpDir, durable: true });
}
