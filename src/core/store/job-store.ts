/**
 * The job store: the one seam through which every command reads, lists, claims, commits, releases
 * and deletes in a job folder (DESIGN.md, "One job store"; jug's `backends/base.py`). Nothing else
 * in src/ builds a job path or calls `fs` on one.
 *
 * The contract, which every store passes (test/store/contract.ts):
 * - Names are relative to one of the job's areas and use "/" between a group and a chunk
 *   ("layer03/000123"). A store makes group folders itself, one level at a time, and never makes
 *   the job folder: a dropped mount must not turn into a fresh, empty job (invariant 6).
 * - `write` replaces a file atomically (readers see the old or the new bytes, never a mix).
 * - `lookup` and `read` ask the server; `list` may answer from a cache (sshfs: 20 s) — a listing is
 *   a hint, never proof that something is missing (invariant 9).
 * - Times (`mtimeMs`) are the file server's, so that hosts whose clocks disagree still agree on
 *   a claim's age (invariant 5); `measureClock` relates them to this host's clock.
 * - Commands run on local paths: `stageInput` and `LaneSpace.newOutput` hand out paths a command
 *   can open, and `PendingOutput.commit` publishes the output by one atomic rename into out/.
 *   A store over a network protocol copies; a store over a mounted folder hands out the real path.
 * - Errors that mean the job's file system went away come out as `JobMissingError`.
 */
import type { Readable } from 'node:stream';
import type { MountClock } from './mount-clock.js';

/** The job's folders (DESIGN.md, "The job folder"); 'top' is the job folder itself (STOP). */
export type Area = 'chunks' | 'out' | 'tmp' | 'locks' | 'failed' | 'workers' | 'logs' | 'top';

export interface EntryInfo {
  size: number;
  /** Last modification, by the file server's clock. */
  mtimeMs: number;
  directory: boolean;
}

export interface ListedEntry {
  /** Relative to the area, "/" between folders. */
  name: string;
  directory: boolean;
}

export interface ClaimOwner {
  workerId: string;
  host: string;
  pid: number;
  /** This host's boot id: a claim of a pid that no longer runs on this very boot is dead at once. */
  bootId: string;
}

export interface ClaimSettings {
  staleMs: number;
  updateMs: number;
}

/** A claim held on one chunk. */
export interface Claim {
  readonly chunk: string;
  /** Set once another worker took the claim over (or it went away): the chunk is no longer ours. */
  readonly lost: Error | undefined;
  onLost(listener: (reason: Error) => void): void;
  /** Old enough that a takeover was possible; younger claims skip the pre-commit check. */
  readonly oldEnoughToCheck: boolean;
  /** Whether the claim is still ours (reads its owner record). */
  stillOurs(): Promise<boolean>;
  /** Give the claim up; never removes a claim that another worker has taken over. */
  release(): Promise<void>;
}

export interface Claims {
  /** Claim a chunk for `lane`: the claim, or undefined while another live worker holds it. */
  claim(chunk: string, lane: number): Promise<Claim | undefined>;
}

/** A chunk's input as a local file the command can read. */
export interface StagedInput {
  path: string;
  /** The file is on a local disk: opening it inline is cheaper than through libuv's threads. */
  readonly onLocalDisk?: boolean;
  release(): Promise<void>;
}

export type CommitOutcome =
  /** The output is in out/, complete. */
  | 'committed'
  /** No file where the output should be: the command wrote none, or someone removed it. */
  | 'missing'
  /** Something other than a regular file is there (the command made a folder at {out}). */
  | 'not-a-file'
  /**
   * The output was made, but the lane's folder in .tmp/ was removed meanwhile (a `verify
   * --requeue` took this worker for dead: it was frozen, or cut off): not committed, not the
   * chunk's fault. Only a store that writes outputs locally first can tell this apart from
   * 'missing'; the folder is made again for the lane's next chunks.
   */
  | 'lane-folder-removed';

/** A temp output: written by the command at `path`, published by `commit`. */
export interface PendingOutput {
  readonly path: string;
  /** As StagedInput's: the temp output is on a local disk. */
  readonly onLocalDisk?: boolean;
  /** Publish the output as out/<name> by one atomic rename (invariant 1). */
  commit(options?: { fsync?: boolean }): Promise<CommitOutcome>;
  /** Remove the temp output (it will not be committed). */
  discard(): Promise<void>;
}

/** A chunk being written by split: a local file at `path`, published into chunks/ by `publish`. */
export interface PendingChunk {
  readonly path: string;
  /** Publish the file as chunks/<chunk> by one atomic rename (group folder made if missing). */
  publish(chunk: string): Promise<void>;
  discard(): Promise<void>;
}

/** One lane's space for temp outputs (`.tmp/<worker>.<lane>/`). */
export interface LaneSpace {
  /** A fresh temp output for a chunk, to be published as out/<chunk><ext>. */
  newOutput(chunk: string, ext: string): PendingOutput;
  /** Make the space again if someone removed it (a requeue that took this worker for dead). */
  recreate(): Promise<void>;
  /** Remove the (empty) space. */
  close(): Promise<void>;
}

export interface JobStore {
  /** What a person calls the job: a path, or an sftp:// address. */
  readonly location: string;

  /** job.json's text; JobMissingError when there is none (or the file system went away). */
  readMarker(): Promise<string>;
  /** Replace job.json atomically and durably. */
  writeMarker(text: string): Promise<void>;
  /** job.json's size and server time; undefined when it is absent. */
  markerInfo(): Promise<EntryInfo | undefined>;
  /**
   * For an ENOENT naming `file` (a path in this job, as its error gave it): the topmost folder of
   * the job above it that is missing — out/ removed by hand — or undefined when none is. Looked
   * up on that error path only.
   */
  missingFolderAbove(file: string): Promise<string | undefined>;

  /** A file's bytes, or undefined when it does not exist. */
  read(area: Area, name: string): Promise<Buffer | undefined>;
  /** A file's bytes as a stream (outputs can be large), or undefined when it does not exist. */
  readStream(area: Area, name: string): Promise<Readable | undefined>;
  /** Up to `bytes` from the start of a file (a cached size on a mount must not truncate it). */
  readPrefix(area: Area, name: string, bytes: number): Promise<Buffer | undefined>;
  /** Replace a file atomically: temp file under .tmp/, rename. `durable` fsyncs first. */
  write(area: Area, name: string, data: string | Uint8Array, options?: { durable?: boolean }): Promise<void>;
  /** Append to a file that only this process writes (a worker's log). */
  append(area: Area, name: string, text: string): Promise<void>;
  /** Ask the server about one name (authoritative, unlike a listing). */
  lookup(area: Area, name: string): Promise<EntryInfo | undefined>;
  /** Every entry below an area, folders included; [] when the area is missing. A hint. */
  list(area: Area): Promise<ListedEntry[]>;
  /** Remove a file; false when it was not there. */
  remove(area: Area, name: string): Promise<boolean>;
  /** Remove an empty folder; false when it was not there or is not empty. */
  removeFolder(area: Area, name: string): Promise<boolean>;

  /** The names at the top of the job folder; undefined when there is no folder. */
  topLevel(): Promise<string[] | undefined>;
  /** Make the job folder and its areas (split: a new job). */
  createJobFolders(): Promise<void>;
  /** Remove piecework's own entries (split --force); anything else the user put there stays. */
  removeJobEntries(): Promise<void>;

  /** The file server's clock, measured with probe files written in the job's folders. */
  measureClock(label: string): Promise<MountClock>;
  /** Claims on chunks, judged by the file server's clock. */
  claims(settings: ClaimSettings, clock: MountClock, owner: ClaimOwner): Promise<Claims>;
  /** A new chunk file for split to write (a temp file under .tmp/, or a local one uploaded on publish). */
  newChunkFile(): Promise<PendingChunk>;
  /** A chunk's input as a local file. */
  stageInput(chunk: string): Promise<StagedInput>;
  /** A lane's space for temp outputs, made if missing. */
  openLaneSpace(workerId: string, lane: number): Promise<LaneSpace>;
  /** Free bytes where outputs are written; undefined when the file system does not say. */
  freeBytes(): Promise<number | undefined>;
  /**
   * A local path for a file of the job that tools outside piecework may read directly (cat in
   * merge), or undefined when the store has no such path (a network store).
   */
  localPath(area: Area, name: string): string | undefined;

  /**
   * The caller is stopping (a signal): from now on, requests not answered within `ms` (those
   * already sent included) count as a dead link. A network store that could otherwise wait out
   * its full request deadline implements it; a mounted folder has nothing to hurry.
   */
  hurry?(ms: number): void;
  /**
   * Called once if the store's link to the job dies (a network store): a worker whose commands
   * are all running learns of it at once instead of at its next request.
   */
  onLinkLost?(listener: (error: Error) => void): void;

  /** Let go of connections and caches. */
  close(): Promise<void>;
}
