/**
 * The job store over a folder this host can open: a local disk or any mount (sshfs, NFS). The
 * kernel's file system is the protocol: mkdir claims, rename commits, the server stamps mtimes.
 * Commands get the real paths (no copies), so a worker on a mount costs what the bare loop costs.
 */
import { promises as fs } from 'node:fs';
import type { Dirent } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { errorCode, isMountGone, JobMissingError, PieceworkError } from '../errors.js';
import { isOnLocalDisk } from '../mounts.js';
import { fsyncDir, writeFileAtomic } from './atomic-write.js';
import { inlineCalls, threadPoolCalls, type FileCalls } from './file-calls.js';
import type { Area, ClaimOwner, Claims, ClaimSettings, CommitOutcome, EntryInfo, JobStore, LaneSpace, ListedEntry, PendingChunk, PendingOutput, StagedInput } from './job-store.js';
import { JOB_ENTRY_NAMES, JobLayout } from './layout.js';
import { measureMountClock, type MountClock } from './mount-clock.js';

export class PosixJobStore implements JobStore {
  readonly layout: JobLayout;
  readonly location: string;
  /** Group folders known to exist, so that a missing one costs one failed call, once. */
  readonly #madeFolders = new Set<string>();
  /** On a local disk, the per-chunk calls run inline; on a mount, in the thread pool (file-calls.ts). */
  readonly #onLocalDisk: boolean;
  readonly #calls: FileCalls;

  constructor(jobDir: string) {
    this.layout = new JobLayout(jobDir);
    this.location = this.layout.root;
    this.#onLocalDisk = isOnLocalDisk(this.location);
    this.#calls = this.#onLocalDisk ? inlineCalls : threadPoolCalls;
  }

  #path(area: Area, name: string): string {
    const dir = this.layout.areaDir(area);
    return name === '' ? dir : path.join(dir, name);
  }

  async readMarker(): Promise<string> {
    try {
      return await fs.readFile(this.layout.jobFile, 'utf8');
    } catch (error) {
      if (isMountGone(error)) throw mountGone(this.location, error);
      const code = errorCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new JobMissingError(this.location, 'job.json not found');
      if (code === 'EACCES' || code === 'EPERM') throw noAccess(this.layout.jobFile, error);
      if (code === 'EISDIR') throw new JobMissingError(this.location, 'job.json is a folder');
      throw error;
    }
  }

  async writeMarker(text: string): Promise<void> {
    await this.#guard(() => writeFileAtomic(this.layout.jobFile, text, { tempDir: this.layout.tmpDir, durable: true }));
  }

  async markerInfo(): Promise<EntryInfo | undefined> {
    return this.#stat(this.layout.jobFile);
  }

  async missingFolderAbove(file: string): Promise<string | undefined> {
    let missing: string | undefined;
    for (let folder = path.dirname(file); folder.startsWith(this.layout.root + path.sep); folder = path.dirname(folder)) {
      const found = await fs.stat(folder).then(
        () => true,
        (error: unknown) => errorCode(error) !== 'ENOENT',
      );
      if (found) break;
      missing = folder;
    }
    return missing;
  }

  async read(area: Area, name: string): Promise<Buffer | undefined> {
    try {
      return await this.#calls.readFileOrMissing(this.#path(area, name));
    } catch (error) {
      if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return undefined;
      throw this.#translate(error);
    }
  }

  async readStream(area: Area, name: string): Promise<Readable | undefined> {
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(this.#path(area, name), 'r');
    } catch (error) {
      if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return undefined;
      throw this.#translate(error);
    }
    return handle.createReadStream({ highWaterMark: 4 * 1024 * 1024 });
  }

  async readPrefix(area: Area, name: string, bytes: number): Promise<Buffer | undefined> {
    let handle: fs.FileHandle | undefined;
    try {
      handle = await fs.open(this.#path(area, name), 'r');
      const buffer = Buffer.alloc(bytes);
      const { bytesRead } = await handle.read(buffer, 0, bytes, 0);
      return buffer.subarray(0, bytesRead);
    } catch (error) {
      if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return undefined;
      throw this.#translate(error);
    } finally {
      await handle?.close();
    }
  }

  async write(area: Area, name: string, data: string | Uint8Array, options: { durable?: boolean } = {}): Promise<void> {
    const target = this.#path(area, name);
    await this.#withGroupFolder(area, name, () => writeFileAtomic(target, data, { tempDir: this.layout.tmpDir, durable: options.durable }));
  }

  async append(area: Area, name: string, text: string): Promise<void> {
    await this.#withGroupFolder(area, name, () => fs.appendFile(this.#path(area, name), text));
  }

  async lookup(area: Area, name: string): Promise<EntryInfo | undefined> {
    return this.#stat(this.#path(area, name));
  }

  async list(area: Area): Promise<ListedEntry[]> {
    const root = this.layout.areaDir(area);
    const found: ListedEntry[] = [];
    const walk = async (relative: string): Promise<void> => {
      let entries: Dirent[];
      try {
        entries = await fs.readdir(relative ? `${root}/${relative}` : root, { withFileTypes: true });
      } catch (error) {
        if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return;
        throw this.#translate(error);
      }
      const subfolders: string[] = [];
      for (const entry of entries) {
        const name = relative ? `${relative}/${entry.name}` : entry.name;
        const directory = entry.isDirectory();
        found.push({ name, directory });
        // The top of the job is never walked: its areas are listed on their own.
        if (directory && area !== 'top') subfolders.push(name);
      }
      for (const sub of subfolders) await walk(sub);
    };
    await walk('');
    return found;
  }

  async remove(area: Area, name: string): Promise<boolean> {
    try {
      await fs.unlink(this.#path(area, name));
      return true;
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return false;
      throw this.#translate(error);
    }
  }

  async removeFolder(area: Area, name: string): Promise<boolean> {
    try {
      await fs.rmdir(this.#path(area, name));
      return true;
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT' || code === 'ENOTEMPTY' || code === 'EEXIST') return false;
      throw this.#translate(error);
    }
  }

  async topLevel(): Promise<string[] | undefined> {
    try {
      return await fs.readdir(this.layout.root);
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOENT') return undefined;
      if (code === 'ENOTDIR') throw new PieceworkError(`${this.location} exists and is not a folder`, { exitStatus: 2 });
      throw this.#translate(error);
    }
  }

  async createJobFolders(): Promise<void> {
    await this.#guard(async () => {
      await fs.mkdir(this.layout.root, { recursive: true });
      for (const dir of this.layout.folders) await fs.mkdir(dir, { recursive: true });
    });
  }

  async removeJobEntries(): Promise<void> {
    await this.#guard(async () => {
      // The marker first (first in the list): a job without job.json is no job, whatever is left
      // if this is cut short.
      for (const name of JOB_ENTRY_NAMES) await fs.rm(path.join(this.layout.root, name), { recursive: true, force: true });
    });
  }

  measureClock(label: string): Promise<MountClock> {
    return this.#guard(() => measureMountClock([this.layout.workersDir, this.layout.logsDir, this.layout.tmpDir], label));
  }

  async claims(settings: ClaimSettings, clock: MountClock, owner: ClaimOwner): Promise<Claims> {
    // Loaded only by workers: status, verify and merge never claim (nor load proper-lockfile).
    const { ClaimBook } = await import('./posix-claims.js');
    // Asked again: a store opened before its job folder existed could not tell (realpath fails).
    const onLocalDisk = this.#onLocalDisk || isOnLocalDisk(this.location);
    return new ClaimBook(this.layout, settings, clock, owner, (parent) => this.#makeGroupFolders('locks', parent), onLocalDisk);
  }

  newChunkFile(): Promise<PendingChunk> {
    const temp = this.layout.tempPath('split');
    return Promise.resolve({
      path: temp,
      publish: (chunk) => this.#withGroupFolder('chunks', chunk, () => fs.rename(temp, this.layout.chunkPath(chunk))),
      discard: () => fs.rm(temp, { force: true }),
    });
  }

  stageInput(chunk: string): Promise<StagedInput> {
    // The chunk is read where it is: a copy would cost what the command's own read costs.
    return Promise.resolve({ path: this.layout.chunkPath(chunk), onLocalDisk: this.#onLocalDisk, release: () => Promise.resolve() });
  }

  async openLaneSpace(workerId: string, lane: number): Promise<LaneSpace> {
    const dir = this.layout.laneTempDir(workerId, lane);
    const make = async () => {
      try {
        await fs.mkdir(dir);
      } catch (error) {
        if (errorCode(error) !== 'EEXIST') throw this.#translate(error);
      }
    };
    await make();
    return {
      newOutput: (chunk, ext) => this.#pendingOutput(this.layout.tempPath(chunk, ext, dir), chunk + ext),
      recreate: make,
      close: async () => {
        await fs.rmdir(dir).catch(() => {});
      },
    };
  }

  #pendingOutput(temp: string, output: string): PendingOutput {
    const target = path.join(this.layout.outDir, output);
    return {
      path: temp,
      onLocalDisk: this.#onLocalDisk,
      commit: async (options = {}) => {
        // lstat, not stat: a command that made a folder or a link at {out} has written no output,
        // and rename would happily move a folder into out/.
        let info;
        try {
          info = await this.#calls.lstat(temp);
        } catch (error) {
          if (errorCode(error) === 'ENOENT') return 'missing' satisfies CommitOutcome;
          throw this.#translate(error);
        }
        if (!info.isFile()) return 'not-a-file';
        if (options.fsync) {
          const handle = await fs.open(temp, 'r+');
          try {
            await handle.sync();
          } finally {
            await handle.close();
          }
        }
        await this.#withGroupFolder('out', output, () => this.#calls.rename(temp, target));
        if (options.fsync) await fsyncDir(path.dirname(target));
        return 'committed';
      },
      discard: async () => {
        await fs.rm(temp, { force: true, recursive: true }).catch(() => {});
      },
    };
  }

  async freeBytes(): Promise<number | undefined> {
    try {
      const stats = await fs.statfs(this.layout.tmpDir);
      return stats.bavail * stats.bsize;
    } catch {
      return undefined;
    }
  }

  localPath(area: Area, name: string): string {
    return this.#path(area, name);
  }

  async close(): Promise<void> {}

  async #stat(file: string): Promise<EntryInfo | undefined> {
    try {
      const stat = await this.#calls.statOrMissing(file);
      return stat && { size: stat.size, mtimeMs: stat.mtimeMs, directory: stat.isDirectory() };
    } catch (error) {
      if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') return undefined;
      throw this.#translate(error);
    }
  }

  /** Run an operation on a name whose group folder may not exist yet; make it and try again. */
  async #withGroupFolder<T>(area: Area, name: string, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      const slash = name.lastIndexOf('/');
      if (errorCode(error) !== 'ENOENT' || slash === -1) throw this.#translate(error);
      // Already made — perhaps by a concurrent call, after this one failed: one more try tells.
      if (!this.#madeFolders.has(`${area}/${name.slice(0, slash)}`)) await this.#makeGroupFolders(area, name.slice(0, slash));
      return this.#guard(operation);
    }
  }

  /**
   * Make a group folder below an area (out/layer03…) one level at a time and never the area or
   * the job folder itself: if the mount dropped, `mkdir -p` would quietly rebuild a job skeleton
   * in the bare mountpoint (invariant 6).
   */
  async #makeGroupFolders(area: Area, group: string): Promise<void> {
    let current = this.layout.areaDir(area);
    for (const segment of group.split('/')) {
      current = path.join(current, segment);
      try {
        await fs.mkdir(current);
      } catch (error) {
        if (errorCode(error) !== 'EEXIST') throw this.#translate(error);
      }
    }
    this.#madeFolders.add(`${area}/${group}`);
  }

  async #guard<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      throw this.#translate(error);
    }
  }

  /** The file system's errors, in the words a user needs; others pass through unchanged. */
  #translate(error: unknown): unknown {
    if (error instanceof PieceworkError) return error;
    if (isMountGone(error)) return mountGone(this.location, error);
    const code = errorCode(error);
    if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return noAccess(this.location, error);
    return error;
  }
}

function mountGone(location: string, error: unknown): JobMissingError {
  return new JobMissingError(location, `the file system answered ${errorCode(error)}: the mount looks gone`);
}

function noAccess(location: string, error: unknown): PieceworkError {
  const code = errorCode(error);
  const what = code === 'EROFS' ? 'is on a read-only file system' : 'is not writable (or readable) by this user';
  return new PieceworkError(`${location} ${what}: ${(error as Error).message}`, {
    hint: code === 'EROFS' ? 'run this where the job folder is mounted read-write' : 'check the owner and permissions of the job folder (ls -ld), or run as the user who made the job',
    cause: error,
  });
}
