// 2. Over sshfs with a 10 ms round trip: every metadata operation waits for the network, so what
// counts is how many round trips a chunk costs and whether they overlap with work.
//
// The jobs are prepared on the server's side of the share (a local folder, quickly) and worked
// on through the mount, as a head would prepare a job that hosts then work on. Each run uses
// fresh folder names: sshfs caches listings for 20 s, so a reused name would show old entries.
import { execFileSync } from 'node:child_process';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTempDir } from '../../test/helpers/tmp.js';
import { atMost, ensureDir, fmtMs, med, peer, profileStep, pieceworkBin, ratio, Rows, runTimed, runTogether, type Scenario, type ScenarioResult } from '../lib.js';
import { SftpCounter, startDelayedShare } from '../netbed.js';
import { perUnit, total } from '../profile.js';

const LANES = 2;
const SFTP_ROW = 'piecework work -j 2 over SFTP (no mount)';
const ONE_WAY_MS = 5; // 10 ms round trip

export const sshfsLatency: Scenario = {
  name: 'sshfs',
  title: 'Over sshfs with a 10 ms round trip (one-line chunks, cat, 2 lanes)',
  async run(ctx): Promise<ScenarioResult> {
    const chunks = ctx.quick ? 40 : 100;
    const dir = makeTempDir('bench-sshfs');
    const input = join(dir, 'input.txt');
    writeFileSync(input, Array.from({ length: chunks }, (_, i) => `line ${i + 1}\n`).join(''));
    ctx.log('sshfs: starting sshd, delay proxy and mounts');
    const share = await startDelayedShare(ONE_WAY_MS);
    const mount = await share.mount('timed');
    const server = share.sshd.root;
    const onServer = (name: string) => join(server, name);
    const onMount = (name: string) => join(mount.mountPoint, name);

    const template = join(dir, 'template');
    await runTimed([pieceworkBin, 'split', input, '--into', template, '--lines', '1', '-q']);
    const peerJob = (name: string): void => {
      ensureDir(onServer(name));
      execFileSync('cp', ['-r', join(template, 'chunks'), join(onServer(name), 'chunks')]);
    };
    const pieceworkJob = (name: string): Promise<unknown> => runTimed([pieceworkBin, 'split', input, '--into', onServer(name), '--lines', '1', '-q']);
    const check = (name: string, tool: string) => {
      const n = readdirSync(join(onServer(name), 'out')).length;
      if (n !== chunks) throw new Error(`${tool}: ${n} outputs for ${chunks} chunks`);
    };
    const pwArgv = (name: string) => [pieceworkBin, 'work', onMount(name), '-j', String(LANES), '-q', '--', 'cat'];
    // The same worker with no mount: SFTP through the same delay proxy (sshfs's own transport).
    const knownHosts = join(dir, 'known_hosts');
    writeFileSync(knownHosts, `[127.0.0.1]:${share.proxyPort} ${share.sshd.hostPublicKey}\n`);
    const sftpEnv = ['env', `PIECEWORK_SSH_IDENTITY=${share.sshd.clientKeyPath}`, `PIECEWORK_KNOWN_HOSTS=${knownHosts}`, 'SSH_AUTH_SOCK='];
    const sftpArgv = (name: string) => [...sftpEnv, pieceworkBin, 'work', `sftp://root@127.0.0.1:${share.proxyPort}${onServer(name)}`, '-j', String(LANES), '-q', '--', 'cat'];
    const bashArgv = (name: string) => ['bash', peer('bash-loop.sh'), onMount(name), '--', 'cat'];
    const bareArgv = (name: string, k: number) => ['bash', peer('bare-loop.sh'), onMount(name), String(k), String(LANES), '--', 'cat'];

    const rows = new Rows();
    for (let r = 0; r < ctx.repeats; r++) {
      ctx.log(`sshfs: run ${r + 1}/${ctx.repeats}`);
      await pieceworkJob(`pw-${r}`);
      rows.add('piecework work -j 2', await runTimed(pwArgv(`pw-${r}`)), { chunks });
      check(`pw-${r}`, 'piecework');

      await pieceworkJob(`sftp-${r}`);
      rows.add(SFTP_ROW, await runTimed(sftpArgv(`sftp-${r}`)), { chunks });
      check(`sftp-${r}`, 'piecework over SFTP');

      peerJob(`bash-${r}`);
      const [b] = await runTogether([bashArgv(`bash-${r}`), bashArgv(`bash-${r}`)]);
      rows.add('bash loop ×2', b!, { chunks });
      check(`bash-${r}`, 'bash loop');

      peerJob(`bare-${r}`);
      const [c] = await runTogether([bareArgv(`bare-${r}`, 0), bareArgv(`bare-${r}`, 1)]);
      rows.add('bare cat loop ×2 (static halves)', c!, { chunks });
      check(`bare-${r}`, 'bare loop');
    }
    for (const row of rows.rows) row.extra = { 'lane-time/chunk': fmtMs((med(row) * LANES) / chunks) };

    // Round trips: the same runs once more through a mount that logs every SFTP request.
    ctx.log('sshfs: counting SFTP requests per chunk (sshfs_debug mount)');
    const profile: string[] = [];
    const debugMount = await share.mount('debug', ['sshfs_debug']);
    const counter = new SftpCounter(debugMount);
    const onDebug = (name: string) => join(debugMount.mountPoint, name);
    const count = async (tool: string, name: string, argvs: string[][]) => {
      const mark = counter.mark();
      const run = await runTogether(argvs);
      const c = counter.since(mark);
      const row = rows.get(tool);
      if (row) row.extra = { ...row.extra, 'SFTP requests/chunk': (total(c) / chunks).toFixed(1) };
      profile.push(`${tool}: ${(total(c) / chunks).toFixed(1)} SFTP requests/chunk [${perUnit(c, chunks, 10)}] (run ${fmtMs(run[0]!.ms)} on the logging mount)`);
      check(name, tool);
      return c;
    };
    await profileStep(profile, 'SFTP requests per chunk', async () => {
      await pieceworkJob('prof-pw');
      await count('piecework work -j 2', 'prof-pw', [pwArgv('prof-pw').map((a) => a.replace(mount.mountPoint, debugMount.mountPoint))]);
      // Fixed costs: a worker on a job whose chunks are all done (start, clock probe, heartbeat, pass).
      {
        const mark = counter.mark();
        const run = await runTimed([pieceworkBin, 'work', onDebug('prof-pw'), '-j', String(LANES), '-q', '--', 'cat']);
        const c = counter.since(mark);
        profile.push(`piecework, fixed cost of a worker on a finished job: ${fmtMs(run.ms)}, ${total(c)} SFTP requests [${perUnit(c, 1, 10)}]`);
      }
      peerJob('prof-bash');
      await count('bash loop ×2', 'prof-bash', [bashArgv('prof-bash'), bashArgv('prof-bash')].map((a) => a.map((x) => x.replace(mount.mountPoint, debugMount.mountPoint))));
      peerJob('prof-bare');
      await count('bare cat loop ×2 (static halves)', 'prof-bare', [0, 1].map((k) => bareArgv('prof-bare', k).map((x) => x.replace(mount.mountPoint, debugMount.mountPoint))));
    });

    const pw = rows.get('piecework work -j 2');
    const sftp = rows.get(SFTP_ROW);
    const ratios = [
      ratio('piecework / bash loop ×2', pw, rows.get('bash loop ×2')),
      ratio('piecework / bare loop ×2', pw, rows.get('bare cat loop ×2 (static halves)')),
      ratio('piecework over SFTP / bare loop ×2 over sshfs', sftp, rows.get('bare cat loop ×2 (static halves)')),
      ratio('piecework over SFTP / piecework over sshfs', sftp, pw),
    ];
    const targets = [
      { target: 'sshfs 10 ms: ≤ 0.5× the bash loop', met: atMost(ratios[0]!.value, 0.5), detail: `${ratios[0]!.value.toFixed(2)}×` },
      { target: 'sshfs 10 ms (aim): < 1× the bare cat loop', met: atMost(ratios[1]!.value, 0.999), detail: `${ratios[1]!.value.toFixed(2)}×` },
      { target: 'SFTP workers 10 ms: ≤ 0.5× the bare cat loop over sshfs', met: atMost(ratios[2]!.value, 0.5), detail: `${ratios[2]!.value.toFixed(2)}×` },
      { target: 'SFTP workers 10 ms: ahead of sshfs workers', met: atMost(ratios[3]!.value, 0.999), detail: `${ratios[3]!.value.toFixed(2)}×` },
    ];
    const notes = [
      `Round trip ${2 * ONE_WAY_MS} ms (a delay proxy between sshfs and a private sshd on loopback), sshfs ${'default options'}; the bare loop has no skip, claim or temp file, and its two copies split the files statically.`,
      '"lane-time/chunk" = median × lanes / chunks: what one chunk costs one lane; divide by 10 ms for round trips on the critical path.',
    ];
    return { name: 'sshfs', title: `${this.title}: ${chunks} chunks`, rows: rows.rows, ratios, targets, profile, notes };
  },
};
