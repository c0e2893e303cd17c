/**
 * What the cloud and Slurm providers share: a plan is data (the exact argv of each command and
 * the scripts they read), so `--dry-run` prints exactly what `apply` would run, and tests can
 * compare argv without a cloud. Commands run through the providers' own CLIs (gcloud, aws,
 * sbatch), never their HTTP APIs: the user's login, config and defaults apply unchanged.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { execa } from 'execa';
import { PieceworkError, errorCode } from '../../core/errors.js';
import { renderBootstrap, type BootstrapSettings, type MountSpec } from '../bootstrap.js';
import { renderTemplate } from '../templates.js';

export type ProviderName = 'gcloud' | 'aws' | 'slurm';

export interface PlannedFile {
  path: string;
  content: string;
  /** Files holding a key are written 0600. */
  mode: number;
}

export interface PlannedCommand {
  argv: string[];
  /** What the command is for, for people. */
  description: string;
  /**
   * `lookup`: its stdout lists ids (whitespace-separated) that are appended to the next command's
   * argv; when it finds none, the next command is skipped.
   */
  role?: 'lookup';
}

export interface ProviderPlan {
  provider: ProviderName;
  action: 'create' | 'delete';
  /** The name instances/jobs carry (label, tag, Slurm job name): `pw-<job>-<hash>`. */
  jobTag: string;
  files: PlannedFile[];
  commands: PlannedCommand[];
}

export interface CommandOutcome {
  argv: string[];
  exitCode: number;
  stdout: string;
  stderr: string;
  /** Skipped because the lookup before it found nothing. */
  skipped?: boolean;
}

export interface ApplyResult {
  plan: ProviderPlan;
  commands: CommandOutcome[];
  /** Ids named by a lookup (instances or jobs deleted), or created (when the output says). */
  ids: string[];
}

/** Settings every create plan takes. */
export interface CreateOptions {
  /** The job folder as the instances / cluster nodes see it. */
  job: string;
  command: readonly string[];
  /** Instances, or Slurm array tasks. */
  count: number;
  /** Lanes per instance/task; default: one per CPU (Slurm: --cpus-per-task). */
  lanes?: number;
  /** The bundled CLI as the instances see it (on the shared mount). */
  tool: string;
  mount?: MountSpec;
  /** Content of the private key sshfs uses on the instances (cloud only). */
  mountKeyText?: string;
  machineType?: string;
  image?: string;
  /** gcloud: zone; aws: region. */
  zone?: string;
  region?: string;
  /** Slurm partition. */
  partition?: string;
  /** gcloud: `spot` (--provisioning-model=SPOT, default) or `preemptible` (--preemptible). */
  spotModel?: 'spot' | 'preemptible';
  /** Folder for the rendered scripts; default: a fresh one under the OS temp folder. */
  scriptDir?: string;
}

export interface DeleteOptions {
  job: string;
  zone?: string;
  region?: string;
}

/** Where the cloud startup scripts keep the key and the bootstrap (PW_STATE_DIR). */
export const cloudStateDir = '/var/lib/piecework';

/**
 * `pw-<name>-<hash>`: the job folder's name made safe for GCE labels, EC2 tags and Slurm job
 * names (lowercase letters, digits, dashes), plus a short hash of the full path so that two
 * jobs named alike never share instances (and `--delete` never removes another job's).
 */
export function jobTag(job: string): string {
  const name = basename(job).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 30) || 'job';
  const hash = createHash('sha256').update(job).digest('hex').slice(0, 6);
  return `pw-${name}-${hash}`;
}

export function defaultScriptDir(): string {
  return join(tmpdir(), `piecework-launch-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** Bootstrap settings for an instance or task that runs its worker in the foreground. */
export function foregroundBootstrap(options: CreateOptions, extra: Partial<BootstrapSettings>): BootstrapSettings {
  const settings: BootstrapSettings = { action: 'run', job: options.job, tool: options.tool, command: options.command, ...extra };
  if (options.lanes !== undefined) settings.lanes = options.lanes;
  return settings;
}

/** The startup script: shared by gcloud and aws (only the template differs). */
export async function renderCloudStartup(
  template: 'gcloud-startup.sh' | 'aws-user-data.sh',
  options: CreateOptions,
): Promise<string> {
  const mount = options.mount && options.mountKeyText ? { ...options.mount, identity: `${cloudStateDir}/mount_key` } : options.mount;
  const bootstrap = await renderBootstrap(
    foregroundBootstrap(options, { ...(mount ? { mount } : {}), shutdownWhenDone: true }),
  );
  return renderTemplate(template, {
    PW_BOOTSTRAP: bootstrap,
    PW_NEEDS_SSHFS: options.mount ? 1 : 0,
    PW_MOUNT_KEY: options.mountKeyText,
    PW_STATE_DIR: cloudStateDir,
  });
}

export interface ApplyOptions {
  /** Called before each command runs. */
  onCommand?: (argv: readonly string[]) => void;
}

const missingCliHints: Record<string, string> = {
  gcloud: 'install the Google Cloud CLI and run `gcloud auth login` (https://cloud.google.com/sdk)',
  aws: 'install the AWS CLI and run `aws configure`',
  sbatch: 'run launch --provider slurm on a machine that can submit Slurm jobs',
  scancel: 'run on a machine that can submit Slurm jobs',
};

/** Write the plan's files, run its commands in order, remove the files again. */
export async function applyPlan(plan: ProviderPlan, options: ApplyOptions = {}): Promise<ApplyResult> {
  const outcomes: CommandOutcome[] = [];
  const ids: string[] = [];
  const dirs = new Set(plan.files.map((f) => dirname(f.path)));
  try {
    for (const file of plan.files) {
      await mkdir(dirname(file.path), { recursive: true, mode: 0o700 });
      await writeFile(file.path, file.content, { mode: file.mode });
    }
    let pendingIds: string[] | undefined;
    for (const command of plan.commands) {
      const argv = pendingIds === undefined ? command.argv : [...command.argv, ...pendingIds];
      if (pendingIds !== undefined && pendingIds.length === 0) {
        outcomes.push({ argv, exitCode: 0, stdout: '', stderr: '', skipped: true });
        pendingIds = undefined;
        continue;
      }
      pendingIds = undefined;
      options.onCommand?.(argv);
      const outcome = await runCommand(argv);
      outcomes.push(outcome);
      if (outcome.exitCode !== 0) {
        const tail = outcome.stderr.trim().split('\n').slice(-5).join('\n');
        throw new PieceworkError(`${argv[0]} failed (exit ${outcome.exitCode}): ${command.description}${tail ? `\n${tail}` : ''}`, {
          hint: `the command was: ${argv.join(' ')}`,
        });
      }
      if (command.role === 'lookup') {
        pendingIds = outcome.stdout.split(/\s+/).filter((id) => id !== '' && id !== 'None');
        ids.push(...pendingIds);
      }
    }
  } finally {
    // Remove only what we wrote: the folder goes only if that leaves it empty.
    for (const file of plan.files) await rm(file.path, { force: true });
    for (const dir of dirs) await rmdir(dir).catch(() => undefined);
  }
  return { plan, commands: outcomes, ids };
}

async function runCommand(argv: string[]): Promise<CommandOutcome> {
  const [file, ...args] = argv as [string, ...string[]];
  try {
    const result = await execa(file, args, { reject: false, stdin: 'ignore' });
    // No exit code: it never ran (e.g. ENOENT); the result then carries the spawn error's code.
    if (result.failed && result.exitCode === undefined) {
      throw Object.assign(new Error(result.shortMessage), { code: result.code });
    }
    return { argv, exitCode: result.exitCode ?? 1, stdout: result.stdout, stderr: result.stderr };
  } catch (error) {
    if (errorCode(error) === 'ENOENT') {
      throw new PieceworkError(`${file} is not installed (not found on PATH)`, { hint: missingCliHints[file] });
    }
    throw error;
  }
}

/** What every provider's plan() takes: create instances, or delete the job's. */
export type PlanOptions = ({ action: 'create' } & CreateOptions) | ({ action: 'delete' } & DeleteOptions);
