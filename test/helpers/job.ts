/** Small helpers for tests that look inside a job folder. */
import { promises as fs, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { sortNatural } from '../../src/core/natural-order.js';
import { runPiecework } from './cli.js';

/** Every file under `dir`, relative, in natural order. */
export function filesUnder(dir: string): string[] {
  const found: string[] = [];
  const walk = (rel: string) => {
    let entries;
    try {
      entries = readdirSync(path.join(dir, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const name = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(name);
      else found.push(name);
    }
  };
  walk('');
  return sortNatural(found);
}

export function concatChunks(job: string): Buffer {
  return Buffer.concat(filesUnder(path.join(job, 'chunks')).map((f) => readFileSync(path.join(job, 'chunks', f))));
}

export async function readJson<T>(file: string): Promise<T> {
  return JSON.parse(await fs.readFile(file, 'utf8')) as T;
}

/** A job of `count` one-line chunks ("0", "1", …) split into `root/name`; its path. */
export async function lineJob(root: string, name: string, count: number): Promise<string> {
  const input = path.join(root, `${name}.txt`);
  await fs.writeFile(input, Array.from({ length: count }, (_, i) => `${i}`).join('\n') + '\n');
  return (await runPiecework(['split', input, '--lines', '1', '--into', path.join(root, name)])).stdout.trim();
}
