/**
 * The one seam for the coordination medium: every path inside a job folder is made here, and
 * nothing else concatenates job paths. The layout is normative (DESIGN.md, "The job folder"):
 * commands on other hosts, possibly at other versions, read and write exactly these names.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';

export const PROTOCOL_VERSION = 2;

/** Chunk numbers are zero-padded to at least this width so that `ls` sorts them. */
export const MIN_CHUNK_WIDTH = 6;

export class JobLayout {
  readonly root: string;
  readonly jobFile: string;
  readonly chunksDir: string;
  readonly outDir: string;
  readonly tmpDir: string;
  readonly locksDir: string;
  readonly failedDir: string;
  readonly workersDir: string;
  readonly logsDir: string;
  readonly stopFile: string;

  constructor(jobDir: string) {
    this.root = path.resolve(jobDir);
    this.jobFile = path.join(this.root, 'job.json');
    this.chunksDir = path.join(this.root, 'chunks');
    this.outDir = path.join(this.root, 'out');
    this.tmpDir = path.join(this.root, '.tmp');
    this.locksDir = path.join(this.root, 'locks');
    this.failedDir = path.join(this.root, 'failed');
    this.workersDir = path.join(this.root, 'workers');
    this.logsDir = path.join(this.root, 'logs');
    this.stopFile = path.join(this.root, 'STOP');
  }

  /** Every folder a job has; split creates them all so workers never race to make them. */
  get folders(): string[] {
    return [this.chunksDir, this.outDir, this.tmpDir, this.locksDir, this.failedDir, this.workersDir, this.logsDir];
  }

  chunkPath(chunk: string): string {
    return path.join(this.chunksDir, chunk);
  }

  /** `ext` is the optional output extension, including its dot (".json"). */
  outputPath(chunk: string, ext = ''): string {
    return path.join(this.outDir, chunk + ext);
  }

  /** The claim is a directory (proper-lockfile's mkdir lock); its owner record sits beside it. */
  lockPath(chunk: string): string {
    return path.join(this.locksDir, chunk);
  }

  ownerPath(chunk: string): string {
    return path.join(this.locksDir, chunk + OWNER_SUFFIX);
  }

  failurePath(chunk: string): string {
    return path.join(this.failedDir, chunk + FAILURE_SUFFIX);
  }

  heartbeatPath(workerId: string): string {
    return path.join(this.workersDir, workerId + HEARTBEAT_SUFFIX);
  }

  logPath(workerId: string): string {
    return path.join(this.logsDir, workerId + '.log');
  }

  /**
   * `.tmp/<name>.<host>.<pid>.<random>[<ext>]`: unique per attempt, on the same file system as
   * out/ so that the commit is a rename. The extension is kept for commands that infer a format
   * from the output name.
   */
  tempPath(label: string, ext = '', folder = this.tmpDir): string {
    const flat = label.replaceAll('/', '~');
    return path.join(folder, `${flat}.${HOST}.${process.pid}.${randomBytes(4).toString('hex')}${ext}`);
  }

  /**
   * `.tmp/<host>.<pid>.<lane>/`: where one lane of one worker writes its temp outputs. Creating a
   * file holds its folder's lock in the kernel for the whole create — several round trips on a
   * network mount — so lanes sharing one folder would queue behind each other.
   */
  laneTempDir(workerId: string, lane: number): string {
    return path.join(this.tmpDir, `${workerId}.${lane}`);
  }
}

export const OWNER_SUFFIX = '.owner';
export const FAILURE_SUFFIX = '.json';
export const HEARTBEAT_SUFFIX = '.json';

/** This host's name as it appears in file names: no separators, no dots (they delimit fields). */
export const HOST = hostname().replace(/[^A-Za-z0-9_-]/g, '_') || 'host';

export function workerIdFor(host: string, pid: number): string {
  return `${host}.${pid}`;
}

/** The worker of a lane's temp folder name (`<host>.<pid>.<lane>`), or undefined. */
export function parseLaneTempDir(name: string): { host: string; pid: number } | undefined {
  const match = /^([^./]+)\.(\d+)\.\d+$/.exec(name);
  return match ? { host: match[1]!, pid: Number(match[2]) } : undefined;
}

export function formatChunkNumber(index: number, width: number): string {
  return String(index).padStart(width, '0');
}

export function chunkWidthFor(count: number): number {
  return Math.max(MIN_CHUNK_WIDTH, String(Math.max(count - 1, 0)).length);
}

/** A group folder name made from user text (an input file name or --group): safe and stable. */
export function groupNameFrom(text: string): string {
  const cleaned = text.replace(/[^A-Za-z0-9_-]+/g, '_').replace(/^_+|_+$/g, '');
  return cleaned || 'group';
}

/**
 * Chunk names are relative paths whose last segment is digits ("000123", "layer03/000123").
 * An output is the chunk's name plus an optional extension, so the chunk an output belongs to
 * is its path up to the first dot of the last segment.
 */
export function chunkNameOfOutput(relativeOutput: string): string | undefined {
  const slash = relativeOutput.lastIndexOf('/');
  const base = relativeOutput.slice(slash + 1);
  const dot = base.indexOf('.');
  const stem = dot === -1 ? base : base.slice(0, dot);
  if (!/^\d+$/.test(stem)) return undefined;
  return relativeOutput.slice(0, slash + 1) + stem;
}

export function isChunkName(relative: string): boolean {
  const base = relative.slice(relative.lastIndexOf('/') + 1);
  return /^\d+$/.test(base);
}

const tempName = /^([^.]+)\.([^.]+)\.(\d+)\.[0-9a-f]{8}(?:\..*)?$/;

/** The chunk and worker encoded in a temp file name, for verify's leftover report and cleanup. */
export function parseTempName(fileName: string): { chunk: string; host: string; pid: number } | undefined {
  const match = tempName.exec(fileName.slice(fileName.lastIndexOf('/') + 1));
  if (!match) return undefined;
  return { chunk: match[1]!.replaceAll('~', '/'), host: match[2]!, pid: Number(match[3]) };
}

/**
 * Make a group folder below one of the job's folders (out/layer03, locks/layer03…) without ever
 * making the job folder itself: if the mount dropped, `mkdir -p` would quietly rebuild a job
 * skeleton in the bare mountpoint (invariant 6). Folders are made one level at a time.
 */
export async function makeGroupFolder(jobFolder: string, target: string): Promise<void> {
  const relative = path.relative(jobFolder, target);
  if (relative === '' || relative.startsWith('..')) return;
  let current = jobFolder;
  for (const segment of relative.split(path.sep)) {
    current = path.join(current, segment);
    try {
      await fs.mkdir(current);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
}
