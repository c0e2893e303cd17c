// 3. split and merge of a big text file vs coreutils (`split -C 64M`, `split -l`, `cat`), with peak RSS.
// Both sides read from the page cache and write to the same local disk; `sync` runs before each
// measured command so that one's dirty pages are not flushed during the other's time.
import { execFileSync } from 'node:child_process';
import { closeSync, linkSync, mkdirSync, openSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir } from '../../test/helpers/tmp.js';
import { atMost, fmtMs, med, median, pieceworkBin, ratio, Rows, runTimed, type Row, type Scenario, type ScenarioResult } from '../lib.js';

const MiB = 2 ** 20;
const CHUNK = '64M';
/** About 64 MiB of the generated lines (~70 bytes each), so both splits make about as many chunks. */
const LINES = '1000000';
const RSS_LIMIT_MB = 200;

/** Text lines of varied length (an id, a number, some words), written in 16 MiB blocks. */
function makeTextFile(path: string, bytes: number): void {
  const words = 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega'.split(' ');
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const lines: string[] = [];
  let size = 0;
  let id = 0;
  while (size < 16 * MiB) {
    const n = 3 + Math.floor(rand() * 12);
    const line = `${String(id++).padStart(9, '0')}\t${Math.floor(rand() * 1e6)}\t${Array.from({ length: n }, () => words[Math.floor(rand() * words.length)]).join(' ')}\n`;
    lines.push(line);
    size += line.length;
  }
  const block = Buffer.from(lines.join(''));
  const fd = openSync(path, 'w');
  try {
    for (let written = 0; written < bytes; written += block.length) writeSync(fd, block, 0, Math.min(block.length, bytes - written));
  } finally {
    closeSync(fd);
  }
  // The file ends at a block boundary or inside one; end it with a newline either way.
  const size2 = statSync(path).size;
  if (size2 % block.length !== 0) {
    const tail = openSync(path, 'a');
    writeSync(tail, '\n');
    closeSync(tail);
  }
}

const sync = () => execFileSync('sync');

export const splitMerge: Scenario = {
  name: 'split-merge',
  title: `split and merge of a big text file vs coreutils (split -C ${CHUNK}, split -l ${LINES}, cat)`,
  async run(ctx): Promise<ScenarioResult> {
    const bytes = ctx.quick ? 128 * MiB : 1024 * MiB;
    const dir = makeTempDir('bench-split');
    const input = join(dir, 'input.txt');
    ctx.log(`split-merge: writing a ${bytes / MiB} MiB text file`);
    makeTextFile(input, bytes);
    const size = statSync(input).size;

    const rows = new Rows();
    const pwSplit = 'piecework split --bytes 64M';
    const cuSplit = 'coreutils split -C 64M';
    const pwLines = `piecework split --lines ${LINES}`;
    const cuLines = `coreutils split -l ${LINES}`;
    const pwMerge = 'piecework merge -o FILE';
    const cuMerge = 'cat out/* > FILE';
    const mergeSource = async (job: string) => {
      // Outputs = the chunks themselves (hard links): merge then reads exactly the split's bytes.
      for (const name of readdirSync(join(job, 'chunks'))) linkSync(join(job, 'chunks', name), join(job, 'out', name));
    };
    const checkSize = (file: string, what: string) => {
      const got = statSync(file).size;
      if (got !== size) throw new Error(`${what}: ${got} bytes, expected ${size}`);
    };

    for (let r = 0; r < ctx.repeats; r++) {
      ctx.log(`split-merge: run ${r + 1}/${ctx.repeats}`);
      const job = join(dir, `pw-${r}`);
      sync();
      rows.add(pwSplit, await runTimed([pieceworkBin, 'split', input, '--into', job, '--bytes', CHUNK, '-q'], { usage: true }));
      const cu = join(dir, `cu-${r}`);
      mkdirSync(cu);
      sync();
      rows.add(cuSplit, await runTimed(['split', '-C', CHUNK, input, join(cu, 'x')], { usage: true }), { against: pwSplit });
      if (readdirSync(join(job, 'chunks')).length !== readdirSync(cu).length) throw new Error('piecework and coreutils split into different numbers of chunks');
      rmSync(cu, { recursive: true, force: true });

      const jobLines = join(dir, `pw-lines-${r}`);
      sync();
      rows.add(pwLines, await runTimed([pieceworkBin, 'split', input, '--into', jobLines, '--lines', LINES, '-q'], { usage: true }));
      const cuL = join(dir, `cu-lines-${r}`);
      mkdirSync(cuL);
      sync();
      rows.add(cuLines, await runTimed(['split', '-l', LINES, input, join(cuL, 'x')], { usage: true }), { against: pwLines });
      if (readdirSync(join(jobLines, 'chunks')).length !== readdirSync(cuL).length) throw new Error('piecework and coreutils split -l made different numbers of chunks');
      rmSync(jobLines, { recursive: true, force: true });
      rmSync(cuL, { recursive: true, force: true });

      await mergeSource(job);
      const merged = join(dir, `merged-${r}`);
      sync();
      rows.add(pwMerge, await runTimed([pieceworkBin, 'merge', job, '-o', merged, '-q'], { usage: true }));
      checkSize(merged, 'piecework merge');
      if (r === 0) execFileSync('cmp', [input, merged]);
      rmSync(merged);
      const catted = join(dir, `cat-${r}`);
      sync();
      rows.add(cuMerge, await runTimed(['bash', '-c', 'cat "$1"/out/* > "$2"', 'cat', job, catted], { usage: true }), { against: pwMerge });
      checkSize(catted, 'cat');
      rmSync(catted);
      rmSync(job, { recursive: true, force: true });
    }

    // Peak RSS must not grow with the input: one more split and merge of an eighth of it.
    const notes: string[] = [];
    let smallRss: { split?: number; merge?: number };
    if (!ctx.quick) {
      const small = join(dir, 'small.txt');
      makeTextFile(small, bytes / 8);
      const job = join(dir, 'pw-small');
      const s = await runTimed([pieceworkBin, 'split', small, '--into', job, '--bytes', CHUNK, '-q'], { usage: true });
      await mergeSource(job);
      const m = await runTimed([pieceworkBin, 'merge', job, '-o', join(dir, 'merged-small'), '-q'], { usage: true });
      smallRss = { split: s.peakRssMb, merge: m.peakRssMb };
      notes.push(`Peak RSS with an input of ${bytes / 8 / MiB} MiB: split ${smallRss.split?.toFixed(0)} MB, merge ${smallRss.merge?.toFixed(0)} MB (vs ${rows.get(pwSplit)?.peakRssMb?.toFixed(0)} and ${rows.get(pwMerge)?.peakRssMb?.toFixed(0)} MB at ${bytes / MiB} MiB).`);
      rmSync(job, { recursive: true, force: true });
    }

    const rate = (row: Row | undefined) => (row ? `${(size / MiB / (med(row) / 1000)).toFixed(0)} MiB/s` : '');
    for (const row of rows.rows) row.extra = { throughput: rate(row) };
    const ratios = [
      ratio('piecework split / coreutils split', rows.get(pwSplit), rows.get(cuSplit)),
      ratio('piecework merge / cat', rows.get(pwMerge), rows.get(cuMerge)),
      ratio('piecework split --lines / coreutils split -l', rows.get(pwLines), rows.get(cuLines)),
    ];
    const rssOf = (tool: string) => rows.get(tool)?.peakRssMb ?? NaN;
    // Every run, not just the median: run r of piecework against run r of coreutils (interleaved).
    const worstRun = (a: Row | undefined, b: Row | undefined) => Math.max(...(a?.samples ?? []).map((ms, i) => ms / (b?.samples[i] ?? NaN)));
    const worstBytes = worstRun(rows.get(pwSplit), rows.get(cuSplit));
    const targets = [
      { target: 'split: ≥ 0.8× coreutils speed (time ≤ 1.25×)', met: atMost(ratios[0]!.value, 1.25), detail: `time ${ratios[0]!.value.toFixed(2)}× → speed ${(1 / ratios[0]!.value).toFixed(2)}×` },
      { target: 'split: ≥ 0.8× coreutils speed in every run', met: atMost(worstBytes, 1.25), detail: `worst run: time ${worstBytes.toFixed(2)}× → speed ${(1 / worstBytes).toFixed(2)}×` },
      { target: 'split --lines: ≥ 0.8× split -l speed (time ≤ 1.25×)', met: atMost(ratios[2]!.value, 1.25), detail: `time ${ratios[2]!.value.toFixed(2)}× → speed ${(1 / ratios[2]!.value).toFixed(2)}×` },
      { target: 'merge: ≥ 0.8× coreutils speed (time ≤ 1.25×)', met: atMost(ratios[1]!.value, 1.25), detail: `time ${ratios[1]!.value.toFixed(2)}× → speed ${(1 / ratios[1]!.value).toFixed(2)}×` },
      { target: `split and merge: peak RSS < ${RSS_LIMIT_MB} MB`, met: atMost(Math.max(rssOf(pwSplit), rssOf(pwLines), rssOf(pwMerge)), RSS_LIMIT_MB - 0.001), detail: `split ${rssOf(pwSplit).toFixed(0)} MB, --lines ${rssOf(pwLines).toFixed(0)} MB, merge ${rssOf(pwMerge).toFixed(0)} MB` },
    ];
    const profile = [
      `CPU (user+sys): piecework split ${fmtMs(median(rows.get(pwSplit)?.cpuSamples ?? []))} vs coreutils ${fmtMs(median(rows.get(cuSplit)?.cpuSamples ?? []))}; --lines ${fmtMs(median(rows.get(pwLines)?.cpuSamples ?? []))} vs split -l ${fmtMs(median(rows.get(cuLines)?.cpuSamples ?? []))}; piecework merge ${fmtMs(median(rows.get(pwMerge)?.cpuSamples ?? []))} vs cat ${fmtMs(median(rows.get(cuMerge)?.cpuSamples ?? []))}`,
    ];
    return { name: 'split-merge', title: `${this.title}: ${(size / MiB).toFixed(0)} MiB`, rows: rows.rows, ratios, targets, profile, notes };
  },
};
