// A warm worker in Node: set-up once per process, then one request line per chunk on stdin.
//
//   piecework work JOB -j 4 --warm -- node examples/warm/score.mjs
import { readFile, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';

// Stands in for the expensive part: a model, a database connection, a compiled regex table…
const weights = new Map(['error', 'warning', 'timeout'].map((word, i) => [word, i + 1]));

for await (const line of createInterface({ input: process.stdin })) {
  const request = JSON.parse(line);
  try {
    const lines = (await readFile(request.in, 'utf8')).split('\n').filter(Boolean);
    const scored = lines.map((text) => `${text.split(/\s+/).reduce((sum, word) => sum + (weights.get(word) ?? 0), 0)}\t${text}\n`);
    await writeFile(request.out, scored.join(''));
    process.stdout.write('ok\n');
  } catch (error) {
    process.stdout.write(`fail ${String(error.message).replace(/\s+/g, ' ')}\n`);
  }
}
