// 1. Per-chunk overhead on a local folder: many one-line chunks, `cat`, 2 lanes. The command does
// almost nothing, so the time is the tool's own cost per chunk (claim, spawn, commit, bookkeeping).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir } from '../../test/helpers/tmp.js';
import { atMost, ensureDir, fmtMs, isTool, peer, profileStep, pieceworkBin, ratio, Rows, runTimed, runTogether, type Scenario, type ScenarioResult } from '../lib.js';
import { countSyscalls, hasStrace, perUnit, summariseCpuProfile, total } from '../profile.js';

const LANES = 2;

export const local: Scenario = {
  name: 'local',
  title: 'Local per-chunk overhead (one-line chunks, cat, 2 lanes)',
  async run(ctx): Promise<ScenarioResult> {
    const chunks = ctx.quick ? 500 : 2000;
    const dir = makeTempDir('bench-local');
    const input = join(dir, 'input.txt');
    writeFileSync(input, Array.from({ length: chunks }, (_, i) => `line ${i + 1}\n`).join(''));
    const rows = new Rows();
    const hasParallel = isTool('parallel');
    const notes: string[] = [];
    if (!hasParallel) notes.push('GNU parallel is not installed: its row is missing (apt-get install -y parallel).');

    // The peers read the same one-line files piecework's split makes (hard links of one template).
    const template = join(dir, 'template');
    await runTimed([pieceworkBin, 'split', input, '--into', template, '--lines', '1', '-q']);
    const peerJob = (name: string): string => {
      const job = join(dir, name);
      ensureDir(job);
      execFileSync('cp', ['-al', join(template, 'chunks'), join(job, 'chunks')]);
      return job;
    };
    const checkOutputs = (job: string, tool: string) => {
      const outs = readdirSync(join(job, 'out'));
      if (outs.length !== chunks) throw new Error(`${tool}: ${outs.length} outputs for ${chunks} chunks`);
      const last = outs.sort().at(-1)!;
      if (readFileSync(join(job, 'out', last), 'utf8') !== `line ${chunks}\n`) throw new Error(`${tool}: wrong output in ${last}`);
    };

    for (let r = 0; r < ctx.repeats; r++) {
      ctx.log(`local: run ${r + 1}/${ctx.repeats}`);
      const job = join(dir, `pw-${r}`);
      rows.add('piecework split --lines 1', await runTimed([pieceworkBin, 'split', input, '--into', job, '--lines', '1', '-q'], { usage: true }), { chunks, info: true });
      rows.add('piecework work -j 2', await runTimed([pieceworkBin, 'work', job, '-j', String(LANES), '-q', '--', 'cat'], { usage: true }), { chunks });
      checkOutputs(job, 'piecework');

      if (hasParallel) {
        const pj = peerJob(`parallel-${r}`);
        rows.add('GNU parallel --joblog', await runTimed(['bash', peer('parallel.sh'), pj, String(LANES), join(pj, 'joblog'), '--', 'cat'], { usage: true }), { chunks });
        checkOutputs(pj, 'parallel');
      }
      const xj = peerJob(`xargs-${r}`);
      rows.add('xargs -P2', await runTimed(['bash', peer('xargs.sh'), xj, String(LANES), '--', 'cat'], { usage: true }), { chunks });
      checkOutputs(xj, 'xargs');

      const bj = peerJob(`bash-${r}`);
      const loop = ['bash', peer('bash-loop.sh'), bj, '--', 'cat'];
      const [a] = await runTogether([loop, loop], { usage: true });
      rows.add('bash loop ×2', a!, { chunks });
      checkOutputs(bj, 'bash loop');
    }

    const pw = rows.get('piecework work -j 2');
    const par = rows.get('GNU parallel --joblog');
    const xargs = rows.get('xargs -P2');
    const ratios = [ratio('piecework / GNU parallel', pw, par), ratio('piecework / xargs -P2', pw, xargs), ratio('piecework / bash loop ×2', pw, rows.get('bash loop ×2'))];
    const targets = [
      { target: 'local: ≤ 0.7× GNU parallel', met: atMost(ratios[0]!.value, 0.7), detail: `${ratios[0]!.value.toFixed(2)}×` },
      { target: 'local: ≤ 2× xargs -P2', met: atMost(ratios[1]!.value, 2), detail: `${ratios[1]!.value.toFixed(2)}×` },
    ];

    // Profile: one more worker run with a CPU profile, and one under strace.
    const profile: string[] = [];
    const cpu = (row: typeof pw) => (row?.cpuSamples ? `${(Math.min(...row.cpuSamples) / chunks).toFixed(2)} ms CPU/chunk` : '');
    profile.push(`CPU (user+sys, children included) per chunk: piecework ${cpu(pw)}; xargs ${cpu(xargs)}; parallel ${cpu(par)}; bash loop ${cpu(rows.get('bash loop ×2'))}`);
    await profileStep(profile, 'CPU profile', async () => {
      const profDir = ensureDir(join(dir, 'cpuprof'));
      const pj = join(dir, 'prof-cpu');
      await runTimed([pieceworkBin, 'split', input, '--into', pj, '--lines', '1', '-q']);
      const profRun = await runTimed([process.execPath, '--cpu-prof', '--cpu-prof-dir', profDir, pieceworkBin, 'work', pj, '-j', String(LANES), '-q', '--', 'cat']);
      const s = summariseCpuProfile(profDir);
      const busy = s.totalMs - s.idleMs;
      profile.push(
        `worker main thread (node --cpu-prof, ${fmtMs(profRun.ms)} run): busy ${fmtMs(busy)} = ${(busy / chunks).toFixed(2)} ms/chunk (GC ${fmtMs(s.gcMs)}), idle ${fmtMs(s.idleMs)}`,
        `  by area: ${s.areas.filter((a) => a.name !== '(idle)').slice(0, 7).map((a) => `${a.name} ${(a.ms / chunks).toFixed(2)}`).join(', ')} (ms/chunk)`,
        `  top functions: ${s.functions.slice(0, 8).map((f) => `${f.name} ${(f.ms / chunks).toFixed(2)}`).join('; ')}`,
      );
    });
    await profileStep(profile, 'system calls', async () => {
      if (hasStrace) {
        const sj = join(dir, 'prof-strace');
        await runTimed([pieceworkBin, 'split', input, '--into', sj, '--lines', '1', '-q']);
        const c = await countSyscalls([pieceworkBin, 'work', sj, '-j', String(LANES), '-q', '--', 'cat'], { dir, pathPrefix: sj });
        profile.push(
          `syscalls per chunk (strace -f, file+desc+process): worker ${(total(c.worker) / chunks).toFixed(1)}, of which naming a job path ${(total(c.onPath) / chunks).toFixed(1)} [${perUnit(c.onPath, chunks)}]; the ${c.childProcesses} commands themselves ${(total(c.children) / chunks).toFixed(1)}`,
          `  worker, all: ${perUnit(c.worker, chunks, 12)}`,
        );
      }
    });
    return { name: 'local', title: `${this.title}: ${chunks} chunks`, rows: rows.rows, ratios, targets, profile, notes };
  },
};

