/**
 * `split --files`: the work items are existing files, listed (not copied), N per chunk, one path
 * a line. A path must name the same file on every host that mounts the job:
 *   - a file inside the job folder is stored relative to it (hosts may mount the job anywhere);
 *   - any other file keeps its absolute path (a path like ../../data/x would only hold on hosts
 *     that mount the job at the same depth as this one).
 */
import path from 'node:path';
import { UsageError } from '../errors.js';
import { chunkWidthFor } from '../store/layout.js';
import { compareNatural } from '../natural-order.js';
import { exists } from './local-files.js';
import type { ChunkWriter } from './chunk-writer.js';

export async function resolveFileItems(patterns: string[], jobRoot: string): Promise<string[]> {
  if (patterns.length === 0) throw new UsageError('--files needs at least one file or glob');
  const found: string[] = [];
  for (const pattern of patterns) {
    const matches = (await exists(pattern)) ? [pattern] : await (await import('fast-glob')).default(pattern, { onlyFiles: true, dot: false });
    if (matches.length === 0) throw new UsageError(`${pattern}: no file matches`);
    found.push(...matches.sort(compareNatural));
  }
  return found.map((file) => {
    if (file.includes('\n')) throw new UsageError(`${JSON.stringify(file)}: file names with a newline cannot be listed in a chunk`);
    return storedFilePath(path.resolve(file), jobRoot);
  });
}

/** Relative to the job only for a file inside it; absolute otherwise. */
export function storedFilePath(absolute: string, jobRoot: string): string {
  const relative = path.relative(jobRoot, absolute);
  const inside = relative !== '' && !relative.startsWith('..' + path.sep) && relative !== '..' && !path.isAbsolute(relative);
  return inside ? relative : absolute;
}

export function fileListWidth(files: number, perChunk: number): number {
  return chunkWidthFor(Math.ceil(files / perChunk));
}

export async function writeFileListChunks(writer: ChunkWriter, files: string[], perChunk: number): Promise<void> {
  for (let i = 0; i < files.length; i += perChunk) {
    const list = Buffer.from(files.slice(i, i + perChunk).join('\n') + '\n');
    await writer.write(list, 0, list.length);
    await writer.endChunk();
  }
}
