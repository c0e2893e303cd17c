/**
 * Reading the state of a job from listings. A pass lists each folder once (never a lookup per
 * chunk): on a network mount every metadata operation is a round trip, and a listing of 100 000
 * names costs about as much as a handful of lookups.
 *
 * A listing is a hint, never proof: sshfs caches it for 20 s, so an output another host just
 * committed may be missing from it, and one just removed may still be in it. Whatever is reported
 * as done or missing is confirmed by lookups of those names (`confirmOutputs`).
 *
 * The manifest is the truth (invariant 8): only names the manifest gives count — an output is
 * out/<chunk><ext> exactly, a claim is locks/<chunk> exactly; `000003.bak`, an editor's swap file
 * or a group folder whose name is digits are never taken for one.
 */
import { mapBounded } from './concurrency.js';
import type { JobStore } from './store/job-store.js';
import { FAILURE_SUFFIX, OWNER_SUFFIX, parseLaneTempDir } from './store/layout.js';
import { outputName, type JobManifest } from './manifest.js';

/** Lookups in flight at once: enough to hide a mount's latency, far from the fd limit. */
export const LOOKUP_CONCURRENCY = 32;

/** Chunks whose exact output name is in the listing of out/ (a hint). */
export async function listedOutputs(store: JobStore, manifest: JobManifest, chunks: readonly string[]): Promise<Set<string>> {
  return (await listOutputFolder(store, manifest, chunks)).listed;
}

/**
 * The listing of out/ read both ways: which chunks have their output (a hint), and which files
 * are not the output of any chunk — a `.bak`, a copied output, an output of another job. Those
 * are never merged; verify names them so that whoever put them there knows they count for nothing.
 */
export async function listOutputFolder(store: JobStore, manifest: JobManifest, chunks: readonly string[]): Promise<{ listed: Set<string>; stray: string[] }> {
  const names = new Set<string>();
  for (const entry of await store.list('out')) if (!entry.directory) names.add(entry.name);
  const listed = new Set<string>();
  for (const chunk of chunks) {
    const output = outputName(manifest, chunk);
    if (names.delete(output)) listed.add(chunk);
  }
  return { listed, stray: [...names] };
}

/**
 * Which of `chunks` have their output, confirmed name by name: the listing says what is there,
 * and every chunk it says is missing is looked up (one request each, bounded in flight), so a
 * listing 20 s old can never make a complete job look incomplete. Chunks the listing shows are
 * taken at its word unless `lookUpListed` — a requeue on another host may have removed one.
 */
export async function confirmOutputs(
  store: JobStore,
  manifest: JobManifest,
  chunks: readonly string[],
  options: { listed?: Set<string>; lookUpListed?: boolean } = {},
): Promise<Set<string>> {
  const listed = options.listed ?? (await listedOutputs(store, manifest, chunks));
  const toLookUp = options.lookUpListed ? chunks : chunks.filter((c) => !listed.has(c));
  const found = await mapBounded(toLookUp, LOOKUP_CONCURRENCY, async (chunk) => {
    const info = await store.lookup('out', outputName(manifest, chunk));
    return info !== undefined && !info.directory;
  });
  const done = options.lookUpListed ? new Set<string>() : new Set(listed);
  toLookUp.forEach((chunk, i) => {
    if (found[i]) done.add(chunk);
    else done.delete(chunk);
  });
  return done;
}

/** Chunks of the job that have a claim folder in locks/ (a hint). */
export async function listClaims(store: JobStore, chunkSet: ReadonlySet<string>): Promise<Set<string>> {
  const claims = new Set<string>();
  for (const entry of await store.list('locks')) if (entry.directory && chunkSet.has(entry.name)) claims.add(entry.name);
  return claims;
}

/** Claims' owner records present in locks/ (a hint). */
export async function listOwners(store: JobStore): Promise<Set<string>> {
  const owners = new Set<string>();
  for (const entry of await store.list('locks')) if (!entry.directory && entry.name.endsWith(OWNER_SUFFIX)) owners.add(entry.name.slice(0, -OWNER_SUFFIX.length));
  return owners;
}

/** Chunks of the job that have a failure record (a hint). */
export async function listFailures(store: JobStore, chunkSet: ReadonlySet<string>): Promise<Set<string>> {
  const failed = new Set<string>();
  for (const entry of await store.list('failed')) {
    if (entry.directory || !entry.name.endsWith(FAILURE_SUFFIX)) continue;
    const chunk = entry.name.slice(0, -FAILURE_SUFFIX.length);
    if (chunkSet.has(chunk)) failed.add(chunk);
  }
  return failed;
}

/** What .tmp/ holds, relative to it: files at the top and in lane folders, and the lane folders. */
export async function listTemp(store: JobStore): Promise<{ files: string[]; laneDirs: string[] }> {
  const files: string[] = [];
  const laneDirs: string[] = [];
  for (const entry of await store.list('tmp')) {
    const parts = entry.name.split('/');
    if (entry.directory) {
      if (parts.length === 1 && parseLaneTempDir(entry.name)) laneDirs.push(entry.name);
    } else if (parts.length <= 2) {
      files.push(entry.name);
    }
  }
  return { files, laneDirs };
}
