/**
 * Group folder names, exact: a split never gives two groups one name, and never a name that looks
 * like a chunk number (a group "000001" would make chunks/000001/000000 look like a chunk inside
 * a chunk). Names from --group are the user's: refused when unsafe, never silently changed, so
 * that `merge --group NAME` finds them. Names from file names are made safe and unique.
 */
import path from 'node:path';
import { UsageError } from '../errors.js';
import { groupNameFrom } from '../store/layout.js';

const SAFE_NAME = /^[A-Za-z0-9_-]+$/;
const CHUNK_NUMBER = /^\d+$/;

/** The name given with --group, checked. */
export function checkGroupName(name: string): string {
  if (!SAFE_NAME.test(name)) {
    throw new UsageError(`--group ${JSON.stringify(name)}: a group name is letters, digits, "_" and "-" only`, `for example --group ${safeGroupName(name)}`);
  }
  if (CHUNK_NUMBER.test(name)) {
    throw new UsageError(`--group ${name}: a group name of digits only would look like a chunk number`, `for example --group g${name}`);
  }
  return name;
}

/**
 * One group per input file (--group-by-file): the file's name without folder and extension,
 * made safe. Names that two files share get _2, _3… skipping every name in use, so x/data.tsv,
 * y/data.tsv and data_2.tsv become data, data_3 and data_2.
 */
export function groupNamesForFiles(files: string[]): string[] {
  const bases = files.map((file) => safeGroupName(path.basename(file).replace(/\.[^.]*$/, '')));
  const shared = new Map<string, number>();
  for (const base of bases) shared.set(base, (shared.get(base) ?? 0) + 1);
  // A name only one file has is that file's; the others are numbered around those.
  const used = new Set(bases.filter((base) => shared.get(base) === 1));
  return bases.map((base) => {
    if (shared.get(base) === 1) return base;
    let name = base;
    for (let n = 2; used.has(name); n++) name = `${base}_${n}`;
    used.add(name);
    return name;
  });
}

function safeGroupName(text: string): string {
  const name = groupNameFrom(text);
  return CHUNK_NUMBER.test(name) ? `file_${name}` : name;
}
