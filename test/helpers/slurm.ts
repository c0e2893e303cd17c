// A real one-node Slurm cluster for tests, on this machine: its own munge key and munged (as the
// munge user), and slurmctld + slurmd with a slurm.conf whose state, spool, pid and log paths all
// live under a temp folder, on free ports. Nothing under /etc is read or written: every Slurm
// command finds the cluster through SLURM_CONF (see `env`), and the munge socket through the
// conf's AuthInfo. Stopped (jobs cancelled, daemons and job processes killed) by runCleanups().
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, hostname } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { isAlive, killTree, listProcesses, markerEnvName, registerCleanup, runSync, runTag, sleepSync } from './cleanup.js';
import { freePort, spawnDaemon, waitUntil } from './sshd.js';
import { makeTempDir } from './tmp.js';

export interface SlurmCluster {
  dir: string;
  confPath: string;
  /** Give this to every Slurm command (and to piecework, which runs sbatch/scancel). */
  env: Record<string, string>;
  nodeName: string;
  cpus: number;
  partition: string;
  /** `squeue` lines: `JOBID NAME STATE`. */
  queue(): Promise<string[]>;
  logs(): string;
  stop(): void;
}

const programs = ['munged', 'mungekey', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'scancel', 'sinfo', 'setpriv'];

/** Why a Slurm cluster cannot run here, or undefined if it can be tried. */
export function slurmUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (slurmd runs jobs as root, munged as the munge user)';
  const missing = programs.filter((p) => !runSync(['sh', '-c', `command -v ${p}`]).ok);
  if (missing.length) return `not installed: ${missing.join(', ')} (apt-get install -y slurm-wlm munge)`;
  if (!runSync(['id', 'munge']).ok) return 'no munge user (apt-get install -y munge)';
  return undefined;
}

export async function startSlurm(): Promise<SlurmCluster> {
  const reason = slurmUnavailable();
  if (reason) throw new Error(`Slurm cannot run here: ${reason}`);
  const dir = makeTempDir('slurm');
  // munged insists that everyone may traverse the path to its socket.
  chmodSync(dir, 0o755);
  const uid = Number(execFileSync('id', ['-u', 'munge'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'munge'], { encoding: 'utf8' }).trim());

  // --- munge: a key of our own, a socket of our own --------------------------------------------
  const mungeDir = join(dir, 'munge');
  const mungeEtc = join(mungeDir, 'etc');
  const mungeRun = join(mungeDir, 'run');
  for (const [path, mode] of [[mungeDir, 0o755], [mungeEtc, 0o700], [mungeRun, 0o755]] as const) {
    mkdirSync(path, { recursive: true });
    chmodSync(path, mode);
    chownSync(path, uid, gid);
  }
  const keyPath = join(mungeEtc, 'munge.key');
  execFileSync('mungekey', ['--create', '--keyfile', keyPath]);
  chownSync(keyPath, uid, gid);
  chmodSync(keyPath, 0o600);
  const socket = join(mungeRun, 'munge.sock');
  const munged = spawnDaemon(
    ['setpriv', '--reuid', String(uid), '--regid', String(gid), '--init-groups', 'munged', '--foreground', `--key-file=${keyPath}`, `--socket=${socket}`, `--pid-file=${join(mungeRun, 'munged.pid')}`, `--log-file=${join(mungeEtc, 'munged.log')}`, `--seed-file=${join(mungeEtc, 'munged.seed')}`],
    join(dir, 'munged.out'),
  );
  await waitUntil(() => {
    if (!isAlive(munged.pid)) throw new Error(`munged exited: ${readFileSync(join(dir, 'munged.out'), 'utf8')}`);
    return existsSync(socket);
  }, 10_000, 'munged socket');

  // --- slurm.conf -------------------------------------------------------------------------------
  const nodeName = hostname().split('.')[0]!;
  const cpuCount = cpus().length;
  const partition = `pw${process.pid}`;
  const [ctldPort, slurmdPort] = [await freePort(), await freePort()];
  for (const sub of ['state', 'spool']) mkdirSync(join(dir, sub));
  const confPath = join(dir, 'slurm.conf');
  writeFileSync(
    confPath,
    [
      `ClusterName=${runTag}`,
      `SlurmctldHost=${nodeName}(127.0.0.1)`,
      `SlurmctldPort=${ctldPort}`,
      `SlurmdPort=${slurmdPort}`,
      'SlurmUser=root',
      'SlurmdUser=root',
      'AuthType=auth/munge',
      'CredType=cred/munge',
      `AuthInfo=socket=${socket}`,
      `StateSaveLocation=${join(dir, 'state')}`,
      `SlurmdSpoolDir=${join(dir, 'spool')}`,
      `SlurmctldPidFile=${join(dir, 'slurmctld.pid')}`,
      `SlurmdPidFile=${join(dir, 'slurmd.pid')}`,
      `SlurmctldLogFile=${join(dir, 'slurmctld.log')}`,
      `SlurmdLogFile=${join(dir, 'slurmd.log')}`,
      'ProctrackType=proctrack/linuxproc',
      'TaskPlugin=task/none',
      'SelectType=select/cons_tres',
      'SelectTypeParameters=CR_CPU',
      'JobAcctGatherType=jobacct_gather/none',
      'AccountingStorageType=accounting_storage/none',
      'JobCompType=jobcomp/none',
      'MpiDefault=none',
      'MailProg=/bin/true',
      'ReturnToService=2',
      // scancel: SIGTERM, then SIGKILL after KillWait (default 30 s).
      'KillWait=5',
      'MinJobAge=30',
      `NodeName=${nodeName} NodeAddr=127.0.0.1 CPUs=${cpuCount} State=UNKNOWN`,
      `PartitionName=${partition} Nodes=${nodeName} Default=YES MaxTime=INFINITE State=UP`,
      '',
    ].join('\n'),
  );
  const env = { SLURM_CONF: confPath };
  const ctld = spawnDaemon(['slurmctld', '-D', '-i'], join(dir, 'slurmctld.out'), env);
  const slurmd = spawnDaemon(['slurmd', '-D', '-N', nodeName], join(dir, 'slurmd.out'), env);
  const logs = (): string =>
    ['slurmctld.out', 'slurmctld.log', 'slurmd.out', 'slurmd.log']
      .map((f) => `==> ${f} <==\n${existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8').split('\n').slice(-15).join('\n') : ''}`)
      .join('\n');

  // Registered after the daemons, so it runs before they are killed: cancel what is queued, then
  // kill whatever job processes are left (slurmstepd daemonizes: it is no child of slurmd).
  registerCleanup(() => {
    runSync(['scancel', '--full', `--partition=${partition}`], 5000);
    sleepSync(200);
    for (const p of listProcesses()) {
      if (p.pid === process.pid || !isAlive(p.pid)) continue;
      let environ = '';
      let cmdline = '';
      try {
        environ = readFileSync(`/proc/${p.pid}/environ`, 'utf8');
        cmdline = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8');
      } catch {
        continue;
      }
      const vars = environ.split('\0');
      const ours = vars.includes(`SLURM_CONF=${confPath}`) || (cmdline.startsWith('slurmstepd') && vars.includes(`${markerEnvName}=${runTag}`));
      if (ours) killTree(p.pid, 1000);
    }
  }, `cancel the jobs of Slurm cluster ${runTag}`);

  await waitUntil(async () => {
    for (const [name, pid] of [['slurmctld', ctld.pid], ['slurmd', slurmd.pid]] as const) {
      if (!isAlive(pid)) throw new Error(`${name} exited:\n${logs()}`);
    }
    const state = await execa('sinfo', ['-h', '-o', '%T', '-p', partition], { env, reject: false });
    return state.exitCode === 0 && /^idle/m.test(state.stdout);
  }, 30_000, 'the Slurm node to be idle');

  return {
    dir,
    confPath,
    env,
    nodeName,
    cpus: cpuCount,
    partition,
    async queue() {
      const r = await execa('squeue', ['-h', '-o', '%i %j %T', '-p', partition], { env });
      return r.stdout.split('\n').filter((l) => l.trim() !== '');
    },
    logs,
    stop() {
      slurmd.stop();
      ctld.stop();
      munged.stop();
    },
  };
}

/** Files Slurm wrote for a job's array tasks (`--output`), by name. */
export function slurmOutputs(logsDir: string): string[] {
  return readdirSync(logsDir).filter((n) => n.startsWith('slurm-'));
}

