/**
 * Listing the job folder. A pass reads each folder once (one readdir per folder, never a stat per
 * chunk): on a network mount every metadata operation is a round trip, and a listing of 100 000
 * names costs about as much as a handful of stats.
 *
 * A listing is a hint, never proof: sshfs caches it for 20 s, so an output another host just
 * committed may be missing from it. Workers confirm with a direct lookup after claiming.
 */
import { promises as fs } from 'node:fs';
import type { Dirent } from 'node:fs';
import { errorCode, isMountGone, JobMissingError } from './errors.js';
import { chunkNameOfOutput, FAILURE_SUFFIX, isChunkName, OWNER_SUFFIX, parseLaneTempDir, type JobLayout } from './job-folder.js';
import { sortNatural } from './natural-order.js';

/** Relative paths of the files under `dir`, group folders included; [] if it is missing. */
export async function listTree(dir: string, options: { includeDirs?: boolean } = {}): Promise<string[]> {
  const found: string[] = [];
  const walk = async (relative: string): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await fs.readdir(relative ? `${dir}/${relative}` : dir, { withFileTypes: true });
    } catch (error) {
      if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return;
      throw error;
    }
    const subfolders: string[] = [];
    for (const entry of entries) {
      const name = relative ? `${relative}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        subfolders.push(name);
        if (options.includeDirs) found.push(name + '/');
      } else {
        found.push(name);
      }
    }
    for (const sub of subfolders) await walk(sub);
  };
  await walk('');
  return found;
}

/** Chunk names in natural order. */
export async function listChunks(layout: JobLayout): Promise<string[]> {
  try {
    const names = await listTree(layout.chunksDir);
    return sortNatural(names.filter(isChunkName));
  } catch (error) {
    if (isMountGone(error)) throw new JobMissingError(layout.root, `the file system answered ${errorCode(error)}: the mount looks gone`);
    throw error;
  }
}

/** chunk name → output path relative to out/ (the chunk name plus any extension). */
export async function listOutputs(layout: JobLayout): Promise<Map<string, string>> {
  const outputs = new Map<string, string>();
  for (const relative of await listTree(layout.outDir)) {
    const chunk = chunkNameOfOutput(relative);
    if (chunk !== undefined) outputs.set(chunk, relative);
  }
  return outputs;
}

/** Chunks with a claim directory in locks/. */
export async function listClaims(layout: JobLayout): Promise<Set<string>> {
  const claims = new Set<string>();
  for (const relative of await listTree(layout.locksDir, { includeDirs: true })) {
    // A claim is a directory whose last segment is a chunk number; group folders are not.
    if (relative.endsWith('/')) {
      const name = relative.slice(0, -1);
      if (isChunkName(name)) claims.add(name);
    }
  }
  return claims;
}

export async function listOwners(layout: JobLayout): Promise<Set<string>> {
  const owners = new Set<string>();
  for (const relative of await listTree(layout.locksDir)) {
    if (relative.endsWith(OWNER_SUFFIX)) owners.add(relative.slice(0, -OWNER_SUFFIX.length));
  }
  return owners;
}

/** Chunks that have a failure record. */
export async function listFailures(layout: JobLayout): Promise<Set<string>> {
  const failed = new Set<string>();
  for (const relative of await listTree(layout.failedDir)) {
    if (relative.endsWith(FAILURE_SUFFIX)) {
      const name = relative.slice(0, -FAILURE_SUFFIX.length);
      if (isChunkName(name)) failed.add(name);
    }
  }
  return failed;
}

/**
 * Temp outputs of chunks (`<chunk>.<host>.<pid>.<random>`, named by their writer), at the top of
 * .tmp/ or in a lane's folder (`<host>.<pid>.<lane>/`); relative to .tmp/.
 */
export async function listTempFiles(layout: JobLayout): Promise<string[]> {
  const names = await listTree(layout.tmpDir);
  return names.filter((name) => {
    const parts = name.split('/');
    return parts.length <= 2 && !parts[parts.length - 1]!.startsWith('.');
  });
}

/** Lane temp folders (`<host>.<pid>.<lane>`) at the top of .tmp/. */
export async function listLaneTempDirs(layout: JobLayout): Promise<string[]> {
  try {
    const entries = await fs.readdir(layout.tmpDir, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory() && parseLaneTempDir(e.name)).map((e) => e.name);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return [];
    throw error;
  }
}

/**
 * Atomic-write temps (dot-files: job.json, heartbeats, failure records) older than `olderThanMs`
 * by the mount's clock: such a write takes milliseconds, so an old one was cut off by a crash.
 */
export async function listStaleWriteTemps(layout: JobLayout, mountNow: number, olderThanMs: number): Promise<string[]> {
  const names = (await listTree(layout.tmpDir)).filter((name) => name.startsWith('.') && !name.includes('/'));
  const stale: string[] = [];
  for (const name of names) {
    try {
      if (mountNow - (await fs.stat(`${layout.tmpDir}/${name}`)).mtimeMs > olderThanMs) stale.push(name);
    } catch {
      // renamed into place since the listing
    }
  }
  return stale;
}

export async function exists(file: string): Promise<boolean> {
  try {
    await fs.stat(file);
    return true;
  } catch (error) {
    if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return false;
    throw error;
  }
}
