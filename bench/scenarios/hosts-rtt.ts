// 7. Hosts at a distance: 3 namespace hosts × 2 lanes, each 10 ms (round trip) from the head,
// working one-line `cat` chunks: piecework through sshfs mounts vs piecework over SFTP (no mount),
// with the bare `cat in > out` loop over the same mounts as the floor. Issue 13 wants SFTP workers
// ahead of sshfs workers on every scenario with round trips, this one included.
//
// Each host reaches the head's sshd through its own delay proxy (a process of its own, on the
// head's bridge address): its sshfs mount and its SFTP worker share that proxy, so both see the
// same 10 ms. The jobs are prepared on the head (a local folder) under a fresh name each run
// (sshfs caches listings for 20 s); the makespan runs from starting all hosts' workers at once
// until the last one exits.
import { execFileSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHosts } from '../../test/helpers/netns-hosts.js';
import type { SshfsMount } from '../../test/helpers/sshfs.js';
import { makeTempDir } from '../../test/helpers/tmp.js';
import { atMost, ensureDir, fmtMs, med, peer, pieceworkBin, pieceworkBundle, ratio, Rows, runTimed, runTogether, type Scenario, type ScenarioResult } from '../lib.js';
import { startDelayProxyProcess } from '../netbed.js';
import { treeCpuMs } from '../profile.js';

const HOSTS = 3;
const LANES = 2;
const ONE_WAY_MS = 5; // 10 ms round trip
const SSHFS_ROW = `piecework work -j ${LANES} on each host (sshfs)`;
const SFTP_ROW = `piecework work -j ${LANES} on each host over SFTP (no mount)`;
const BARE_ROW = `bare cat loop ×${LANES} on each host (static sixths, sshfs)`;

export const hostsRtt: Scenario = {
  name: 'hosts-rtt',
  title: `${HOSTS} namespace hosts × ${LANES} lanes, each with a ${2 * ONE_WAY_MS} ms round trip to the head (one-line chunks, cat)`,
  async run(ctx): Promise<ScenarioResult> {
    const chunks = ctx.quick ? 60 : 300;
    const dir = makeTempDir('bench-hosts-rtt');
    const input = join(dir, 'input.txt');
    writeFileSync(input, Array.from({ length: chunks }, (_, i) => `line ${i + 1}\n`).join(''));
    ctx.log(`hosts-rtt: creating ${HOSTS} namespace hosts, a delay proxy for each and their sshfs mounts`);
    const cluster = await createHosts(HOSTS);
    const head = cluster.head;
    const proxies: { port: number; pid: number }[] = [];
    const mounts: SshfsMount[] = [];
    for (const host of cluster.hosts) {
      const proxy = await startDelayProxyProcess({ targetHost: head.address, targetPort: head.sshd.port, listenHost: head.address, oneWayMs: ONE_WAY_MS, logPath: join(host.dir, 'delay-proxy.log') });
      proxies.push(proxy);
      mounts.push(await host.mountShare({ port: proxy.port }));
    }
    // The SFTP workers check the head's key at each proxy's address.
    const knownHosts = join(dir, 'known_hosts');
    writeFileSync(knownHosts, proxies.map((p) => `[${head.address}]:${p.port} ${head.sshd.hostPublicKey}\n`).join(''));
    const sftpEnv = { PIECEWORK_SSH_IDENTITY: cluster.clientKeyPath, PIECEWORK_KNOWN_HOSTS: knownHosts, SSH_AUTH_SOCK: '' };

    const onHead = (name: string) => join(head.shareDir, name);
    const template = join(dir, 'template');
    await runTimed([pieceworkBin, 'split', input, '--into', template, '--lines', '1', '-q']);
    const pieceworkJob = (name: string): Promise<unknown> => runTimed([pieceworkBin, 'split', input, '--into', onHead(name), '--lines', '1', '-q']);
    const peerJob = (name: string): void => {
      ensureDir(onHead(name));
      execFileSync('cp', ['-r', join(template, 'chunks'), join(onHead(name), 'chunks')]);
    };
    const check = (name: string, tool: string) => {
      const n = readdirSync(join(onHead(name), 'out')).length;
      if (n !== chunks) throw new Error(`${tool}: ${n} outputs for ${chunks} chunks`);
    };
    // Each host runs the one-file bundle, as `launch` copies it there, with the thread pool
    // bin/piecework gives itself; argvs(i) = the commands host i runs side by side. Besides the
    // makespan: the CPU the run cost, by whom (from /proc, before and after), and with --events
    // the chunks each host did and the claims it found done by another host meanwhile.
    const side = { 'the hosts\' sshfs': mounts.map((m) => m.pid), "the head's sshd": [head.sshd.pid], 'the delay proxies': proxies.map((p) => p.pid) };
    const sideCpu = () => Object.values(side).map((pids) => pids.reduce((sum, pid) => sum + treeCpuMs(pid), 0));
    const lastRun = new Map<string, string>();
    const makespan = async (tool: string, argvs: (i: number) => string[][], env: Record<string, string> = {}): Promise<{ ms: number }> => {
      const done = cluster.hosts.map(() => 0);
      let skipped = 0;
      const onLine = (i: number) => (line: string) => {
        if (line.includes('"type":"chunk:done"')) done[i]!++;
        else if (line.includes('"type":"chunk:skipped"')) skipped++;
      };
      const before = sideCpu();
      const started = performance.now();
      const runs = await Promise.all(cluster.hosts.map((host, i) => runTogether(argvs(i), { enterPid: host.anchorPid, env: { UV_THREADPOOL_SIZE: '16', ...env }, usage: true, onLine: onLine(i) })));
      const ms = performance.now() - started;
      const cpuMs = runs.flat().reduce((sum, r) => sum + (r.cpuMs ?? NaN), 0);
      const sideMs = sideCpu().map((after, k) => after - before[k]!);
      const perChunk = (x: number) => fmtMs(x / chunks);
      lastRun.set(
        tool,
        `${tool}: CPU per chunk ${perChunk(cpuMs)} in the workers (their commands included), ${Object.keys(side).map((who, k) => `${perChunk(sideMs[k]!)} in ${who}`).join(', ')}` +
          (tool !== BARE_ROW ? `; chunks done per host ${done.join(' / ')}, ${skipped} claims found done by another host` : ''),
      );
      return { ms }; // the CPU split goes to the profile: the workers' own CPU alone would flatter sshfs
    };
    const work = (where: string): string[] => [process.execPath, pieceworkBundle, 'work', where, '-j', String(LANES), '--events', '-q', '--', 'cat'];
    const sftpUrl = (i: number, name: string) => `sftp://root@${head.address}:${proxies[i]!.port}${onHead(name)}`;
    const bare = (i: number, name: string, lane: number) => ['bash', peer('bare-loop.sh'), join(mounts[i]!.mountPoint, name), String(i * LANES + lane), String(HOSTS * LANES), '--', 'cat'];

    const rows = new Rows();
    for (let r = 0; r < ctx.repeats; r++) {
      ctx.log(`hosts-rtt: run ${r + 1}/${ctx.repeats}`);
      await pieceworkJob(`pw-${r}`);
      rows.add(SSHFS_ROW, await makespan(SSHFS_ROW, (i) => [work(join(mounts[i]!.mountPoint, `pw-${r}`))]), { chunks });
      check(`pw-${r}`, 'piecework over sshfs');

      await pieceworkJob(`sftp-${r}`);
      rows.add(SFTP_ROW, await makespan(SFTP_ROW, (i) => [work(sftpUrl(i, `sftp-${r}`))], sftpEnv), { chunks });
      check(`sftp-${r}`, 'piecework over SFTP');

      peerJob(`bare-${r}`);
      rows.add(BARE_ROW, await makespan(BARE_ROW, (i) => Array.from({ length: LANES }, (_, lane) => bare(i, `bare-${r}`, lane))), { chunks });
      check(`bare-${r}`, 'bare loop');
    }
    for (const row of rows.rows) row.extra = { 'lane-time/chunk': fmtMs((med(row) * HOSTS * LANES) / chunks) };

    const ratios = [
      ratio('piecework over SFTP / piecework over sshfs', rows.get(SFTP_ROW), rows.get(SSHFS_ROW)),
      ratio('piecework over SFTP / bare loop over sshfs', rows.get(SFTP_ROW), rows.get(BARE_ROW)),
      ratio('piecework over sshfs / bare loop over sshfs', rows.get(SSHFS_ROW), rows.get(BARE_ROW)),
    ];
    const ahead = ratios[0]!.value;
    return {
      name: 'hosts-rtt',
      title: `${this.title}: ${chunks} chunks`,
      rows: rows.rows,
      ratios,
      targets: [{ target: `SFTP workers, ${HOSTS} hosts × ${LANES} lanes at ${2 * ONE_WAY_MS} ms: ahead of sshfs workers`, met: atMost(ahead, 0.999), detail: `${ahead.toFixed(2)}×` }],
      profile: ['where the CPU went in the last run of each (2 cores shared by all hosts, the head and the testbed):', ...[...lastRun.values()].map((l) => `  ${l}`)],
      notes: [
        `Each host reaches the head's sshd through its own delay proxy (${ONE_WAY_MS} ms each way, a process of its own on the head); its sshfs mount (default options, connected before the runs) and its SFTP worker go through the same proxy. Makespan: from starting every host's workers at once until the last exits, worker start-up (and the SFTP worker's SSH handshake) included.`,
        `The bare loop has no skip, claim or temp file; its ${HOSTS * LANES} copies split the files statically (copy K takes every ${HOSTS * LANES}th file from K). "lane-time/chunk" = median × ${HOSTS * LANES} lanes / chunks.`,
      ],
    };
  },
};
