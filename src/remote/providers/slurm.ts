/**
 * Slurm: the workers as one job array (`sbatch --array=1-N`, script from templates/slurm-array.sh
 * with `#SBATCH --requeue`), each task running `piecework work` on the cluster's shared file
 * system — or, with `sftp`, on the job's sftp:// address (the job stays on its head; the nodes
 * fetch the CLI from there and need only SSH and node); `--delete` cancels the array by its name
 * (`scancel --name`).
 */
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { JobLayout } from '../../core/store/layout.js';
import { UsageError } from '../../core/errors.js';
import { renderBootstrap } from '../bootstrap.js';
import { renderTemplate } from '../templates.js';
import {
  applyPlan,
  defaultScriptDir,
  foregroundBootstrap,
  jobTag,
  type ApplyOptions,
  type ApplyResult,
  type CreateOptions,
  type PlanOptions,
  type ProviderPlan,
} from './common.js';

export type SlurmPlanOptions = PlanOptions;

export async function plan(options: SlurmPlanOptions): Promise<ProviderPlan> {
  const tag = jobTag(options.jobId);
  if (options.action === 'delete') {
    return {
      provider: 'slurm',
      action: 'delete',
      jobTag: tag,
      files: [],
      commands: [{ argv: ['scancel', `--name=${tag}`, `--user=${userInfo().username}`], description: `cancel the Slurm jobs named ${tag}` }],
    };
  }
  if (options.mount) {
    throw new UsageError('--mount does not apply to --provider slurm', 'Slurm nodes see the job through the cluster\'s shared file system');
  }
  const scriptPath = join(options.scriptDir ?? defaultScriptDir(), 'slurm-array.sh');
  const outputFolder = options.sftp ? slurmOutputFolder() : undefined;
  // Lanes come from SLURM_CPUS_PER_TASK inside the task, so the bootstrap is rendered without them.
  const withoutLanes: CreateOptions = { ...options };
  delete withoutLanes.lanes;
  const bootstrap = await renderBootstrap(foregroundBootstrap(withoutLanes, options.sftp ? { sftp: options.sftp } : {}));
  const script = await renderTemplate('slurm-array.sh', { PW_BOOTSTRAP: bootstrap });
  const s = options.slurm ?? {};
  const argv = [
    'sbatch',
    // %T: at most T tasks at once.
    `--array=1-${options.count}${s.throttle !== undefined ? `%${s.throttle}` : ''}`,
    `--job-name=${tag}`,
    // %A: the array's job id, %a: the task; the job's logs/ exists from split on. Over SFTP
    // the nodes have no logs/ of the job: the output goes where sbatch runs (a home the nodes share).
    `--output=${outputFolder ? join(outputFolder, `${tag}-slurm-%A_%a.log`) : new JobLayout(options.job).logPath('slurm-%A_%a')}`,
    ...(options.lanes !== undefined ? [`--cpus-per-task=${options.lanes}`] : []),
    ...(options.partition ? [`--partition=${options.partition}`] : []),
    ...(s.time ? [`--time=${s.time}`] : []),
    ...(s.mem ? [`--mem=${s.mem}`] : []),
    ...(s.account ? [`--account=${s.account}`] : []),
    ...(s.qos ? [`--qos=${s.qos}`] : []),
    ...(s.gres ? [`--gres=${s.gres}`] : []),
    ...(s.constraint ? [`--constraint=${s.constraint}`] : []),
    ...(options.providerArgs ?? []),
    '--parsable',
    scriptPath,
  ];
  return {
    provider: 'slurm',
    action: 'create',
    jobTag: tag,
    files: [{ path: scriptPath, content: script, mode: 0o644 }],
    ...(outputFolder ? { folders: [outputFolder] } : {}),
    commands: [{ argv, description: `submit a ${options.count}-task array job ${tag}` }],
  };
}

/** Over SFTP: where the tasks' Slurm output goes, beside the bootstraps' local logs. */
export function slurmOutputFolder(env: NodeJS.ProcessEnv = process.env): string {
  return join(env['XDG_STATE_HOME'] || join(homedir(), '.local', 'state'), 'piecework', 'logs');
}

export function apply(planned: ProviderPlan, options?: ApplyOptions): Promise<ApplyResult> {
  return applyPlan(planned, options);
}

/** The array's job id, as `sbatch --parsable` printed it ("123", or "123;cluster" on a federation). */
export function submittedArrayId(result: ApplyResult): string | undefined {
  const printed = result.commands.find((c) => c.argv[0] === 'sbatch')?.stdout.trim().split(';')[0];
  return printed && /^\d+$/.test(printed) ? printed : undefined;
}

/** Where the array's tasks write their output, as sbatch was told (`%A` filled in, `*` for the task). */
export function arrayOutputPattern(result: ApplyResult, arrayId: string): string | undefined {
  const option = result.commands.find((c) => c.argv[0] === 'sbatch')?.argv.find((a) => a.startsWith('--output='));
  return option?.slice('--output='.length).replaceAll('%A', arrayId).replaceAll('%a', '*');
}

/** Job states in which a task may still start or run a worker (squeue's long names). */
const ACTIVE_STATES = new Set(['PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING', 'SUSPENDED', 'STOPPED', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESIZING', 'SIGNALING', 'STAGE_OUT', 'RESV_DEL_HOLD', 'SPECIAL_EXIT']);

/**
 * Whether every task of the array has ended (none pending, running or completing): undefined
 * when squeue cannot say (not installed, controller unreachable). `launch --wait` asks it while
 * no worker has shown up, so that tasks that all failed before their worker started end the wait
 * at once instead of after the boot allowance.
 */
export async function arrayEnded(arrayId: string): Promise<boolean | undefined> {
  try {
    const result = await execa('squeue', ['--noheader', `--jobs=${arrayId}`, '--format=%T'], { reject: false, stdin: 'ignore', timeout: 20_000 });
    // A job that ended long enough ago (MinJobAge) is purged: squeue then refuses its id.
    if (result.exitCode !== 0) return /invalid job id/i.test(result.stderr) ? true : undefined;
    // Until then, asked by id, squeue lists its ended tasks too (COMPLETED, FAILED, …).
    return !result.stdout.split('\n').some((state) => ACTIVE_STATES.has(state.trim()));
  } catch {
    return undefined;
  }
}
