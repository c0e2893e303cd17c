/**
 * Claims: one lock per chunk being worked on (DESIGN.md invariants 3–5).
 *
 * The rule, written once:
 * - A claim is a directory `locks/<chunk>` made with mkdir (proper-lockfile), which is atomic on
 *   local disks, NFS and sshfs. Its owner record `locks/<chunk>.owner` sits beside it (files inside
 *   the lock directory would make takeover fail with ENOTEMPTY) and starts with a random token.
 * - The holder re-stamps the directory's mtime every `updateMs`; a claim whose mtime is older than
 *   `staleMs` by the mount's clock belongs to a dead worker and anyone may take it over.
 * - The lock is for efficiency only. It cannot guarantee exclusivity (a stalled holder, an sshfs
 *   attribute cache showing an old mtime), so every attempt writes a unique temp file and commits
 *   by rename: two holders waste work, they never corrupt or duplicate an output.
 * - A holder learns it lost the claim from proper-lockfile (its mtime changed or the lock went),
 *   from the lock folder (another inode or birth time: a taker made it anew — the only sign during
 *   the taker's first second, before its owner record exists), or from the owner record (another
 *   token): then it stops the chunk and must not remove the lock, which is no longer its own.
 * - A claim made on this host, in this boot (the owner record's host and boot id are ours), by a
 *   pid that no longer exists is dead at once: a rerun after `kill -9` need not wait `staleMs`.
 *   Claims younger than OWNER_RECORD_DELAY_MS have no owner record, so they still wait. The one
 *   who takes such a claim first moves its owner record away by a rename, which only one
 *   contender can win; only the winner removes the lock, and claims it again by mkdir.
 */
import { promises as fs, type Stats } from 'node:fs';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { errorCode } from '../errors.js';
import type { Claim as StoreClaim, ClaimOwner, Claims, ClaimSettings } from './job-store.js';
import type { JobLayout } from './layout.js';
import { inlineCallbackFs } from './file-calls.js';
import { mountTimeFs, type MountClock } from './mount-clock.js';
import { heldByDeadLocalProcess, newOwnerRecord, OWNER_RECORD_DELAY_MS, parseOwnerRecord, TOKEN_LENGTH } from './owner-record.js';

export class Claim implements StoreClaim {
  readonly chunk: string;
  readonly token: string;
  readonly claimedAt: number;
  #lost: Error | undefined;
  #lostListeners: ((reason: Error) => void)[] = [];
  /** Set once the owner record is being written; undefined while the claim is young. */
  #ownerWritten: Promise<void> | undefined;
  #ownerTimer: NodeJS.Timeout;
  #releaseLock: () => Promise<void>;
  #book: ClaimBook;
  #watch: NodeJS.Timeout | undefined;

  constructor(book: ClaimBook, chunk: string, token: string, writeOwner: () => Promise<void>, releaseLock: () => Promise<void>) {
    this.#book = book;
    this.chunk = chunk;
    this.token = token;
    this.claimedAt = Date.now();
    this.#releaseLock = releaseLock;
    // The owner record is written only for a chunk still running after OWNER_RECORD_DELAY_MS:
    // most chunks end sooner, and on a network mount the record costs ~5 round trips. A younger
    // claim cannot have been taken over (a takeover needs the lock to look `staleMs` ≥ 2 s old).
    this.#ownerTimer = setTimeout(() => {
      this.#ownerWritten = writeOwner();
      this.#ownerWritten.catch(() => {});
    }, OWNER_RECORD_DELAY_MS);
    this.#ownerTimer.unref();
    // Long chunks re-read the owner record: the sshfs attribute cache can hide a takeover
    // from proper-lockfile's mtime check, never from the record's contents.
    this.#watch = setInterval(() => void this.#checkOwner(), book.settings.updateMs);
    this.#watch.unref();
  }

  get lost(): Error | undefined {
    return this.#lost;
  }

  onLost(listener: (reason: Error) => void): void {
    if (this.#lost) listener(this.#lost);
    else this.#lostListeners.push(listener);
  }

  markLost(reason: Error): void {
    if (this.#lost) return;
    this.#lost = reason;
    // A lost claim must not write its owner record late, over the new holder's.
    clearTimeout(this.#ownerTimer);
    this.#book.abandon(this.chunk);
    for (const listener of this.#lostListeners.splice(0)) listener(reason);
  }

  #takenOver(): void {
    this.markLost(new Error(`claim on ${this.chunk} was taken over by another worker`));
  }

  /** Whether the lock folder is still the one we made and the owner record still carries our token (a stat, one small read). */
  async stillOurs(): Promise<boolean> {
    if (this.#lost) return false;
    if (!(await this.#book.lockIsOurs(this.chunk))) {
      this.#takenOver();
      return false;
    }
    if (!this.#ownerWritten) return true;
    await this.#ownerWritten;
    const token = await readOwnerToken(this.#book.layout.ownerPath(this.chunk));
    if (token !== undefined && token !== this.token) {
      this.#takenOver();
      return false;
    }
    return true;
  }

  /**
   * Whether this attempt has held the claim long enough that a takeover was possible at all.
   * Younger claims skip the pre-commit owner read: a contender needs the lock to look `staleMs`
   * old, and a live holder's mtime never lags by more than the update interval plus cache age.
   */
  get oldEnoughToCheck(): boolean {
    return Date.now() - this.claimedAt > this.#book.settings.staleMs / 2;
  }

  async #checkOwner(): Promise<void> {
    try {
      await this.stillOurs();
    } catch {
      // A failed read is not proof of loss; proper-lockfile's own checks keep running.
    }
  }

  /** Remove the owner record and the lock — only if they are still ours. */
  async release(): Promise<void> {
    clearInterval(this.#watch);
    clearTimeout(this.#ownerTimer);
    // A taker that judged us dead made the lock anew, and for its first second it has no owner
    // record of its own to tell us so: the lock folder does (one stat). Over a mount that stat is
    // a round trip or more per chunk (sshfs: ~6 requests, +80 % time at 10 ms in `make bench`),
    // so there only a claim old enough to have been taken over at all looks (as before a commit).
    const mayBeTaken = this.#book.onLocalDisk || this.oldEnoughToCheck;
    if (!this.#lost && mayBeTaken && !(await this.#book.lockIsOurs(this.chunk))) this.#takenOver();
    if (this.#ownerWritten && !this.#lost) {
      await this.#ownerWritten.catch(() => {});
      // unlink, not rm: rm looks before it leaps, one more round trip on a mount.
      await fs.unlink(this.#book.layout.ownerPath(this.chunk)).catch(() => {});
    }
    try {
      await this.#releaseLock();
    } catch (error) {
      // ENOTACQUIRED: proper-lockfile already dropped a compromised lock. Nothing to undo.
      if (errorCode(error) !== 'ENOTACQUIRED' && errorCode(error) !== 'ERELEASED') throw error;
    }
  }
}

let booksMade = 0;

export class ClaimBook implements Claims {
  readonly layout: JobLayout;
  readonly settings: ClaimSettings;
  readonly identity: ClaimOwner;
  readonly #makeGroupFolder: (group: string) => Promise<void>;
  readonly clock: MountClock;
  /** The folder is on a local disk: a look at a lock costs microseconds, not round trips. */
  readonly onLocalDisk: boolean;
  readonly #fs: ReturnType<typeof mountTimeFs>;
  /** The same calls without the bookkeeping below: our own look at a lock is not proper-lockfile's. */
  readonly #plainFs: ReturnType<typeof mountTimeFs>;
  /** Lock paths we lost: removing them would delete the new holder's claim. */
  readonly #abandoned = new Set<string>();
  /**
   * Each lock we hold as we made it (proper-lockfile's stat right after its mkdir) and the mtimes
   * we gave it since, in proper-lockfile's clock. A folder made anew by a taker has another inode
   * (sshfs numbers nodes afresh) or birth time (ext4), or at least another mtime (NFS). The
   * mtime alone is not enough: proper-lockfile's first lock in a process is stamped a whole second
   * + 5 ms, so two first locks within one second share it, and mtimes may be whole seconds.
   */
  readonly #stamps = new Map<string, LockStamp>();
  /**
   * proper-lockfile keeps one table of held locks per process, keyed by the name it is given:
   * two books on one job in one process (the library used twice, the store tests) would release
   * each other's locks. Each book names its locks apart; `lockfilePath` is the real folder.
   */
  readonly #lockKeySuffix = `#claims${++booksMade}`;
  readonly #madeDirs = new Set<string>();

  /** `inline`: the folder is on a local disk, where proper-lockfile's calls are made inline (file-calls.ts). */
  constructor(layout: JobLayout, settings: ClaimSettings, clock: MountClock, identity: ClaimOwner, makeGroupFolder: (group: string) => Promise<void>, inline = false) {
    this.layout = layout;
    this.onLocalDisk = inline;
    this.#makeGroupFolder = makeGroupFolder;
    this.settings = settings;
    this.identity = identity;
    this.clock = clock;
    const base = mountTimeFs(clock, inline ? inlineCallbackFs : undefined);
    this.#plainFs = base;
    const abandoned = this.#abandoned;
    const stamps = this.#stamps;
    this.#fs = {
      ...base,
      rmdir(dir: string, callback: (error: NodeJS.ErrnoException | null) => void) {
        stamps.delete(dir);
        if (abandoned.delete(dir)) return callback(null);
        base.rmdir(dir, callback);
      },
      stat(file: string, callback: (error: NodeJS.ErrnoException | null, stat?: Stats) => void) {
        base.stat(file, (error, stat) => {
          const stamp = stamps.get(file);
          // The first look is the one right after our mkdir (a contender's look at a lock it does
          // not get is dropped by claim()); a later one is an update's, which may see a taker's.
          if (!error && !stamp) stamps.set(file, { ino: stat.ino, birthtimeMs: stat.birthtimeMs, mtimes: [stat.mtime.getTime()] });
          else if (!error && stamp) stamp.remade ||= !sameFolder(stamp, stat);
          callback(error, stat);
        });
      },
      utimes(file: string, atime: Date, mtime: Date, callback: (error: NodeJS.ErrnoException | null) => void) {
        const stamp = stamps.get(file);
        // proper-lockfile judges by mtime alone and would keep a taker's lock fresh as its own
        // when the two mtimes agree (whole seconds); refused, it calls the lock compromised.
        if (stamp?.remade) return callback(Object.assign(new Error(`${file} was made anew by another worker`), { code: 'ENOENT' }));
        // Ours from the moment it is asked for: a look between the write and its callback must
        // not take our own update for a taker's folder. The two latest are kept.
        if (stamp) stamp.mtimes = [stamp.mtimes.at(-1)!, mtime.getTime()];
        base.utimes(file, atime, mtime, callback);
      },
    } as typeof base;
  }

  abandon(chunk: string): void {
    const lockPath = this.layout.lockPath(chunk);
    // Kept, marked: proper-lockfile's next update of it fails instead of freshening a taker's.
    const stamp = this.#stamps.get(lockPath);
    if (stamp) stamp.remade = true;
    this.#abandoned.add(lockPath);
  }

  /**
   * Whether the lock on disk is still the folder we made: its inode and birth time, or where the
   * file system gives no birth time (NFS, sshfs), also an mtime we gave it. A taker between this
   * stat and our rmdir (microseconds) is not seen; a failed stat is not proof of loss.
   */
  lockIsOurs(chunk: string): Promise<boolean> {
    const lockPath = this.layout.lockPath(chunk);
    const stamp = this.#stamps.get(lockPath);
    if (stamp === undefined) return Promise.resolve(true);
    return new Promise((resolve) => {
      this.#plainFs.stat(lockPath, (error, stat) => resolve(error ? true : sameFolder(stamp, stat) && (stamp.birthtimeMs !== 0 || stamp.mtimes.includes(stat.mtime.getTime()))));
    });
  }

  /** Claim a chunk: the Claim, or undefined when another live worker holds it. */
  async claim(chunk: string, lane: number): Promise<Claim | undefined> {
    const lockPath = this.layout.lockPath(chunk);
    // proper-lockfile may call back before lock() returns: the claim is looked up when it does.
    const made: { claim?: Claim } = {};
    let release: () => Promise<void>;
    this.#stamps.delete(lockPath);
    try {
      release = await this.#lock(lockPath, (error) => made.claim?.markLost(error));
    } catch (error) {
      const code = errorCode(error);
      // ESTALE: an NFS handle went away under a concurrent takeover; ENOENT from the stat after
      // our mkdir: the lock just made was removed before it (a requeue or takeover that judged
      // the old one); busy. ENOENT from the mkdir itself: locks/ is gone (removed by hand), an
      // error — taken for busy, every claim would be, and the worker would wait for ever.
      // A contender's look at a lock it did not get is not a stamp of ours.
      this.#stamps.delete(lockPath);
      if (code === 'ENOENT' && (error as NodeJS.ErrnoException).syscall === 'stat') return undefined;
      if (code !== 'ELOCKED' && code !== 'ESTALE' && code !== 'EEXIST') throw error;
      if (code !== 'ELOCKED' || !(await this.#removeClaimOfDeadLocalProcess(chunk))) return undefined;
      try {
        release = await this.#lock(lockPath, (lost) => made.claim?.markLost(lost));
      } catch (again) {
        this.#stamps.delete(lockPath);
        const againCode = errorCode(again);
        if (againCode === 'ELOCKED' || againCode === 'ESTALE' || againCode === 'EEXIST') return undefined;
        throw again;
      }
    }
    const { token, text } = newOwnerRecord(this.identity, chunk, lane, this.clock.now());
    const writeOwner = () => fs.writeFile(this.layout.ownerPath(chunk), text());
    made.claim = new Claim(this, chunk, token, writeOwner, release);
    return made.claim;
  }

  /**
   * Remove a claim whose holder ran on this host, in this boot, and is gone (its pid does not
   * exist): true when this call removed it. Nothing is removed on any doubt.
   */
  async #removeClaimOfDeadLocalProcess(chunk: string): Promise<boolean> {
    if (!this.identity.bootId) return false;
    const ownerPath = this.layout.ownerPath(chunk);
    const text = await fs.readFile(ownerPath, 'utf8').catch(() => undefined);
    if (!text || !heldByDeadLocalProcess(parseOwnerRecord(text), this.identity)) return false;
    // Take the record by a rename: of several workers that judged this claim dead, one wins.
    const taken = this.layout.tempPath('dead-claim');
    try {
      await fs.rename(ownerPath, taken);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return false; // another worker took it first
      throw error;
    }
    // Still the record we judged? (A new holder writes its own only after a second.)
    const moved = await fs.readFile(taken, 'utf8').catch(() => undefined);
    if (moved?.slice(0, TOKEN_LENGTH) !== text.slice(0, TOKEN_LENGTH)) {
      await fs.rename(taken, ownerPath).catch(() => {});
      return false;
    }
    try {
      await fs.rmdir(this.layout.lockPath(chunk));
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error;
    } finally {
      await fs.unlink(taken).catch(() => {});
    }
    return true;
  }

  async #lock(lockPath: string, onCompromised: (error: Error) => void): Promise<() => Promise<void>> {
    const options = {
      lockfilePath: lockPath,
      realpath: false,
      stale: this.settings.staleMs,
      update: this.settings.updateMs,
      retries: 0,
      fs: this.#fs,
      onCompromised,
    };
    try {
      return await lockfile.lock(lockPath + this.#lockKeySuffix, options);
    } catch (error) {
      // A grouped chunk's lock folder (locks/<group>/) is made on first use.
      if (errorCode(error) !== 'ENOENT') throw error;
      const parent = path.dirname(lockPath);
      if (parent === this.layout.locksDir) throw error;
      // Another claim of this worker may have made it since this mkdir failed (claims run
      // concurrently): then only the mkdir is tried again. A second ENOENT is an error.
      if (!this.#madeDirs.has(parent)) {
        await this.#makeGroupFolder(path.relative(this.layout.locksDir, parent).split(path.sep).join('/'));
        this.#madeDirs.add(parent);
      }
      return await lockfile.lock(lockPath + this.#lockKeySuffix, options);
    }
  }
}

interface LockStamp {
  ino: number;
  /** 0 where the file system does not say. */
  birthtimeMs: number;
  /** The mtime it was made with, then the two latest we gave it. */
  mtimes: number[];
  /** An update's look found another folder: not ours to keep fresh. */
  remade?: boolean;
}

function sameFolder(stamp: LockStamp, stat: Stats): boolean {
  return stat.ino === stamp.ino && stat.birthtimeMs === stamp.birthtimeMs;
}

async function readOwnerToken(ownerPath: string): Promise<string | undefined> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(ownerPath, 'r');
    // Read a fixed-size prefix: a cached file size on a network mount must not truncate it.
    const buffer = Buffer.alloc(TOKEN_LENGTH);
    const { bytesRead } = await handle.read(buffer, 0, TOKEN_LENGTH, 0);
    return bytesRead === TOKEN_LENGTH ? buffer.toString('latin1') : undefined;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  } finally {
    await handle?.close();
  }
}
