// 4. The tail of a big job: 100 000 chunks of which 99 000 already have outputs. How long does a
// fresh worker take to find the rest and finish it, and how many file-system operations does it
// make per chunk of the job — a number that must not grow with the job's size.
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir } from '../../test/helpers/tmp.js';
import { atMost, fmtMs, med, median, peer, profileStep, pieceworkBin, ratio, Rows, runTimed, runTogether, type Scenario, type ScenarioResult } from '../lib.js';
import { countSyscalls, hasStrace, perUnit, total } from '../profile.js';

const LANES = 2;
const DONE_FRACTION = 0.99;

interface TailJob {
  job: string;
  chunks: number;
  /** Chunks without output at the start of every run. */
  remaining: string[];
  splitMs: number;
}

/** A job of `chunks` one-line chunks, DONE_FRACTION of them (picked at random) with an output. */
async function makeTailJob(dir: string, name: string, chunks: number, doneFraction = DONE_FRACTION): Promise<TailJob> {
  const input = join(dir, `${name}.txt`);
  writeFileSync(input, Array.from({ length: chunks }, (_, i) => `line ${i + 1}\n`).join(''));
  const job = join(dir, name);
  const split = await runTimed([pieceworkBin, 'split', input, '--into', job, '--lines', '1', '-q']);
  const names = readdirSync(join(job, 'chunks')).sort();
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let i = names.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [names[i], names[j]] = [names[j]!, names[i]!];
  }
  const doneCount = Math.round(chunks * doneFraction);
  for (const n of names.slice(0, doneCount)) writeFileSync(join(job, 'out', n), 'done before\n');
  return { job, chunks, remaining: names.slice(doneCount), splitMs: split.ms };
}

/** Back to the starting state: the remaining chunks have no output, no claim, no temp file. */
function reset(t: TailJob): void {
  for (const n of t.remaining) rmSync(join(t.job, 'out', n), { force: true });
  for (const sub of ['locks', 'tmp', '.tmp']) {
    for (const n of safeList(join(t.job, sub))) rmSync(join(t.job, sub, n), { recursive: true, force: true });
  }
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function checkComplete(t: TailJob, tool: string): void {
  const n = readdirSync(join(t.job, 'out')).length;
  if (n !== t.chunks) throw new Error(`${tool}: ${n} outputs for ${t.chunks} chunks`);
}

export const tail: Scenario = {
  name: 'tail',
  title: 'The tail: a fresh worker finds and finishes the last 1 % of a big job (cat, 2 lanes)',
  async run(ctx): Promise<ScenarioResult> {
    const big = ctx.quick ? 20_000 : 100_000;
    const dir = makeTempDir('bench-tail');
    ctx.log(`tail: splitting ${big} chunks and writing ${Math.round(big * DONE_FRACTION)} outputs`);
    const t = await makeTailJob(dir, 'big', big);
    const left = t.remaining.length;
    // The same amount of work as a job of its own, for the cost of the 99 % already done.
    const baselineInput = join(dir, 'baseline.txt');
    writeFileSync(baselineInput, Array.from({ length: left }, (_, i) => `line ${i + 1}\n`).join(''));

    const rows = new Rows();
    rows.add(`piecework split --lines 1 (${big} chunks)`, { ms: t.splitMs }, { chunks: big, info: true });
    const findMs: number[] = [];
    const pwTool = `piecework work: last ${left} of ${big}`;
    for (let r = 0; r < ctx.repeats; r++) {
      ctx.log(`tail: run ${r + 1}/${ctx.repeats}`);
      reset(t);
      let firstClaim = NaN;
      let pending = NaN;
      const run = await runTimed([pieceworkBin, 'work', t.job, '-j', String(LANES), '--events', '-q', '--', 'cat'], {
        onLine: (line, at) => {
          if (Number.isNaN(firstClaim) && line.includes('"chunk:claimed"')) firstClaim = at;
          if (Number.isNaN(pending) && line.includes('"work:pass"')) pending = (JSON.parse(line) as { pending: number }).pending;
        },
      });
      if (pending !== left) throw new Error(`piecework's first pass found ${pending} pending chunks, expected ${left}`);
      findMs.push(firstClaim);
      rows.add(pwTool, run, { chunks: left });
      checkComplete(t, 'piecework');

      const baseline = join(dir, `baseline-${r}`);
      await runTimed([pieceworkBin, 'split', baselineInput, '--into', baseline, '--lines', '1', '-q']);
      rows.add(`piecework work: a job of just ${left}`, await runTimed([pieceworkBin, 'work', baseline, '-j', String(LANES), '-q', '--', 'cat']), { chunks: left, info: true });
      rmSync(baseline, { recursive: true, force: true });

      reset(t);
      const loop = ['bash', peer('bash-loop.sh'), t.job, '--', 'cat'];
      const [b] = await runTogether([loop, loop]);
      rows.add(`bash loop ×2: last ${left} of ${big}`, b!, { chunks: left, against: pwTool });
      checkComplete(t, 'bash loop');
    }
    const pw = rows.get(pwTool)!;
    pw.extra = { 'to first claim': fmtMs(median(findMs)) };

    const profile: string[] = [];
    const targets = [{ target: `tail: a fresh worker finds the remaining chunks of ${big} in < 2 s`, met: atMost(median(findMs), 1999), detail: `first claim after ${fmtMs(median(findMs))} (process start included); all ${left} done in ${fmtMs(med(pw))}` }];
    if (hasStrace) {
      // File-system calls per chunk of the job, at a tenth of the size and at full size.
      ctx.log('tail: counting system calls (strace) at two job sizes');
      await profileStep(profile, 'system calls per chunk', async () => {
        const small = await makeTailJob(dir, 'small', big / 10);
        // The worker's fixed cost (node's start, loading modules, clock probe, heartbeat): a
        // worker on a finished job of 10 chunks. Subtracted, so that what is left scales.
        const done = await makeTailJob(dir, 'finished', 10, 1);
        const strace = (tj: TailJob) => countSyscalls([pieceworkBin, 'work', tj.job, '-j', String(LANES), '-q', '--', 'cat'], { dir, pathPrefix: tj.job, classes: 'file,desc' });
        const fixed = total((await strace(done)).worker);
        profile.push(`fixed cost of a worker (a finished job of 10 chunks): ${fixed} file+desc syscalls`);
        const perChunk: number[] = [];
        for (const tj of [small, t]) {
          reset(tj);
          const c = await strace(tj);
          checkComplete(tj, 'piecework under strace');
          const per = (total(c.worker) - fixed) / tj.chunks;
          perChunk.push(per);
          profile.push(
            `${tj.chunks} chunks (${tj.remaining.length} to do): worker file+desc syscalls ${total(c.worker)}, less the fixed cost ${per.toFixed(2)} per job chunk = ${((total(c.worker) - fixed) / tj.remaining.length).toFixed(1)} per chunk done; calls naming a job path: ${(total(c.onPath) / tj.remaining.length).toFixed(1)} per chunk done [${perUnit(c.onPath, tj.remaining.length)}]`,
            `  all, per chunk done: ${perUnit(c.worker, tj.remaining.length, 10)}`,
          );
        }
        const growth = perChunk[1]! / perChunk[0]!;
        targets.push({ target: 'tail: file-system calls per chunk do not grow with the job (×10 chunks: ≤ 1.25× per chunk)', met: atMost(growth, 1.25), detail: `${perChunk[0]!.toFixed(2)} per chunk at ${small.chunks}, ${perChunk[1]!.toFixed(2)} at ${big} (${growth.toFixed(2)}×), beyond a fixed ${fixed} per worker` });
      });
      if (targets.length === 1) targets.push({ target: 'tail: file-system calls per chunk do not grow with the job', met: undefined, detail: 'the strace runs failed (see the profile)' });
    } else {
      targets.push({ target: 'tail: file-system calls per chunk do not grow with the job', met: undefined, detail: 'strace is not installed (apt-get install -y strace)' });
    }
    const ratios = [ratio(`piecework / bash loop ×2`, pw, rows.get(`bash loop ×2: last ${left} of ${big}`)), ratio(`tail of ${big} / a job of just ${left}`, pw, rows.get(`piecework work: a job of just ${left}`))];
    const notes = [`"to first claim": from starting the worker until its first chunk:claimed event — the scan of ${big} chunks and ${big - left} outputs, plus node's start.`];
    return { name: 'tail', title: `${this.title}: ${big} chunks, ${left} to do`, rows: rows.rows, ratios, targets, profile, notes };
  },
};
