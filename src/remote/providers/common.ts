/**
 * What the cloud and Slurm providers share: a plan is data (the exact argv of each command and
 * the scripts they read), so `--dry-run` prints exactly what `apply` would run, and tests can
 * compare argv without a cloud. Commands run through the providers' own CLIs (gcloud, aws,
 * sbatch), never their HTTP APIs: the user's login, config and defaults apply unchanged.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { PieceworkError, errorCode } from '../../core/errors.js';
import { renderBootstrap, type BootstrapSettings, type MountSpec, type SftpSpec } from '../bootstrap.js';
import { renderTemplate } from '../templates.js';

export type ProviderName = 'gcloud' | 'aws' | 'slurm';
export { checkLabel } from './labels.js';

export interface PlannedFile {
  path: string;
  /** The text, as people read it (a dry run prints this). */
  content: string;
  /** Files holding a key are written 0600. */
  mode: number;
  /** `gzip`: written gzip-compressed (EC2 user data: cloud-init inflates it; 16 KB limit). */
  encoding?: 'gzip';
  /** Bytes as written (after compression). */
  bytes?: number;
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
  /** The name instances/jobs carry (label, tag, Slurm job name): `pw-<job id>` (see jobTag). */
  jobTag: string;
  files: PlannedFile[];
  /** Folders made (and kept) before the commands run: where Slurm writes the tasks' output. */
  folders?: string[];
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
  /** The job folder as the instances / cluster nodes see it, or its sftp:// address with `sftp`. */
  job: string;
  /** The job's id (job.json): instances and Slurm jobs are named after it (see jobTag). */
  jobId: string;
  command: readonly string[];
  /** The command's working directory as the hosts see it. */
  cwd?: string;
  /** Environment for the workers (and so their commands), in order. */
  env?: readonly (readonly [string, string])[];
  /** Options for `piecework work` (e.g. --warm), before the `--`. */
  workOptions?: readonly string[];
  /** Extra arguments for the provider's create command (gcloud / aws / sbatch), before its output flags. */
  providerArgs?: readonly string[];
  /** Instances, or Slurm array tasks. */
  count: number;
  /** Lanes per instance/task; default: one per CPU (Slurm: --cpus-per-task). */
  lanes?: number;
  /** The bundled CLI as the instances see it (on the shared mount; with `sftp`, where it is fetched to). */
  tool: string;
  mount?: MountSpec;
  /**
   * The workers reach the job over SFTP (launch --via sftp): nothing is mounted, the CLI is
   * fetched from the head (`toolFrom`). On cloud instances the key is `mountKeyText`.
   */
  sftp?: SftpSpec;
  /** Content of the private key for the head on the instances, sshfs's or the SFTP workers' (cloud only). */
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
  /** gcloud: the project (default: gcloud's configured one). */
  project?: string;
  gcloud?: GcloudSettings;
  aws?: AwsSettings;
  slurm?: SlurmSettings;
  /** Folder for the rendered scripts; default: a fresh one under the OS temp folder. */
  scriptDir?: string;
}

/** What experts pass to Compute Engine (each maps to the `gcloud compute instances create` flag of that name). */
export interface GcloudSettings {
  serviceAccount?: string;
  scopes?: readonly string[];
  bootDiskSize?: string;
  bootDiskType?: string;
  network?: string;
  subnet?: string;
  /** --no-address: no external IP (the head must then be reachable inside the VPC, or via Cloud NAT). */
  noAddress?: boolean;
  /** `type=nvidia-l4,count=1`, one per --accelerator. */
  accelerators?: readonly string[];
  /** Labels besides the job's. */
  labels?: readonly (readonly [string, string])[];
  /** e.g. `8h`: the instance is deleted after that long, whatever it is doing. */
  maxRunDuration?: string;
}

/** What experts pass to EC2 (`aws ec2 run-instances`). */
export interface AwsSettings {
  subnetId?: string;
  securityGroupIds?: readonly string[];
  /** An instance profile name, or its ARN. */
  instanceProfile?: string;
  keyName?: string;
  /** Highest spot price per instance-hour, in USD. */
  maxPrice?: string;
  /** The aws CLI profile (`aws --profile`). */
  profile?: string;
  /** Tags besides the job's. */
  tags?: readonly (readonly [string, string])[];
}

/** What experts pass to `sbatch`. */
export interface SlurmSettings {
  time?: string;
  mem?: string;
  account?: string;
  qos?: string;
  gres?: string;
  constraint?: string;
  /** At most this many array tasks at once (`--array=1-N%T`). */
  throttle?: number;
}

export interface DeleteOptions {
  job: string;
  /** The job's id (job.json): what create named its instances after. */
  jobId: string;
  zone?: string;
  region?: string;
  project?: string;
  /** aws: the CLI profile. */
  profile?: string;
}

/** Where the cloud startup scripts keep the key and the bootstrap (PW_STATE_DIR). */
export const cloudStateDir = '/var/lib/piecework';
/** The key file for the head on an instance (PW_MOUNT_KEY is written there). */
const cloudKeyFile = `${cloudStateDir}/mount_key`;

/**
 * `pw-<id>`: the label (GCE), tag (EC2) and job name (Slurm) the job's instances carry, from the
 * job's id in job.json — not its path, which differs with how it is reached (`--mount/--at`):
 * create and `--delete` agree whatever path or flags each was given, and a job split again at
 * the same path (a new id) never shares a label with the old one.
 */
export function jobTag(jobId: string): string {
  const id = jobId.toLowerCase().replace(/[^a-z0-9]+/g, '').slice(0, 40);
  if (id === '') throw new PieceworkError(`job id ${JSON.stringify(jobId)} has no letters or digits to name instances after`);
  return `pw-${id}`;
}

/** `pw-<name>-<id>`: what people see (instance names, the EC2 Name tag), the folder's name made safe. */
export function displayName(jobId: string, job: string): string {
  const name = basename(job).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 20).replace(/-+$/, '') || 'job';
  return `pw-${name}-${jobTag(jobId).slice(3, 19)}`;
}

export function defaultScriptDir(): string {
  return join(tmpdir(), `piecework-launch-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** Bootstrap settings for an instance or task that runs its worker in the foreground. */
export function foregroundBootstrap(options: CreateOptions, extra: Partial<BootstrapSettings>): BootstrapSettings {
  const settings: BootstrapSettings = { action: 'run', job: options.job, tool: options.tool, command: options.command, ...extra };
  if (options.lanes !== undefined) settings.lanes = options.lanes;
  if (options.cwd !== undefined) settings.cwd = options.cwd;
  if (options.env?.length) settings.env = options.env;
  if (options.workOptions?.length) settings.workOptions = options.workOptions;
  return settings;
}

/** The startup script: shared by gcloud and aws (only the template differs). */
export async function renderCloudStartup(
  template: 'gcloud-startup.sh' | 'aws-user-data.sh',
  options: CreateOptions,
): Promise<string> {
  const mount = options.mount && options.mountKeyText ? { ...options.mount, identity: cloudKeyFile } : options.mount;
  // Over SFTP an instance has no CLI until the bootstrap fetches it: into the state folder.
  const sftp = options.sftp && options.mountKeyText ? { ...options.sftp, identity: cloudKeyFile } : options.sftp;
  const tool = sftp ? { tool: `${cloudStateDir}/piecework.mjs` } : {};
  // A GCE instance that only powers off is kept (TERMINATED, its disk billed): it deletes itself
  // when its service account may; an EC2 instance started with shutdown behaviour "terminate" goes.
  const whenDone = template === 'gcloud-startup.sh' ? 'delete-gce' : 'poweroff';
  const bootstrap = await renderBootstrap(foregroundBootstrap(options, { ...(mount ? { mount } : {}), ...(sftp ? { sftp } : {}), ...tool, whenDone }), { compact: true });
  return renderTemplate(template, {
    PW_BOOTSTRAP: bootstrap,
    PW_NEEDS_SSHFS: options.mount ? 1 : 0,
    PW_NEEDS_SFTP: sftp ? 1 : undefined,
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
    for (const folder of plan.folders ?? []) await mkdir(folder, { recursive: true, mode: 0o700 });
    for (const file of plan.files) {
      await mkdir(dirname(file.path), { recursive: true, mode: 0o700 });
      await writeFile(file.path, fileBytes(file), { mode: file.mode });
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

/** A planned file's bytes as written. gzip with a fixed mtime: the same plan, the same bytes. */
export function fileBytes(file: Pick<PlannedFile, 'content' | 'encoding'>): Buffer {
  const text = Buffer.from(file.content, 'utf8');
  return file.encoding === 'gzip' ? gzipSync(text, { level: 9 }) : text;
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
