/**
 * The shared folder seen from both ends: which path a host uses for what this machine calls the
 * job, what the hosts need to mount it and trust its server, and where the CLI goes when it runs
 * from the share instead of being copied to every host.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, rename, rm, stat } from 'node:fs/promises';
import { UsageError } from '../core/errors.js';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { PieceworkError, errorCode } from '../core/errors.js';
import { JobLayout } from '../core/store/layout.js';
import { PACKAGE_VERSION } from '../core/version.js';
import { parseMountSource, type MountSpec } from './bootstrap.js';
import { entriesForHost, formatKnownHostsEntry, readKnownHosts } from './known-hosts.js';
import { packageRoot } from './templates.js';

export interface LaunchMountOptions {
  /** `[user@]head:/path`, as given to sshfs. */
  source: string;
  /** Mount point on each host. */
  at: string;
  port?: number;
  /** SSH hosts: a key file on the host. Cloud: a local key file whose content goes to the instances. */
  identity?: string;
  /** sshfs cache options; default `dir_cache=no`. */
  cacheOptions?: string;
}

/**
 * The job folder as the hosts see it. With `--mount head:/srv/share --at /mnt/x`, a job under
 * /srv/share here (this machine is the head) is under /mnt/x there; a job under /mnt/x here (this
 * machine mounts it the same way) keeps its path; otherwise the path is taken to be the same on
 * every host (NFS, a cluster file system). `--remote-job` overrides all of this.
 */
export function remoteJobPath(localJob: string, mount?: Pick<LaunchMountOptions, 'source' | 'at'>): string {
  const job = resolve(localJob);
  const exported = mount ? parseMountSource(mount.source)?.path : undefined;
  if (mount && exported && isAbsolute(exported)) {
    const rel = relativeInside(exported, job);
    if (rel !== undefined) return rel === '' ? mount.at : join(mount.at, rel);
  }
  return job;
}

/**
 * The command's working directory on the hosts, and the same folder here when this machine sees
 * it: `--cwd` (as the hosts see it) if given; else the folder launch runs from, mapped like the
 * job (with `--mount`, only when it is inside the share: the hosts have nothing else of ours;
 * without, the same path, as sbatch does); else the job folder. A relative command (`./score.sh`)
 * is refused before anything starts when it cannot resolve there.
 */
export async function workingDirectory(options: {
  job: string;
  command: readonly string[];
  mount?: Pick<LaunchMountOptions, 'source' | 'at'>;
  cwd?: string;
  launchDir?: string;
  remoteJob: string;
}): Promise<string> {
  const here = resolve(options.launchDir ?? process.cwd());
  let hostsDir: string;
  let localDir: string | undefined;
  if (options.cwd !== undefined) {
    if (!isAbsolute(options.cwd)) throw new UsageError(`--cwd ${options.cwd}: give the working directory's absolute path on the hosts`);
    hostsDir = options.cwd;
    for (const candidate of localPathsOf(options.cwd, options.mount)) {
      if (await isDirectory(candidate)) {
        localDir = candidate;
        break;
      }
    }
  } else {
    const mapped = options.mount ? insideShare(here, options.mount) : here;
    hostsDir = mapped ?? options.remoteJob;
    localDir = mapped === undefined ? undefined : here;
    const program = options.command[0] ?? '';
    if (mapped === undefined && isRelativePath(program)) {
      throw new UsageError(
        `${program} is a relative path, but launch runs from ${here}, outside the shared folder, so the hosts have no such folder to run it from`,
        'cd into the shared folder first, give --cwd DIR (the folder as the hosts see it), or give the command as an absolute path',
      );
    }
  }
  const program = options.command[0] ?? '';
  if (isRelativePath(program) && localDir !== undefined && (await isDirectory(localDir)) && !(await stat(join(localDir, program)).catch(() => undefined))) {
    throw new UsageError(`${program} does not exist in ${localDir} (the working directory, ${hostsDir} on the hosts)`, 'run launch from the folder that holds it, or give --cwd DIR');
  }
  return hostsDir;
}

/** `./x`, `bin/x`, `../x`: resolved against the working directory (a bare name is looked up in PATH). */
function isRelativePath(program: string): boolean {
  return program.includes('/') && !isAbsolute(program);
}

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

/** A local folder as the hosts see it, if it is inside the share (exported path or mount point). */
function insideShare(local: string, mount: Pick<LaunchMountOptions, 'source' | 'at'>): string | undefined {
  const exported = parseMountSource(mount.source)?.path;
  if (exported && isAbsolute(exported)) {
    const rel = relativeInside(exported, local);
    if (rel !== undefined) return rel === '' ? mount.at : join(mount.at, rel);
  }
  return relativeInside(mount.at, local) !== undefined ? local : undefined;
}

/** Where this machine may see a hosts' path: under the exported folder (the head) or the mount point. */
function localPathsOf(hostsPath: string, mount?: Pick<LaunchMountOptions, 'source' | 'at'>): string[] {
  if (!mount) return [hostsPath];
  const rel = relativeInside(mount.at, hostsPath);
  if (rel === undefined) return [];
  const exported = parseMountSource(mount.source)?.path;
  return exported && isAbsolute(exported) ? [rel === '' ? exported : join(exported, rel), hostsPath] : [hostsPath];
}

/** The shared folder's root on this machine: where `toolOnMount: true` puts the CLI. */
function localShareRoot(localJob: string, mount?: LaunchMountOptions): string {
  const job = resolve(localJob);
  const exported = mount ? parseMountSource(mount.source)?.path : undefined;
  if (mount && exported && isAbsolute(exported) && relativeInside(exported, job) !== undefined) return exported;
  if (mount && relativeInside(mount.at, job) !== undefined) return mount.at;
  return dirname(job);
}

function relativeInside(parent: string, child: string): string | undefined {
  const rel = relative(resolve(parent), child);
  if (rel === '') return '';
  if (rel.startsWith('..') || isAbsolute(rel)) return undefined;
  return rel.split(sep).join('/');
}

/** The head's key lines from our known_hosts go along, so the hosts check the head strictly. */
export async function mountSpec(mount: LaunchMountOptions, knownHostsFiles: readonly string[], acceptNew: boolean): Promise<MountSpec> {
  const head = parseMountSource(mount.source);
  const lines = head ? entriesForHost(await readKnownHosts(knownHostsFiles), head.host, mount.port ?? 22).map(formatKnownHostsEntry) : [];
  const spec: MountSpec = { source: mount.source, at: mount.at, strict: lines.length === 0 && acceptNew ? 'accept-new' : 'yes' };
  if (lines.length > 0) spec.knownHostsLines = lines;
  if (mount.port !== undefined) spec.port = mount.port;
  if (mount.identity !== undefined) spec.identity = mount.identity;
  if (mount.cacheOptions !== undefined) spec.cacheOptions = mount.cacheOptions;
  return spec;
}

/** The single bundled CLI that `make build` writes. */
export function bundledCliPath(): string {
  return join(packageRoot(), 'dist', 'piecework.mjs');
}

/**
 * Where the hosts find the CLI: a path on the share (`toolOnMount`), copying this machine's
 * bundle there first when asked (`true`); undefined means "upload it to each host".
 */
export async function cliOnHosts(
  options: { job: string; mount?: LaunchMountOptions; toolOnMount?: string | true; localTool: string; onCopied?: (path: string) => void },
  act: boolean,
): Promise<string | undefined> {
  const local = options.localTool;
  if (typeof options.toolOnMount === 'string') return options.toolOnMount;
  if (act) await requireBundle(local);
  if (options.toolOnMount !== true) return undefined;
  // Copying needs the share mounted here: never write into a bare mount point.
  if (act && !(await stat(new JobLayout(options.job).jobFile).catch(() => undefined))) {
    throw new PieceworkError(`cannot copy piecework onto the share: no job at ${resolve(options.job)} on this machine`, {
      hint: 'run launch where the shared folder is visible, or copy dist/piecework.mjs onto it yourself and pass --tool-on-mount PATH (as the hosts see it)',
    });
  }
  const root = localShareRoot(options.job, options.mount);
  const target = join(root, '.piecework', PACKAGE_VERSION, 'piecework.mjs');
  if (act && (await copyIfDifferent(local, target))) options.onCopied?.(target);
  return remoteJobPath(target, options.mount);
}

async function requireBundle(local: string): Promise<void> {
  try {
    await stat(local);
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
    throw new PieceworkError(`the bundled CLI ${local} does not exist`, {
      hint: 'run `make build` first, or put a copy on the shared folder and pass --tool-on-mount PATH',
    });
  }
}

async function copyIfDifferent(from: string, to: string): Promise<boolean> {
  const [source, existing] = await Promise.all([stat(from), stat(to).catch(() => undefined)]);
  if (existing?.size === source.size) return false;
  await mkdir(dirname(to), { recursive: true });
  // Temporary name + rename: a host starting meanwhile never runs half a file.
  const temporary = `${to}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await copyFile(from, temporary);
    await rename(temporary, to);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  return true;
}
