import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { registerCleanup, removeDirSync, runTag } from './cleanup.js';

/**
 * A fresh folder under os.tmpdir(), named `pw<pid>-<prefix>-XXXXXX` so that concurrent runs never
 * collide and leftovers can be traced to their run; removed by runCleanups() (after anything
 * mounted inside it was unmounted, since later registrations are undone first).
 */
export function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `${runTag}-${prefix}-`));
  registerCleanup(() => removeDirSync(dir), `rm -rf ${dir}`);
  return dir;
}
