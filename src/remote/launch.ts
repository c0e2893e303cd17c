/**
 * `launch`: get workers running on other machines that see the job folder, then get out of the
 * way. Over SSH: resolve the hosts, connect (bounded, retried), run the bootstrap (node, mount,
 * job), put the CLI there, start a detached worker, and report per host — one bad host never
 * stops the others. With a provider: plan the gcloud / aws / sbatch commands and run them.
 *
 * The folder stays the only coordinator: if launch dies half-way, nothing is lost; workers that
 * started keep working, and launching again adds more.
 *
 * Nothing here prints: progress goes to `onEvent`, the outcome is the returned report.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, posix, resolve } from 'node:path';
import type { NodeSSH } from 'node-ssh';
import { PieceworkError, UsageError } from '../core/errors.js';
import { openJobStore } from '../core/store/open-store.js';
import { readManifest } from '../core/manifest.js';
import { PACKAGE_VERSION } from '../core/version.js';
import {
  BootstrapExit,
  bootstrapErrorMessage,
  parseBootstrapOutput,
  parseMountSource,
  renderBootstrap,
  type BootstrapSettings,
  type SftpSpec,
} from './bootstrap.js';
import { formatHost, resolveHosts, type HostConnectionOptions, type HostSpec } from './hosts.js';
import * as aws from './providers/aws.js';
import type { ApplyResult, AwsSettings, CreateOptions, GcloudSettings, ProviderName, ProviderPlan, SlurmSettings } from './providers/common.js';
import * as gcloud from './providers/gcloud.js';
import * as slurm from './providers/slurm.js';
import {
  connectHost,
  defaultKnownHostsFiles,
  loadCredentials,
  mapBounded,
  type ConnectFailureStatus,
  type SshCredentials,
} from './ssh.js';
import { entriesForHost, formatKnownHostsEntry, readKnownHosts } from './known-hosts.js';
import { renderTemplate } from './templates.js';
import { parseSftpAddress } from '../core/store/sftp-store.js';
import { bundledCliPath, cliOnHosts, mountSpec, remoteJobPath, workingDirectory, type LaunchMountOptions } from './share.js';
import { toolCachePath, uploadTool } from './upload.js';
import {
  connectToHead,
  ensureJobKey,
  generateJobKey,
  headAuthorizedKeys,
  installJobKey,
  jobKeyComment,
  jobKeyRecord,
  readJobKey,
  revokeJobKey,
  sftpOnlyLine,
  type HeadLogin,
  type JobKey,
  type JobKeyEvent,
  type KeyHead,
  type RevokeOutcome,
} from './job-key.js';

export interface LaunchOptions extends HostConnectionOptions {
  /** The job folder, as this machine names it. */
  job: string;
  /** The user's command (argv, as given after `--`). */
  command: readonly string[];
  /** The job folder as the hosts see it; default: see `remoteJobPath`. */
  remoteJob?: string;
  /** Lanes per host; a hosts-file `N/host` wins; default: one per CPU of the host. */
  lanes?: number;
  /** The command's working directory as the hosts see it; default: see `workingDirectory`. */
  cwd?: string;
  /** The folder launch runs from (default: process.cwd()). */
  launchDir?: string;
  /** Environment for the workers and their commands, in order (`--env NAME=VALUE`). */
  env?: readonly (readonly [string, string])[];
  /** Options for `piecework work` on the hosts (`--warm`, `--max-chunks-per-process N`). */
  workOptions?: readonly string[];
  /** Providers: the job's id, when job.json cannot be read here (default: read from it). */
  jobId?: string;

  /** Record new keys hashed (default true, as Debian's ssh does). */
  hashKnownHosts?: boolean;
  /** Longest a host's bootstrap may take (mounting included). Default 180 s. */
  bootstrapTimeoutMs?: number;
  /** A started worker must stay up this long to count as started. Default 2 s. */
  graceSeconds?: number;
  /** Path of node on the hosts, if it is not found by the usual places. */
  node?: string;

  mount?: LaunchMountOptions;
  /**
   * The workers reach the job over SFTP (no mount, no FUSE on the hosts): `address` is the job's
   * sftp:// address as the hosts reach the head; `identity` a key file on the hosts for it.
   */
  sftp?: LaunchSftpOptions;

  /**
   * Run the CLI from the shared folder instead of copying it to each host: a path as the hosts
   * see it, or `true` to copy this machine's bundle to `<share>/.piecework/<version>/` first.
   */
  toolOnMount?: string | true;
  /** The bundled CLI on this machine; default `<package>/dist/piecework.mjs` (`make build`). */
  localTool?: string;

  provider?: ProviderName;
  count?: number;
  zone?: string;
  region?: string;
  machineType?: string;
  image?: string;
  partition?: string;
  spotModel?: 'spot' | 'preemptible';
  /** gcloud: the project. */
  project?: string;
  gcloud?: GcloudSettings;
  aws?: AwsSettings;
  slurm?: SlurmSettings;
  /** Extra arguments for the provider's create command. */
  providerArgs?: readonly string[];
  /** Plan only: render scripts, list commands, connect nowhere. */
  dryRun?: boolean;
  /** Providers: remove the job's instances / cancel its Slurm jobs, then revoke the job's key (if launch made one). */
  delete?: boolean;
  /**
   * Make a key for the job (job-key.ts), install it on the head for SFTP only, and give it to the
   * workers instead of `mount.identity`. Default: on for gcloud/aws with `mount` and no identity.
   */
  jobKey?: boolean;

  onEvent?: (event: LaunchEvent) => void;
}

export type { LaunchMountOptions } from './share.js';

export interface LaunchSftpOptions {
  address: string;
  identity?: string;
}
export { remoteJobPath } from './share.js';

export type HostStatus = 'started' | ConnectFailureStatus | 'no-node' | 'mount-failed' | 'no-job' | 'no-cwd';

export interface HostResult {
  /** `user@host:port` as people write it. */
  host: string;
  spec: HostSpec;
  status: HostStatus;
  /** One line: "started 8 lanes (pid 1234)" or what went wrong. */
  message: string;
  hint?: string;
  pid?: number;
  lanes?: number;
  /** The worker's launch log, as the host sees it. */
  log?: string;
  /** The same output on the host's own disk (survives a dropped mount). */
  localLog?: string;
  /** The worker had already finished (status 0) when the start was checked: nothing left to do. */
  finished?: boolean;
  node?: string;
  nodeVersion?: string;
  mount?: 'new' | 'already';
  hostKeyRecorded?: boolean;
  toolUploaded?: boolean;
  attempts: number;
  elapsedMs: number;
}

export type LaunchEvent =
  | { type: 'host:connecting'; host: string }
  | { type: 'host:retry'; host: string; attempt: number; delayMs: number; reason: string }
  | { type: 'host:key-recorded'; host: string; file: string; keyType: string; fingerprint: string }
  | { type: 'host:checking'; host: string }
  | { type: 'host:uploading'; host: string; remotePath: string; bytes: number }
  | { type: 'host:starting'; host: string }
  | { type: 'host:done'; result: HostResult }
  | { type: 'tool:copied'; path: string }
  | { type: 'provider:command'; argv: readonly string[] }
  | JobKeyEvent;

export interface SshLaunchReport {
  kind: 'ssh';
  dryRun: false;
  job: string;
  remoteJob: string;
  hosts: HostResult[];
  started: number;
  failed: number;
  jobKey?: JobKeyReport;
}

export interface SshLaunchPlan {
  kind: 'ssh';
  dryRun: true;
  job: string;
  remoteJob: string;
  /** The script each host would run to start its worker (the tool path as it would be). */
  hosts: { host: string; spec: HostSpec; script: string }[];
  jobKey?: JobKeyReport;
}

/** `launch JOB --delete` with no provider: the job's key revoked on the head, nothing else. */
export interface JobKeyRevokeReport {
  kind: 'job-key';
  dryRun: boolean;
  jobKey?: JobKeyReport;
}

export interface ProviderLaunchReport {
  kind: 'provider';
  provider: ProviderName;
  dryRun: boolean;
  plan: ProviderPlan;
  result?: ApplyResult;
  jobKey?: JobKeyReport;
}

/** What launch did (or, in a dry run, would do) with the job's key. */
export interface JobKeyReport {
  /** `piecework-job-<id>`. */
  comment: string;
  /** The private key on this machine. */
  keyFile: string;
  /** Create: the head it goes to (`user@host:port`), the line, the file there, and what happened. */
  head?: string;
  line?: string;
  authorizedKeys?: string;
  result?: 'added' | 'present' | 'would-add';
  /** Delete: the heads it was removed from (a dry run: would be). */
  revoked?: RevokeOutcome['revoked'];
  wouldRevoke?: string[];
}

export type LaunchReport = SshLaunchReport | SshLaunchPlan | ProviderLaunchReport | JobKeyRevokeReport;

export async function launch(options: LaunchOptions): Promise<LaunchReport> {
  if (options.provider) return launchOnProvider(options.provider, options);
  if (options.delete) return revokeOnly(options);
  return launchOverSsh(options);
}

/** Lab hosts have no instances to delete: `--delete` revokes the job's key, and forgets it here. */
async function revokeOnly(options: LaunchOptions): Promise<JobKeyRevokeReport> {
  const jobId = await jobIdFor(options);
  if (options.dryRun) {
    const record = await jobKeyRecord(jobId);
    return { kind: 'job-key', dryRun: true, ...(record ? { jobKey: { comment: jobKeyComment(jobId), keyFile: record.keyFile ?? '', wouldRevoke: record.heads.map(formatHost) } } : {}) };
  }
  const revoked = await revokeJobKey(jobId, headLogin(options), options.onEvent);
  if (revoked?.failed.length) throw revokeFailure(undefined, undefined, revoked);
  return { kind: 'job-key', dryRun: false, ...(revoked ? { jobKey: { comment: revoked.comment, keyFile: revoked.file, revoked: revoked.revoked } } : {}) };
}

function validateCommon(options: LaunchOptions): void {
  if (!options.delete && options.command.length === 0) {
    throw new UsageError('no command to run: give it after --', 'e.g. piecework launch JOB --hosts lab.txt -- python3 score.py');
  }
  if (options.lanes !== undefined && !(Number.isInteger(options.lanes) && options.lanes >= 1)) {
    throw new UsageError(`--lanes must be a whole number of at least 1, not ${options.lanes}`);
  }
  if (options.remoteJob !== undefined && !isAbsolute(options.remoteJob)) {
    throw new UsageError(`--remote-job ${options.remoteJob}: give the job folder's absolute path on the hosts`);
  }
  if (options.sftp) {
    parseSftpAddress(options.sftp.address);
    if (options.mount) throw new UsageError('--via sftp and --mount do not go together', 'with --via sftp the hosts mount nothing: leave --mount/--at out');
    if (options.remoteJob !== undefined) throw new UsageError('--via sftp and --remote-job do not go together', 'the hosts reach the job at its sftp:// address');
    if (options.toolOnMount !== undefined) throw new UsageError('--via sftp and --tool-on-mount do not go together', 'the CLI is copied to each host');
  }
  if (options.mount) {
    if (!parseMountSource(options.mount.source)) {
      throw new UsageError(`--mount ${options.mount.source}: expected [user@]host:/path`);
    }
    if (!isAbsolute(options.mount.at)) throw new UsageError(`--at ${options.mount.at}: the mount point must be an absolute path`);
  }
}

async function launchOverSsh(options: LaunchOptions): Promise<SshLaunchReport | SshLaunchPlan> {
  validateCommon(options);
  validateJobKey(undefined, options);
  const specs = options.hostSpecs ? [...options.hostSpecs] : await resolveHosts(options.hosts ?? []);
  if (specs.length === 0) throw new UsageError('no hosts: give --hosts FILE or --hosts a,b,c, or --provider');
  const remoteJob = options.sftp?.address ?? options.remoteJob ?? remoteJobPath(options.job, options.mount);
  const knownHostsFiles = options.knownHostsFiles ? [...options.knownHostsFiles] : defaultKnownHostsFiles();
  const sftp = options.sftp ? await sftpSpec(options.sftp, knownHostsFiles) : undefined;
  const cwd = sftp ? sftpWorkingDirectory(options) : await workingDirectory({ ...commandPlace(options), remoteJob });
  const mount = options.mount ? await mountSpec(options.mount, knownHostsFiles, options.acceptNewHostKeys ?? false) : undefined;
  const jobKey = options.jobKey ? await prepareJobKey(options, options.sftp ? sftpHead(options.sftp.address) : mountHead(options.mount!)) : undefined;
  const base: Omit<BootstrapSettings, 'action'> = { job: remoteJob, command: options.command, ...(cwd !== undefined ? { cwd } : {}) };
  if (sftp) base.sftp = sftp;
  if (options.env?.length) base.env = options.env;
  if (options.workOptions?.length) base.workOptions = options.workOptions;
  if (mount) base.mount = mount;
  if (options.node) base.node = options.node;
  if (options.graceSeconds !== undefined) base.graceSeconds = options.graceSeconds;

  const toolOnHosts = await cliOnHosts(toolSettings(options), !options.dryRun);

  if (options.dryRun) {
    // Where the job key would be on each host (the host's own state folder).
    const keyed = jobKey ? withIdentity(base, `~/.local/state/piecework/job-keys/${jobKey.key.jobId}`) : base;
    const hosts = await Promise.all(
      specs.map(async (spec) => ({
        host: formatHost(spec),
        spec,
        // Relative to the host's home, where the upload puts it.
        script: await renderBootstrap(withLanes({ ...keyed, action: 'start', tool: toolOnHosts ?? `.cache/piecework/${PACKAGE_VERSION}/piecework.mjs` }, spec, options)),
      })),
    );
    return { kind: 'ssh', dryRun: true, job: options.job, remoteJob, hosts, ...(jobKey ? { jobKey: { ...jobKeyReport(jobKey), result: 'would-add' as const } } : {}) };
  }
  const installed = jobKey && (await installJobKey(jobKey.key, jobKey.head, headLogin(options), options.onEvent));

  const credentials = await loadCredentials({
    ...(options.identityFiles ? { identityFiles: options.identityFiles } : {}),
    ...(options.agent !== undefined ? { agent: options.agent } : {}),
  });
  const context: HostContext = { options, base, credentials, knownHostsFiles, toolOnHosts, localTool: options.localTool ?? bundledCliPath(), ...(jobKey ? { jobKey: jobKey.key } : {}) };
  const results = await mapBounded(specs, options.concurrency ?? 8, (spec) => startOnHost(spec, context));
  const started = results.filter((r) => r.status === 'started').length;
  const keyReport = jobKey && installed ? { jobKey: { ...jobKeyReport(jobKey), authorizedKeys: installed.file, result: installed.result } } : {};
  return { kind: 'ssh', dryRun: false, job: options.job, remoteJob, hosts: results, started, failed: results.length - started, ...keyReport };
}

/** The same settings with the workers' key for the head (sshfs's, or the SFTP workers'). */
function withIdentity(base: Omit<BootstrapSettings, 'action'>, identity: string): Omit<BootstrapSettings, 'action'> {
  if (base.sftp) return { ...base, sftp: { ...base.sftp, identity } };
  if (base.mount) return { ...base, mount: { ...base.mount, identity } };
  return base;
}

/** Copy the job key to a host (templates/job-key-on-host.sh): its absolute path there. */
async function placeJobKey(ssh: NodeSSH, key: JobKey): Promise<string> {
  const script = await renderTemplate('job-key-on-host.sh', { PW_KEY_NAME: key.jobId, PW_KEY_TEXT: key.privateKey });
  const run = await ssh.execCommand('sh -s', { stdin: script });
  const file = /^piecework-keys: file=(.+)$/m.exec(run.stdout)?.[1];
  if (run.code !== 0 || !file) throw new Error(`cannot keep the job key on the host: ${run.stderr.trim().split('\n').pop() || `exit ${run.code}`}`);
  return file;
}

/**
 * What the hosts need to reach the head over SFTP: the key file (a path on the hosts) and the
 * head's known_hosts lines from this machine's files — the workers never accept an unknown key.
 */
async function sftpSpec(sftp: LaunchSftpOptions, knownHostsFiles: readonly string[]): Promise<SftpSpec> {
  const address = parseSftpAddress(sftp.address);
  const lines = entriesForHost(await readKnownHosts(knownHostsFiles), address.host, address.port).map(formatKnownHostsEntry);
  if (lines.length === 0) {
    throw new UsageError(`the head ${address.host}${address.port === 22 ? '' : `:${address.port}`} is not in known_hosts here, so the workers could not check its key`, `add it (ssh-keyscan -p ${address.port} ${address.host} >> ~/.ssh/known_hosts, after checking the fingerprint), or give --known-hosts FILE`);
  }
  return { knownHostsLines: lines, ...(sftp.identity ? { identity: sftp.identity } : {}) };
}

/** Over SFTP the hosts have no folder of the job's: the command runs in --cwd, else their home. */
function sftpWorkingDirectory(options: LaunchOptions): string | undefined {
  if (options.cwd === undefined && isRelativeProgram(options.command[0] ?? '')) {
    throw new UsageError(`${options.command[0]} is a relative path, but with --via sftp the hosts have no shared folder to run it from`, 'give --cwd DIR (a folder on the hosts), or the command as an absolute path');
  }
  if (options.cwd !== undefined && !isAbsolute(options.cwd)) throw new UsageError(`--cwd ${options.cwd}: give the working directory's absolute path on the hosts`);
  return options.cwd;
}

function isRelativeProgram(program: string): boolean {
  return program.includes('/') && !isAbsolute(program);
}

function commandPlace(options: LaunchOptions): Parameters<typeof workingDirectory>[0] & { remoteJob?: string } {
  return {
    job: options.job,
    command: options.command,
    remoteJob: '',
    ...(options.mount ? { mount: options.mount } : {}),
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    ...(options.launchDir !== undefined ? { launchDir: options.launchDir } : {}),
  };
}

/**
 * The job's id, which instances and Slurm jobs are named after: `--job-id`, else job.json here.
 * (The one read of the core's job marker in the remote layer.)
 */
export async function jobIdFor(options: Pick<LaunchOptions, 'job' | 'jobId'>): Promise<string> {
  if (options.jobId !== undefined) {
    if (!/^[A-Za-z0-9]{4,64}$/.test(options.jobId)) throw new UsageError(`--job-id ${options.jobId}: expected the "id" of job.json (letters and digits)`);
    return options.jobId;
  }
  try {
    const store = await openJobStore(options.job);
    // Closed at once: an sftp:// store's connection would keep this process alive.
    return (await readManifest(store).finally(() => store.close())).id;
  } catch (error) {
    const why = error instanceof PieceworkError ? error.message : String(error);
    throw new PieceworkError(`cannot read the job's id from ${resolve(options.job)}/job.json on this machine (${why})`, {
      hint: 'instances and Slurm jobs are named after it, so that --delete finds exactly this job\'s: run launch where the job folder is visible, or pass --job-id ID (the "id" in job.json)',
      exitStatus: error instanceof PieceworkError ? error.exitStatus : 1,
    });
  }
}

function toolSettings(options: LaunchOptions): Parameters<typeof cliOnHosts>[0] {
  const settings: Parameters<typeof cliOnHosts>[0] = {
    job: options.job,
    localTool: options.localTool ?? bundledCliPath(),
    onCopied: (path) => options.onEvent?.({ type: 'tool:copied', path }),
  };
  if (options.mount) settings.mount = options.mount;
  if (options.toolOnMount !== undefined) settings.toolOnMount = options.toolOnMount;
  return settings;
}

function withLanes(settings: BootstrapSettings, spec: HostSpec, options: LaunchOptions): BootstrapSettings {
  const lanes = spec.lanes ?? options.lanes;
  return lanes === undefined ? settings : { ...settings, lanes };
}

interface HostContext {
  options: LaunchOptions;
  base: Omit<BootstrapSettings, 'action'>;
  /** The job's key, copied to each host for its workers (`--job-key`). */
  jobKey?: JobKey;
  credentials: SshCredentials;
  knownHostsFiles: string[];
  toolOnHosts: string | undefined;
  localTool: string;
}

const exitStatuses: Partial<Record<number, HostStatus>> = {
  [BootstrapExit.noNode]: 'no-node',
  [BootstrapExit.mountFailed]: 'mount-failed',
  [BootstrapExit.noJob]: 'no-job',
  [BootstrapExit.noWorkingDirectory]: 'no-cwd',
};

async function startOnHost(spec: HostSpec, context: HostContext): Promise<HostResult> {
  const { options } = context;
  const started = Date.now();
  const host = formatHost(spec);
  const emit = options.onEvent ?? (() => undefined);
  const finish = (partial: Omit<HostResult, 'host' | 'spec' | 'elapsedMs'>): HostResult => {
    const result: HostResult = { host, spec, ...partial, elapsedMs: Date.now() - started };
    emit({ type: 'host:done', result });
    return result;
  };

  emit({ type: 'host:connecting', host });
  const connection = await connectHost(
    { host: spec.host, port: spec.port, ...(spec.user ? { user: spec.user } : {}) },
    {
      credentials: context.credentials,
      hostKeys: { knownHostsFiles: context.knownHostsFiles, acceptNew: options.acceptNewHostKeys ?? false, hashNewEntries: options.hashKnownHosts ?? true },
      ...(options.connectTimeoutMs !== undefined ? { readyTimeoutMs: options.connectTimeoutMs } : {}),
      ...(options.connectRetries !== undefined ? { retries: options.connectRetries } : {}),
      onRetry: (info) => emit({ type: 'host:retry', host, ...info }),
      onHostKeyRecorded: (info) => emit({ type: 'host:key-recorded', host, ...info }),
    },
  );
  if (connection.status !== 'connected') {
    return finish({ status: connection.status, message: connection.message, ...(connection.hint ? { hint: connection.hint } : {}), attempts: connection.attempts });
  }

  const { ssh } = connection;
  const common = { attempts: connection.attempts, ...(connection.hostKeyRecorded ? { hostKeyRecorded: true } : {}) };
  const timeoutMs = options.bootstrapTimeoutMs ?? 180_000;
  try {
    const base = context.jobKey ? withIdentity(context.base, await placeJobKey(ssh, context.jobKey)) : context.base;
    const settings = withLanes({ ...base, action: 'check' }, spec, options);
    emit({ type: 'host:checking', host });
    const check = await runBootstrap(ssh, settings, timeoutMs);
    const facts = parseBootstrapOutput(check.stdout);
    const found = {
      ...(facts['node'] ? { node: facts['node'] } : {}),
      ...(facts['node_version'] ? { nodeVersion: facts['node_version'] } : {}),
      ...(facts['mount'] ? { mount: facts['mount'].startsWith('new') ? ('new' as const) : ('already' as const) } : {}),
    };
    if (check.code !== 0) return finish({ ...common, ...found, ...bootstrapFailure(host, check) });

    let tool = context.toolOnHosts;
    let toolUploaded: boolean | undefined;
    if (tool === undefined) {
      const upload = await uploadTool(ssh, context.localTool, PACKAGE_VERSION, (info) => emit({ type: 'host:uploading', host, ...info }));
      tool = upload.remotePath;
      toolUploaded = upload.uploaded;
    }

    emit({ type: 'host:starting', host });
    const start = await runBootstrap(ssh, { ...settings, action: 'start', tool }, timeoutMs);
    const out = parseBootstrapOutput(start.stdout);
    const extra = { ...found, ...(toolUploaded !== undefined ? { toolUploaded } : {}) };
    if (start.code !== 0) return finish({ ...common, ...extra, ...bootstrapFailure(host, start) });
    const pid = Number(out['pid']);
    const lanes = Number(out['lanes']);
    return finish({
      ...common,
      ...extra,
      status: 'started',
      message: `started ${lanes} lane${lanes === 1 ? '' : 's'} (pid ${pid})${out['exit'] === '0' ? '; it has finished already (nothing left to do)' : ''}`,
      pid,
      lanes,
      ...(out['log'] ? { log: out['log'] } : {}),
      ...(out['local_log'] ? { localLog: out['local_log'] } : {}),
      ...(out['exit'] === '0' ? { finished: true } : {}),
    });
  } catch (error) {
    return finish({ ...common, status: 'error', message: `${host}: ${(error as Error).message}` });
  } finally {
    ssh.dispose();
  }
}

function bootstrapFailure(host: string, run: { code: number | null; signal: string | null; stderr: string }): Pick<HostResult, 'status' | 'message' | 'hint'> {
  const status = (run.code !== null && exitStatuses[run.code]) || 'error';
  const detail = bootstrapErrorMessage(run.stderr) ?? (run.signal ? `killed by ${run.signal}` : `exit ${run.code}`);
  const hints: Partial<Record<HostStatus, string>> = {
    'no-node': 'install Node.js 20.19 or newer on the host (or pass its path with --node)',
    'mount-failed': 'check that the host can ssh to the head non-interactively (key, known_hosts), and that sshfs and FUSE work there',
    'no-job': 'check the job path on the host (--remote-job) or mount the shared folder (--mount … --at …)',
    'no-cwd': 'give --cwd DIR, the working directory as the hosts see it',
  };
  const hint = hints[status];
  return { status, message: `${host}: ${detail}`, ...(hint ? { hint } : {}) };
}

/**
 * Run the rendered bootstrap with `sh -s`, the script on stdin: the user's login shell (bash,
 * zsh, fish, tcsh…) only has to run `sh -s`, and no value is ever parsed by it.
 */
async function runBootstrap(
  ssh: NodeSSH,
  settings: BootstrapSettings,
  timeoutMs: number,
): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  const script = await renderBootstrap(settings);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      ssh.dispose();
      reject(new Error(`the bootstrap did not finish within ${Math.round(timeoutMs / 1000)} s (a hung mount?)`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([ssh.execCommand('sh -s', { stdin: script }), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function launchOnProvider(provider: ProviderName, options: LaunchOptions): Promise<ProviderLaunchReport> {
  const module = { gcloud, aws, slurm }[provider];
  const remoteJob = options.sftp?.address ?? options.remoteJob ?? remoteJobPath(options.job, options.mount);
  let plan: ProviderPlan;
  let jobKey: PreparedJobKey | undefined;
  if (options.delete) {
    const jobId = await jobIdFor(options);
    plan = await module.plan({
      action: 'delete',
      job: remoteJob,
      jobId,
      ...(options.zone ? { zone: options.zone } : {}),
      ...(options.region ? { region: options.region } : {}),
      ...(options.project ? { project: options.project } : {}),
      ...(options.aws?.profile ? { profile: options.aws.profile } : {}),
    });
    if (options.dryRun) {
      const record = await jobKeyRecord(jobId);
      const report: ProviderLaunchReport = { kind: 'provider', provider, dryRun: true, plan };
      if (record) report.jobKey = { comment: jobKeyComment(jobId), keyFile: record.keyFile ?? '', wouldRevoke: record.heads.map(formatHost) };
      return report;
    }
    // Instances first: a head out of reach must not keep them running (and billed).
    const result = await module.apply(plan, { onCommand: (argv) => options.onEvent?.({ type: 'provider:command', argv }) });
    const report: ProviderLaunchReport = { kind: 'provider', provider, dryRun: false, plan, result };
    const revoked = await revokeJobKey(jobId, headLogin(options), options.onEvent);
    if (revoked) report.jobKey = { comment: revoked.comment, keyFile: revoked.file, revoked: revoked.revoked };
    if (revoked?.failed.length) throw revokeFailure(plan, result, revoked);
    return report;
  } else {
    validateCommon(options);
    validateJobKey(provider, options);
    if (options.count === undefined || !(Number.isInteger(options.count) && options.count >= 1)) {
      throw new UsageError(`--count is required with --provider ${provider} (how many ${provider === 'slurm' ? 'array tasks' : 'instances'})`);
    }
    const jobId = await jobIdFor(options);
    const cwd = options.sftp ? sftpWorkingDirectory(options) : await workingDirectory({ ...commandPlace(options), remoteJob });
    // Instances and Slurm tasks run the CLI from the shared folder; by default this machine's
    // bundle is copied there (this machine sees the share: it is the head, or mounts it). Over
    // SFTP there is no share: it goes to the head (below), and the hosts fetch it from there.
    let tool: string;
    if (options.sftp) {
      await cliOnHosts(toolSettings(options), !options.dryRun); // only checks that the bundle is there
      tool = toolCachePath(PACKAGE_VERSION);
    } else {
      tool = (await cliOnHosts({ ...toolSettings(options), toolOnMount: options.toolOnMount ?? true }, !options.dryRun)) as string;
    }
    const create: CreateOptions = { job: remoteJob, jobId, command: options.command, count: options.count, tool, ...(cwd !== undefined ? { cwd } : {}) };
    if (options.lanes !== undefined) create.lanes = options.lanes;
    if (options.env?.length) create.env = options.env;
    if (options.workOptions?.length) create.workOptions = options.workOptions;
    if (options.providerArgs?.length) create.providerArgs = options.providerArgs;
    if (options.mount) {
      const knownHostsFiles = options.knownHostsFiles ? [...options.knownHostsFiles] : defaultKnownHostsFiles();
      const { identity, ...rest } = options.mount;
      create.mount = await mountSpec(rest, knownHostsFiles, options.acceptNewHostKeys ?? false);
      if (create.mount.strict === 'yes' && !create.mount.knownHostsLines && provider !== 'slurm') {
        throw new UsageError(`the head in --mount ${options.mount.source} is not in known_hosts, so new instances could not check its key`, `add it (ssh-keyscan -p ${options.mount.port ?? 22} HEAD >> ~/.ssh/known_hosts, after checking the fingerprint) or pass --accept-new-host-keys`);
      }
      if (identity) create.mountKeyText = await readFile(identity, 'utf8');
      else if (wantsJobKey(provider, options)) {
        jobKey = await prepareJobKey({ ...options, jobId }, mountHead(options.mount));
        create.mountKeyText = jobKey.key.privateKey;
      }
    }
    if (options.sftp) {
      const knownHostsFiles = options.knownHostsFiles ? [...options.knownHostsFiles] : defaultKnownHostsFiles();
      const head = sftpHead(options.sftp.address);
      const { identity, ...spec } = await sftpSpec(options.sftp, knownHostsFiles);
      create.sftp = { ...spec, toolFrom: { login: sftpLogin(head), port: head.port, path: toolOnHead(options.sftp.address) } };
      // Slurm nodes: a key file there (default their ~/.ssh/id_*). Instances: a key sent along.
      if (provider === 'slurm') {
        if (identity !== undefined) create.sftp.identity = identity;
      } else if (identity !== undefined) {
        create.mountKeyText = await readLocalKey(identity);
      } else if (wantsJobKey(provider, options)) {
        jobKey = await prepareJobKey({ ...options, jobId }, head);
        create.mountKeyText = jobKey.key.privateKey;
      }
    }
    for (const key of ['machineType', 'image', 'zone', 'region', 'partition', 'spotModel', 'project', 'gcloud', 'aws', 'slurm'] as const) {
      const value = options[key];
      if (value !== undefined) (create as unknown as Record<string, unknown>)[key] = value;
    }
    plan = await module.plan({ action: 'create', ...create });
  }
  const keyReport = jobKey && jobKeyReport(jobKey);
  if (options.dryRun) return { kind: 'provider', provider, dryRun: true, plan, ...(keyReport ? { jobKey: { ...keyReport, result: 'would-add' } } : {}) };
  // The key goes on the head before any instance exists that would use it.
  const installed = jobKey && (await installJobKey(jobKey.key, jobKey.head, headLogin(options), options.onEvent));
  if (options.sftp) await toolToHead(options, options.sftp.address);
  const result = await module.apply(plan, { onCommand: (argv) => options.onEvent?.({ type: 'provider:command', argv }) });
  return { kind: 'provider', provider, dryRun: false, plan, result, ...(keyReport && installed ? { jobKey: { ...keyReport, authorizedKeys: installed.file, result: installed.result } } : {}) };
}

interface PreparedJobKey {
  key: JobKey;
  head: KeyHead;
  /** False in a dry run before the first launch: the key is a throwaway one, made nowhere. */
  kept: boolean;
}

/** The job's key, kept here (made if new); a dry run makes nothing: the kept key, or a throwaway one. */
async function prepareJobKey(options: LaunchOptions, head: KeyHead): Promise<PreparedJobKey> {
  const jobId = await jobIdFor(options);
  const kept = await readJobKey(jobId);
  const key = kept ?? (options.dryRun ? generateJobKey(jobId) : await ensureJobKey(jobId, options.onEvent));
  return { key, head, kept: kept !== undefined || !options.dryRun };
}

function jobKeyReport(prepared: PreparedJobKey): JobKeyReport {
  const { key, head, kept } = prepared;
  return {
    comment: key.comment,
    keyFile: key.file,
    head: formatHost(head),
    line: kept ? sftpOnlyLine(key) : `restrict,command="internal-sftp" ssh-ed25519 <a new key> ${key.comment}`,
    authorizedKeys: head.authorizedKeys ?? '~/.ssh/authorized_keys',
  };
}

/** The head of an sftp:// job address. */
function sftpHead(address: string): KeyHead {
  const { user, host, port } = parseSftpAddress(address);
  const authorizedKeys = headAuthorizedKeys();
  return { ...(user ? { user } : {}), host, port, ...(authorizedKeys ? { authorizedKeys } : {}) };
}

/** `[user@]host` as OpenSSH's sftp client takes it (an IPv6 address in brackets). */
function sftpLogin(head: KeyHead): string {
  return `${head.user ? `${head.user}@` : ''}${head.host.includes(':') ? `[${head.host}]` : head.host}`;
}

/** `--head-identity` for cloud instances: a key file here, whose content the instances get. */
async function readLocalKey(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new UsageError(`--head-identity ${file}: cannot read it here (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, 'with --provider gcloud|aws it names a key file on this machine, sent to the instances; leave it out to send a key made for the job (SFTP only on the head)');
  }
}

/**
 * Where hosts that launch does not log in to (cloud instances, Slurm nodes) fetch the CLI from:
 * `.piecework/<version>/piecework.mjs` beside the job folder on the head, as `--tool-on-mount`
 * puts it beside the job on a share. An absolute path: the job key's SFTP session and launch's
 * own may start in different folders.
 */
function toolOnHead(address: string): string {
  return posix.join(posix.dirname(parseSftpAddress(address).path), '.piecework', PACKAGE_VERSION, 'piecework.mjs');
}

/** Put the CLI on the head (see toolOnHead), logged in as the launching user. */
async function toolToHead(options: LaunchOptions, address: string): Promise<void> {
  const head = sftpHead(address);
  const ssh = await connectToHead(head, headLogin(options), 'copy piecework');
  try {
    const onUpload = (info: { remotePath: string; bytes: number }): void => options.onEvent?.({ type: 'host:uploading', host: formatHost(head), ...info });
    await uploadTool(ssh, options.localTool ?? bundledCliPath(), PACKAGE_VERSION, onUpload, toolOnHead(address));
  } finally {
    ssh.dispose();
  }
}

/** The job key is the default for cloud instances that reach the head with no key of the user's (sshfs, or SFTP workers). */
function wantsJobKey(provider: ProviderName, options: LaunchOptions): boolean {
  const keyless = (options.mount !== undefined && options.mount.identity === undefined) || (options.sftp !== undefined && options.sftp.identity === undefined);
  return options.jobKey ?? (provider !== 'slurm' && keyless);
}

function validateJobKey(provider: ProviderName | undefined, options: LaunchOptions): void {
  if (options.jobKey !== true) return;
  if (provider === 'slurm') {
    throw new UsageError(
      '--job-key does not apply to --provider slurm',
      options.sftp ? "the nodes reach the head with their own key: their ~/.ssh/id_*, or --head-identity PATH (a key file on the nodes)" : "Slurm tasks see the job through the cluster's shared file system: no key reaches a head",
    );
  }
  if (!options.mount && !options.sftp) throw new UsageError('--job-key needs --mount (or --via sftp): it is the key the workers reach the head with');
  if (options.mount?.identity !== undefined || options.sftp?.identity !== undefined) {
    throw new UsageError(`--job-key and --${options.mount ? 'mount' : 'head'}-identity do not go together`, 'the job key is the identity: leave the other out');
  }
}

/** The head as --mount names it: where the job key goes, reached as the hosts reach it. */
function mountHead(mount: LaunchMountOptions): KeyHead {
  const source = parseMountSource(mount.source);
  if (!source) throw new UsageError(`--mount ${mount.source}: expected [user@]host:/path`);
  const authorizedKeys = headAuthorizedKeys();
  return { ...(source.user ? { user: source.user } : {}), host: source.host, port: mount.port ?? 22, ...(authorizedKeys ? { authorizedKeys } : {}) };
}

/** Launch logs in to the head as it does to the hosts: the same keys, the same known_hosts. */
function headLogin(options: LaunchOptions): HeadLogin {
  return {
    ...(options.identityFiles ? { identityFiles: options.identityFiles } : {}),
    ...(options.agent !== undefined ? { agent: options.agent } : {}),
    ...(options.knownHostsFiles ? { knownHostsFiles: options.knownHostsFiles } : {}),
    ...(options.acceptNewHostKeys !== undefined ? { acceptNewHostKeys: options.acceptNewHostKeys } : {}),
    ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
  };
}

function revokeFailure(plan: ProviderPlan | undefined, result: ApplyResult | undefined, revoked: RevokeOutcome): PieceworkError {
  const done = !plan || !result ? '' : result.ids.length ? `deleted ${result.ids.length} instance(s) of ${plan.jobTag}, but ` : `nothing of ${plan.jobTag} was left to delete, but `;
  const [first] = revoked.failed;
  const heads = revoked.failed.map((f) => f.head).join(', ');
  return new PieceworkError(`${done}could not revoke the job key ${revoked.comment} on ${heads}: ${first?.message ?? ''}`, {
    hint: `${first?.hint ? `${first.hint}. ` : ''}The key still opens SFTP there: run this --delete again once the head is reachable (the key stays in ${revoked.file} until then), or remove the line ending in ${revoked.comment} from its authorized_keys by hand`,
  });
}
