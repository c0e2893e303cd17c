// 5. Scaling: a CPU-free workload (`sleep 0.2` per chunk) on 3 namespace hosts × 2 lanes, each
// host working through its own sshfs mount of the head's folder. With no CPU contention the ideal
// makespan is chunks × 0.2 s / 6 lanes; anything above it is coordination and start-up.
import { execFileSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHosts } from '../../test/helpers/netns-hosts.js';
import type { SshfsMount } from '../../test/helpers/sshfs.js';
import { makeTempDir } from '../../test/helpers/tmp.js';
import { SftpCounter } from '../netbed.js';
import { perUnit, total } from '../profile.js';
import { atMost, ensureDir, fmtMs, med, peer, profileStep, pieceworkBin, pieceworkBundle, Rows, runTogether, runTimed, type Scenario, type ScenarioResult } from '../lib.js';

const HOSTS = 3;
const LANES = 2;
const SLEEP_S = 0.2;

export const scaling: Scenario = {
  name: 'scaling',
  title: `Scaling: sleep ${SLEEP_S} per chunk on ${HOSTS} namespace hosts × ${LANES} lanes over sshfs`,
  async run(ctx): Promise<ScenarioResult> {
    const chunks = ctx.quick ? 90 : 600;
    const idealMs = (chunks * SLEEP_S * 1000) / (HOSTS * LANES);
    const dir = makeTempDir('bench-scaling');
    const input = join(dir, 'input.txt');
    writeFileSync(input, Array.from({ length: chunks }, (_, i) => `item ${i + 1}\n`).join(''));
    ctx.log(`scaling: creating ${HOSTS} namespace hosts and their sshfs mounts`);
    const cluster = await createHosts(HOSTS);
    const mounts: SshfsMount[] = [];
    for (const host of cluster.hosts) mounts.push(await host.mountShare());
    const share = cluster.head.shareDir;
    const template = join(dir, 'template');
    await runTimed([pieceworkBin, 'split', input, '--into', template, '--lines', '1', '-q']);
    const check = (name: string, tool: string, expected = chunks) => {
      const n = readdirSync(join(share, name, 'out')).length;
      if (n !== expected) throw new Error(`${tool}: ${n} outputs for ${expected} chunks`);
    };

    const rows = new Rows();
    let lastTimelines: Timeline[] = [];
    const sftpLines: string[] = [];
    const pwTool = `piecework work -j ${LANES} on each host`;
    const bashTool = `bash loop ×${LANES} on each host`;
    for (let r = 0; r < ctx.repeats; r++) {
      ctx.log(`scaling: run ${r + 1}/${ctx.repeats}`);
      // A fresh name each run: sshfs caches listings for 20 s.
      const pwJob = `pw-${r}`;
      await runTimed([pieceworkBin, 'split', input, '--into', join(share, pwJob), '--lines', '1', '-q']);
      // Each host runs the one-file bundle, as `launch` would copy it there, with the thread
      // pool launch's bootstrap gives it.
      const timelines = cluster.hosts.map(() => newTimeline());
      const started = performance.now();
      const pwRuns = cluster.hosts.map((host, i) =>
        runTogether([[process.execPath, pieceworkBundle, 'work', join(mounts[i]!.mountPoint, pwJob), '-j', String(LANES), '--events', '-q', '--', 'sleep', String(SLEEP_S)]], {
          enterPid: host.anchorPid,
          env: { UV_THREADPOOL_SIZE: '16' },
          onLine: (line) => record(timelines[i]!, line, performance.now() - started),
          usage: true,
        }).then(([res]) => {
          timelines[i]!.exitAt = performance.now() - started;
          timelines[i]!.cpuMs = res!.cpuMs ?? NaN;
        }),
      );
      await Promise.all(pwRuns);
      rows.add(pwTool, { ms: performance.now() - started }, { chunks });
      lastTimelines = timelines;
      check(pwJob, 'piecework');

      const bashJob = `bash-${r}`;
      ensureDir(join(share, bashJob));
      execFileSync('cp', ['-r', join(template, 'chunks'), join(share, bashJob, 'chunks')]);
      const bashStarted = performance.now();
      await Promise.all(
        cluster.hosts.map((host, i) => {
          const loop = ['bash', peer('bash-loop.sh'), join(mounts[i]!.mountPoint, bashJob), '--', 'sleep', String(SLEEP_S)];
          return runTogether(Array.from({ length: LANES }, () => loop), { enterPid: host.anchorPid });
        }),
      );
      rows.add(bashTool, { ms: performance.now() - bashStarted }, { chunks, against: pwTool });
      check(bashJob, 'bash loop');
    }
    // Round trips: a smaller job once more through mounts that log every SFTP request.
    ctx.log('scaling: counting SFTP requests per chunk (sshfs_debug mounts)');
    await profileStep(sftpLines, 'SFTP requests per chunk', async () => {
      const profChunks = Math.min(chunks, 120);
      const profInput = join(dir, 'prof.txt');
      writeFileSync(profInput, Array.from({ length: profChunks }, (_, i) => `item ${i + 1}\n`).join(''));
      await runTimed([pieceworkBin, 'split', profInput, '--into', join(share, 'prof'), '--lines', '1', '-q']);
      const counters: SftpCounter[] = [];
      for (const host of cluster.hosts) counters.push(new SftpCounter(await host.mountShare({ mountPoint: join(host.dir, 'share-debug'), options: ['sshfs_debug'] })));
      const marks = counters.map((c) => c.mark());
      const profTimelines = cluster.hosts.map(() => newTimeline());
      const profStart = performance.now();
      await Promise.all(
        cluster.hosts.map((host, i) =>
          runTogether([[process.execPath, pieceworkBundle, 'work', join(counters[i]!.mount.mountPoint, 'prof'), '-j', String(LANES), '--events', '-q', '--', 'sleep', String(SLEEP_S)]], {
            enterPid: host.anchorPid,
            env: { UV_THREADPOOL_SIZE: '16' },
            onLine: (line) => record(profTimelines[i]!, line, performance.now() - profStart),
          }),
        ),
      );
      check('prof', 'piecework (logging mounts)', profChunks);
      const sftp = counters.map((c, i) => c.since(marks[i]!));
      const requests = sftp.reduce((sum, m) => sum + total(m), 0);
      const all = new Map<string, number>();
      for (const m of sftp) for (const [k, v] of m) all.set(k, (all.get(k) ?? 0) + v);
      const skipped = profTimelines.reduce((sum, t) => sum + t.skipped, 0);
      sftpLines.push(`SFTP requests on ${profChunks} chunks (all hosts): ${requests} = ${(requests / profChunks).toFixed(1)} per chunk done [${perUnit(all, profChunks, 10)}], with ${(skipped / profChunks).toFixed(1)} skipped claims per chunk done`);
    });

    rows.add(`ideal: ${chunks} × ${SLEEP_S} s / ${HOSTS * LANES} lanes`, { ms: idealMs }, { chunks, info: true });
    for (const row of rows.rows) row.extra = { 'vs ideal': `${(med(row) / idealMs).toFixed(2)}×` };

    const pw = med(rows.get(pwTool)!);
    const over = pw / idealMs;
    return {
      name: 'scaling',
      title: `${this.title}: ${chunks} chunks`,
      rows: rows.rows,
      ratios: [
        { label: 'piecework / ideal', value: over },
        { label: 'piecework / bash loop', value: pw / med(rows.get(bashTool)!) },
      ],
      targets: [{ target: 'scaling: makespan within 10 % of the ideal', met: atMost(over, 1.1), detail: `${fmtMs(pw)} vs ideal ${fmtMs(idealMs)} (${((over - 1) * 100).toFixed(1)} % over)` }],
      profile: [
        `where the time went in the last run (ms from the start; "skipped" = claimed, then found its output already there; "passes" = listings of the job):`,
        ...lastTimelines.map((t, i) => `  host ${i}: first claim ${fmtMs(t.firstClaimAt)}, ${t.done} done, ${t.skipped} skipped, ${t.passes} passes, last commit ${fmtMs(t.lastDoneAt)}, exit ${fmtMs(t.exitAt)}, CPU ${fmtMs(t.cpuMs)}`),
        `  the last output of the job was committed at ${fmtMs(Math.max(...lastTimelines.map((t) => t.lastDoneAt)))}; the ideal is ${fmtMs(idealMs)}.`,
        ...sftpLines,
      ],
      notes: [`Makespan: from starting the ${HOSTS} workers at once until the last exits (worker start-up included). Each host mounts the head's folder over sshfs (default options) through its own veth link; no added latency.`],
    };
  },
};

interface Timeline {
  /** CPU time of the worker (user + system, its commands included). */
  cpuMs: number;
  firstClaimAt: number;
  lastDoneAt: number;
  exitAt: number;
  done: number;
  skipped: number;
  passes: number;
}

function newTimeline(): Timeline {
  return { cpuMs: NaN, firstClaimAt: NaN, lastDoneAt: NaN, exitAt: NaN, done: 0, skipped: 0, passes: 0 };
}

function record(t: Timeline, line: string, at: number): void {
  const type = /"type":"([^"]+)"/.exec(line)?.[1];
  if (type === 'chunk:claimed' && Number.isNaN(t.firstClaimAt)) t.firstClaimAt = at;
  if (type === 'chunk:done') {
    t.done++;
    t.lastDoneAt = at;
  }
  if (type === 'chunk:skipped') t.skipped++;
  if (type === 'work:pass') t.passes++;
}
