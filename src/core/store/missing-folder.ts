import { existsSync } from 'node:fs';
import path from 'node:path';

/**
 * An ENOENT names the file the call was given (a rename: its source), not what is missing. When a
 * folder of the job is gone (out/ removed by hand), name that folder — the topmost one missing.
 * Synchronous lookups, on an error path only.
 */
export function nameMissingFolder(error: NodeJS.ErrnoException & { dest?: string }, root: string): void {
  for (const file of [error.dest, error.path]) {
    if (!file || !file.startsWith(root + path.sep)) continue;
    let missing: string | undefined;
    for (let folder = path.dirname(file); folder.startsWith(root + path.sep) && !existsSync(folder); folder = path.dirname(folder)) missing = folder;
    if (missing) {
      error.path = missing;
      return;
    }
  }
}
