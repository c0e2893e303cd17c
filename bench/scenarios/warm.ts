// 6. Warm workers (issue 11): a Python model that takes ~1 s to build (numpy import + an SVD) and
// ~5 ms per item, 2 lanes. piecework --warm against the tools that keep a process per worker
// (multiprocessing.Pool with an initializer, Dask's LocalCluster with a worker plugin), and
// against one process per item (piecework without --warm, GNU parallel) — those run a sample of
// the items, scaled up, since 400 model builds would take minutes to say the same thing. Then
// piecework's own cost per chunk with --warm: 5000 chunks through a program that only copies.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir } from '../../test/helpers/tmp.js';
import { atMost, fmtMs, isTool, med, pieceworkBin, repoRoot, Rows, runTimed, spawnCostMs, type Scenario, type ScenarioResult } from '../lib.js';

const LANES = 2;
const python = '/usr/bin/python3';
const scripts = join(repoRoot, 'bench', 'warm');
const script = (name: string) => join(scripts, name);

function hasModule(name: string): boolean {
  try {
    execFileSync(python, ['-c', `import ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export const warm: Scenario = {
  name: 'warm',
  title: 'Warm workers (Python model: ~1 s start-up, ~5 ms per item, 2 lanes)',
  async run(ctx): Promise<ScenarioResult> {
    const items = ctx.quick ? 100 : 400;
    const sample = ctx.quick ? 10 : 40;
    const trivialChunks = ctx.quick ? 1000 : 5000;
    const notes: string[] = [];
    const title = `${this.title}: ${items} items`;
    if (!hasModule('numpy')) {
      notes.push(`skipped: ${python} cannot import numpy — apt-get install -y python3-numpy python3-distributed`);
      return { name: 'warm', title, rows: [], ratios: [], targets: [{ target: 'warm: scenario ran', met: undefined, detail: 'numpy missing' }], profile: [], notes };
    }
    const hasDask = hasModule('distributed');
    if (!hasDask) notes.push(`Dask is not installed for ${python}: its row is missing (apt-get install -y python3-distributed).`);
    const hasParallel = isTool('parallel');
    if (!hasParallel) notes.push('GNU parallel is not installed: its row is missing (apt-get install -y parallel).');
    // One BLAS thread per process: two lanes on two cores, for every tool alike.
    const env = { OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1', MKL_NUM_THREADS: '1', PYTHONPATH: scripts };

    const dir = makeTempDir('bench-warm');
    const makeJob = async (name: string, count: number): Promise<string> => {
      const input = join(dir, `${name}.txt`);
      writeFileSync(input, Array.from({ length: count }, (_, i) => `${i}\n`).join(''));
      await runTimed([pieceworkBin, 'split', input, '--into', join(dir, name), '--lines', '1', '-q']);
      return join(dir, name);
    };
    const outputs = (job: string) => readdirSync(join(job, 'out')).sort().map((name) => readFileSync(join(job, 'out', name), 'utf8')).join('');
    let reference: string | undefined;
    const check = (job: string, tool: string, count: number) => {
      const text = outputs(job);
      const lines = text.split('\n').filter(Boolean).length;
      if (lines !== count) throw new Error(`${tool}: ${lines} outputs for ${count} items`);
      if (count === items) {
        reference ??= text;
        if (text !== reference) throw new Error(`${tool}: outputs differ from the first tool's`);
      }
    };

    const rows = new Rows();
    for (let r = 0; r < ctx.repeats; r++) {
      ctx.log(`warm: run ${r + 1}/${ctx.repeats}`);
      const pw = await makeJob(`pw-${r}`, items);
      rows.add('piecework work -j 2 --warm', await runTimed([pieceworkBin, 'work', pw, '-j', String(LANES), '--warm', '-q', '--', python, script('pw_worker.py')], { env, usage: true }), { chunks: items });
      check(pw, 'piecework --warm', items);

      const pool = await makeJob(`pool-${r}`, items);
      rows.add('multiprocessing.Pool(2, initializer)', await runTimed([python, script('pool.py'), join(pool, 'chunks'), join(pool, 'out'), String(LANES)], { env, usage: true, cwd: scripts }), { chunks: items });
      check(pool, 'Pool', items);

      if (hasDask) {
        const dask = await makeJob(`dask-${r}`, items);
        rows.add('Dask LocalCluster (2 workers, plugin)', await runTimed([python, script('dask_local.py'), join(dask, 'chunks'), join(dask, 'out'), String(LANES)], { env, usage: true, cwd: scripts }), { chunks: items });
        check(dask, 'Dask', items);
      }

      const cold = await makeJob(`cold-${r}`, sample);
      const coldRow = rows.add(`piecework work -j 2, a process per chunk (${sample} items)`, await runTimed([pieceworkBin, 'work', cold, '-j', String(LANES), '-q', '--', python, script('pw_worker.py'), '{in}', '{out}'], { env, usage: true }), { chunks: sample, info: true });
      check(cold, 'piecework per chunk', sample);
      coldRow.extra = { [`scaled to ${items}`]: fmtMs((med(coldRow) * items) / sample) };

      if (hasParallel) {
        const par = await makeJob(`parallel-${r}`, sample);
        const run = ['bash', '-c', 'cd "$1" && ls chunks | parallel --will-cite -j "$2" "$3" "$4" chunks/{} out/{}', 'bash', par, String(LANES), python, script('one.py')];
        const parRow = rows.add(`GNU parallel -j 2, a process per item (${sample} items)`, await runTimed(run, { env, usage: true }), { chunks: sample, info: true });
        check(par, 'GNU parallel', sample);
        parRow.extra = { [`scaled to ${items}`]: fmtMs((med(parRow) * items) / sample) };
      }

      const trivial = await makeJob(`trivial-${r}`, trivialChunks);
      const trivialRow = rows.add(`piecework --warm, ${trivialChunks} trivial chunks`, await runTimed([pieceworkBin, 'work', trivial, '-j', String(LANES), '--warm', '-q', '--', python, script('trivial.py')], { env, usage: true }), { chunks: trivialChunks, info: true });
      trivialRow.extra = { 'per chunk per lane': fmtMs((med(trivialRow) * LANES) / trivialChunks) };
    }

    const warmRow = rows.get('piecework work -j 2 --warm')!;
    const pool = rows.get('multiprocessing.Pool(2, initializer)');
    const dask = rows.get('Dask LocalCluster (2 workers, plugin)');
    const cold = rows.rows.find((r) => r.tool.startsWith('piecework work -j 2, a process'));
    const trivial = rows.rows.find((r) => r.tool.includes('trivial'));
    const coldScaled = cold ? (med(cold) * items) / sample : NaN;
    const vsPool = pool ? med(warmRow) / med(pool) : NaN;
    const vsDask = dask ? med(warmRow) / med(dask) : NaN;
    const speedup = coldScaled / med(warmRow);
    const overhead = trivial ? (med(trivial) * LANES) / trivialChunks : NaN;
    const ratios = [
      { label: 'piecework --warm / Pool', value: vsPool },
      { label: 'piecework --warm / Dask', value: vsDask },
      { label: 'a process per chunk / --warm', value: speedup },
    ];
    const targets = [
      { target: 'warm: ≤ 1.25× multiprocessing.Pool', met: atMost(vsPool, 1.25), detail: `${vsPool.toFixed(2)}×` },
      { target: 'warm: faster than Dask LocalCluster', met: atMost(vsDask, 0.999), detail: `${vsDask.toFixed(2)}×` },
      { target: 'warm: ≥ 20× faster than a process per chunk', met: Number.isFinite(speedup) ? speedup >= 20 : undefined, detail: `${speedup.toFixed(1)}× (per-chunk run on ${sample} items, scaled to ${items})` },
      { target: 'warm overhead: < 0.5 ms per chunk per lane (local folder)', met: atMost(overhead, 0.5), detail: `${overhead.toFixed(2)} ms (wall × lanes / chunks, the copying program included)` },
    ];
    const spawnMs = await spawnCostMs(200);
    notes.push(`a spawn of /bin/true from node costs ${spawnMs.toFixed(2)} ms here (200 in a row); a Python start with numpy and the model ~1 s — what --warm saves per chunk.`);
    return { name: 'warm', title, rows: rows.rows, ratios, targets, profile: [], notes };
  },
};
