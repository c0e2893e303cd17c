/**
 * The names of a job folder. The layout is normative (DESIGN.md, "The job folder"): commands on
 * other hosts, possibly at other versions, read and write exactly these names. Pure naming — the
 * stores do the I/O; the remote layer uses JobLayout to name paths as other hosts see them.
 */
import { randomHex } from '../random-hex.js';
import { hostname } from 'node:os';
import path from 'node:path';

/** 2: job.json names the chunk set (`groups`) and the output extension (`ext`). */
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

  /** The folder of an area (see job-store.ts). */
  areaDir(area: 'chunks' | 'out' | 'tmp' | 'locks' | 'failed' | 'workers' | 'logs' | 'top'): string {
    return AREA_DIRS[area](this);
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
    return path.join(folder, tempName(label, ext));
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

const AREA_DIRS = {
  chunks: (l: JobLayout) => l.chunksDir,
  out: (l: JobLayout) => l.outDir,
  tmp: (l: JobLayout) => l.tmpDir,
  locks: (l: JobLayout) => l.locksDir,
  failed: (l: JobLayout) => l.failedDir,
  workers: (l: JobLayout) => l.workersDir,
  logs: (l: JobLayout) => l.logsDir,
  top: (l: JobLayout) => l.root,
};

/** At the top of the job: when present, workers take no new chunk (`piecework stop`). */
export const STOP_FILE = 'STOP';

/** The folders at the top of every job (split makes them all). */
export const JOB_FOLDER_NAMES = ['chunks', 'out', '.tmp', 'locks', 'failed', 'workers', 'logs'];
/** Everything piecework puts at the top of a job — what `split --force` removes (REQUEUED: requeue-record.ts). */
export const JOB_ENTRY_NAMES = ['job.json', ...JOB_FOLDER_NAMES, STOP_FILE, 'REQUEUED'];
export const OWNER_SUFFIX = '.owner';
export const FAILURE_SUFFIX = '.json';
export const HEARTBEAT_SUFFIX = '.json';

/**
 * `logs/stderr/<chunk>`: the stderr tail of the attempt that made a chunk's output, written only
 * when it is not empty. Under logs/, which verify and merge never read as outputs.
 */
export function stderrLogName(chunk: string): string {
  return `stderr/${chunk}`;
}

/** This host's name as it appears in file names: no separators, no dots (they delimit fields). */
export const HOST = hostname().replace(/[^A-Za-z0-9_-]/g, '_') || 'host';

/** A temp file's name: `<label>.<host>.<pid>.<random>[<ext>]`, so its writer can be told. */
export function tempName(label: string, ext = ''): string {
  return `${label.replaceAll('/', '~')}.${HOST}.${process.pid}.${randomHex(4)}${ext}`;
}

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

const tempNamePattern = /^([^.]+)\.([^.]+)\.(\d+)\.[0-9a-f]{8}(?:\..*)?$/;
/** An atomic write's temp (store/atomic-write.ts): `.<name>.<host>.<pid>.<random>`. */
const writeTempPattern = /^\.(.+)\.([A-Za-z0-9_-]+)\.(\d+)\.[0-9a-f]{8}$/;

/** The writer of an atomic write's temp file, or undefined for names that say nothing of it. */
export function parseWriteTempName(fileName: string): { host: string; pid: number } | undefined {
  const match = writeTempPattern.exec(fileName);
  return match ? { host: match[2]!, pid: Number(match[3]) } : undefined;
}

/** The chunk and worker encoded in a temp file name, for verify's leftover report and cleanup. */
export function parseTempName(fileName: string): { chunk: string; host: string; pid: number } | undefined {
  const match = tempNamePattern.exec(fileName.slice(fileName.lastIndexOf('/') + 1));
  if (!match) return undefined;
  return { chunk: match[1]!.replaceAll('~', '/'), host: match[2]!, pid: Number(match[3]) };
}
