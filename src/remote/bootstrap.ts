/**
 * The typed side of templates/bootstrap.sh: settings in, rendered script out; the script's
 * output lines and exit statuses back into typed results. Used over SSH (launch.ts) and embedded
 * in the cloud startup scripts and the Slurm array script (providers/).
 */
import { JobLayout } from '../core/store/layout.js';
import { quoteArgv } from './quote.js';
import { renderTemplate, type TemplateValues } from './templates.js';

/** Oldest node piecework runs on (package.json `engines`). */
export const nodeMinimum = '20.19';

/** Exit statuses of bootstrap.sh (documented in its header). */
export const BootstrapExit = {
  ok: 0,
  badValues: 2,
  noNode: 10,
  mountFailed: 11,
  noJob: 12,
  workerDied: 13,
  toolMissing: 14,
  missingProgram: 15,
  noWorkingDirectory: 16,
} as const;

export interface MountSpec {
  /** `[user@]head:/path`, as given to sshfs. */
  source: string;
  /** Mount point on the host. */
  at: string;
  port?: number;
  /** Key file for sshfs, as a path on the host. */
  identity?: string;
  /** The head's known_hosts lines, checked besides the host's own ~/.ssh/known_hosts. */
  knownHostsLines?: string[];
  /** StrictHostKeyChecking for the head: never "no". */
  strict: 'yes' | 'accept-new';
  /** sshfs cache options; default `dir_cache=no` (sshfs otherwise caches listings and mtimes 20 s). */
  cacheOptions?: string;
}

/** How a host reaches the job over SFTP instead of a folder it sees (launch --via sftp). */
export interface SftpSpec {
  /** Key file on the host for the head (default: the host's ~/.ssh/id_*). */
  identity?: string;
  /** The head's known_hosts lines, from the launcher: the workers check the head's key against them. */
  knownHostsLines?: string[];
  /**
   * Where a host that launch does not log in to (a cloud instance, a Slurm node) fetches the CLI
   * when `tool` is missing: the head as sftp reaches it, and the CLI's path there (where launch
   * uploaded it).
   */
  toolFrom?: { login: string; port: number; path: string };
}

export interface BootstrapSettings {
  action: 'check' | 'start' | 'run';
  /** The job folder as the host sees it (absolute), or its sftp:// address with `sftp`. */
  job: string;
  /** The workers reach the job over SFTP (`job` is an sftp:// address): nothing is mounted. */
  sftp?: SftpSpec;
  /** The bundled CLI on the host (absolute, or relative to the host's home). */
  tool?: string;
  command?: readonly string[];
  lanes?: number;
  node?: string;
  mount?: MountSpec;
  graceSeconds?: number;
  /** The command's working directory on the host (absolute). */
  cwd?: string;
  /** Environment for the worker and its commands, in order. */
  env?: readonly (readonly [string, string])[];
  /** Options for `piecework work` before its `--` (e.g. --warm). */
  workOptions?: readonly string[];
  /**
   * When `run` ends: `poweroff` (cloud: stop paying once this worker has no more work), or
   * `delete-gce` (ask Compute Engine to delete this instance, then power off if it may not).
   */
  whenDone?: 'poweroff' | 'delete-gce';
}

export function bootstrapValues(settings: BootstrapSettings): TemplateValues {
  // The job's paths come from the one seam that knows the layout (core/job-folder.ts).
  const layout = new JobLayout(settings.job);
  const mount = settings.mount;
  const sftp = settings.sftp;
  return {
    PW_ACTION: settings.action,
    PW_VIA: sftp ? 'sftp' : undefined,
    PW_SFTP_IDENTITY: sftp?.identity,
    PW_SFTP_KNOWN_HOSTS_LINES: sftp?.knownHostsLines?.length ? sftp.knownHostsLines.join('\n') : undefined,
    PW_TOOL_SFTP_LOGIN: sftp?.toolFrom?.login,
    PW_TOOL_SFTP_PORT: sftp?.toolFrom?.port,
    PW_TOOL_SFTP_PATH: sftp?.toolFrom?.path,
    // An sftp:// address is no path: it goes as given (the worker's argument).
    PW_JOB: sftp ? settings.job : layout.root,
    PW_JOB_MARKER: layout.jobFile,
    PW_LOG_DIR: layout.logsDir,
    PW_TOOL: settings.tool,
    PW_COMMAND: settings.command === undefined ? undefined : quoteArgv(settings.command),
    PW_LANES: settings.lanes,
    PW_NODE: settings.node,
    PW_NODE_MIN: nodeMinimum,
    PW_MOUNT_SOURCE: mount?.source,
    PW_MOUNT_AT: mount?.at,
    PW_MOUNT_PORT: mount?.port,
    PW_MOUNT_IDENTITY: mount?.identity,
    PW_MOUNT_KNOWN_HOSTS_LINES: mount?.knownHostsLines?.length ? mount.knownHostsLines.join('\n') : undefined,
    PW_MOUNT_STRICT: mount?.strict,
    PW_MOUNT_OPTIONS: mount?.cacheOptions,
    PW_GRACE: settings.graceSeconds,
    PW_CWD: settings.cwd,
    // NAME=value words, quoted like the command: the script exports each one.
    PW_ENV: settings.env?.length ? quoteArgv(settings.env.map(([name, value]) => `${name}=${value}`)) : undefined,
    PW_WORK_OPTIONS: settings.workOptions?.length ? quoteArgv(settings.workOptions) : undefined,
    PW_WHEN_DONE: settings.whenDone,
  };
}

/** `compact`: without comments, for a copy embedded in a cloud startup script or a Slurm script. */
export function renderBootstrap(settings: BootstrapSettings, options: { compact?: boolean } = {}): Promise<string> {
  return renderTemplate('bootstrap.sh', bootstrapValues(settings), options);
}

/** The `piecework-bootstrap: key=value` lines of the script's stdout. */
export function parseBootstrapOutput(stdout: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const match = /^piecework-bootstrap: ([a-z_]+)=(.*)$/.exec(line.trimEnd());
    if (match) values[match[1] as string] = match[2] as string;
  }
  return values;
}

/** The script's own error message (its last `error:` line), else the last line of stderr. */
export function bootstrapErrorMessage(stderr: string): string | undefined {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const own = lines.filter((l) => l.startsWith('piecework-bootstrap: error: ')).pop();
  return own ? own.slice('piecework-bootstrap: error: '.length) : lines.pop();
}

/**
 * Parse `--mount [user@]head:/path` into the head's address (for its known_hosts lines) and the
 * exported path (to map local job paths onto the mount point). A relative path (or none) is
 * relative to the user's home on the head, as with sshfs.
 */
export function parseMountSource(source: string): { user?: string; host: string; path: string } | undefined {
  const match = /^(?:([^@\s/]+)@)?(\[[^\]]+\]|[^:\s/@[\]]+):(\S.*|)$/.exec(source);
  if (!match) return undefined;
  const host = (match[2] as string).replace(/^\[(.*)\]$/, '$1');
  const result: { user?: string; host: string; path: string } = { host, path: match[3] as string };
  if (match[1]) result.user = match[1];
  return result;
}
