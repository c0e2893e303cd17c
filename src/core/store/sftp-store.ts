/**
 * The job store over SFTP: the job folder reached with ssh2's SFTP client, no mount, no FUSE
 * (DESIGN.md, "One job store"; DEPENDENCIES.md, "ssh2's SFTP client").
 *
 * Address: `sftp://[user@]host[:port]/absolute/path/to/job`. The connection is made as `launch`
 * makes it (src/remote/ssh.ts): host keys checked against known_hosts (never accepted blindly),
 * the agent (SSH_AUTH_SOCK) and then identity files. Environment:
 * - `PIECEWORK_SSH_IDENTITY`  an identity file (private key) to use, instead of ~/.ssh/id_*;
 * - `PIECEWORK_KNOWN_HOSTS`   the known_hosts file to check (default ~/.ssh/known_hosts and
 *                              /etc/ssh/ssh_known_hosts);
 * - `PIECEWORK_SFTP_TIMEOUT_MS` the deadline of every SFTP request (default 30 000);
 * - `PIECEWORK_SFTP_TRACE=1`   one stderr line per request: sent and answered (ms), what, path.
 *
 * Bounds (documented in README): every request has a deadline (30 s); keep-alives every 5 s, 3
 * unanswered end the connection (a silent link is noticed within ~20 s, a reset one at once).
 * Once the link is dead every pending and later operation fails with JobMissingError (exit 4):
 * a worker stops within the deadline, never hangs.
 *
 * One connection and one SFTP channel per store; requests are pipelined on it (far below sshd's
 * MaxSessions and MaxStartups). The protocol pieces:
 * - claims: `mkdir locks/<chunk>` (a second mkdir fails with code 4: a follow-up stat tells
 *   "exists"), owner record beside it, refresh by setting the lock's mtime, staleness judged by
 *   the server's mtimes against the mount clock;
 * - atomic writes and commits: upload under .tmp/, then `posix-rename@openssh.com` (required);
 * - commands run on local copies: stageInput downloads the chunk, outputs are written to a local
 *   temp folder and uploaded by `commit`.
 */
import { promises as fs, lstatSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Socket } from 'node:net';
import path from 'node:path';
import { randomHex } from '../random-hex.js';
import { Readable } from 'node:stream';
import type { NodeSSH } from 'node-ssh';
import type { OpenMode, SFTPWrapper, Stats as SftpStats } from 'ssh2';
import { connectHost, defaultKnownHostsFiles, loadCredentials } from '../../remote/ssh.js';
import { ExitStatus, JobMissingError, LocalTempError, PieceworkError, UsageError } from '../errors.js';
import type { Area, Claim, ClaimOwner, Claims, ClaimSettings, CommitOutcome, EntryInfo, JobStore, LaneSpace, ListedEntry, PendingChunk, PendingOutput, StagedInput } from './job-store.js';
import { HOST, JOB_ENTRY_NAMES, JOB_FOLDER_NAMES, OWNER_SUFFIX, tempName } from './layout.js';
import { fixedMountClock, type MountClock } from './mount-clock.js';
import { removeStaleStaging, STAGING_PREFIX } from './stale-staging.js';
import { coalesceWrites } from './coalesced-writes.js';
import { settled } from '../concurrency.js';
import { heldByDeadLocalProcess, newOwnerRecord, OWNER_RECORD_DELAY_MS, parseOwnerRecord, TOKEN_LENGTH } from './owner-record.js';

const TRACE = process.env['PIECEWORK_SFTP_TRACE'] === '1';
/** Every SFTP request is answered within this, or the link counts as dead. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
export const KEEPALIVE_INTERVAL_MS = 5_000;
export const KEEPALIVE_COUNT_MAX = 3;
/** How long close() lets the server answer the goodbye before dropping the connection. */
const CLOSE_GRACE_MS = 1000;
/** An owner record is a token line and one line of JSON: far below this. */
const OWNER_RECORD_MAX_BYTES = 4096;

/** READDIRs in flight at most while a folder is listed (sftp-server answers them in order). */
const READDIR_DEPTH = 16;

interface SftpEntry {
  filename: string;
  attrs: SftpStats;
}

const AREA_FOLDERS: Record<Area, string> = {
  chunks: 'chunks',
  out: 'out',
  tmp: '.tmp',
  locks: 'locks',
  failed: 'failed',
  workers: 'workers',
  logs: 'logs',
  top: '',
};

// SFTP status codes (draft-ietf-secsh-filexfer-02, what OpenSSH speaks).
const FX_EOF = 1;
const FX_NO_SUCH_FILE = 2;
const FX_PERMISSION_DENIED = 3;
const FX_FAILURE = 4;

export interface SftpAddress {
  user: string | undefined;
  host: string;
  port: number;
  path: string;
}

/** Parse `sftp://[user@]host[:port]/absolute/path`; UsageError with a hint when malformed. */
export function parseSftpAddress(location: string): SftpAddress {
  const hint = 'write it as sftp://[user@]host[:port]/absolute/path/to/job';
  const match = /^sftp:\/\/(?:([^@/]+)@)?(\[[^\]]+\]|[^:/@]+)(?::(\d*))?(\/.*)?$/i.exec(location);
  if (!match) throw new UsageError(`${location}: not an sftp:// address`, hint);
  const [, user, rawHost, rawPort, rawPath] = match;
  const host = rawHost!.replace(/^\[|\]$/g, '');
  if (!host) throw new UsageError(`${location}: no host name`, hint);
  let port = 22;
  if (rawPort !== undefined) {
    port = Number(rawPort);
    if (rawPort === '' || !Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`${location}: bad port "${rawPort}"`, hint);
  }
  if (rawPath === undefined || rawPath === '/' || rawPath.length < 2) throw new UsageError(`${location}: no job folder path`, hint);
  let decoded: string;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    throw new UsageError(`${location}: bad %-escape in the path`, hint);
  }
  const normal = path.posix.normalize(decoded).replace(/\/+$/, '');
  if (normal === '' || normal === '/' || decoded.split('/').includes('..')) throw new UsageError(`${location}: the job folder path must be absolute, without ".."`, hint);
  return { user: user === undefined ? undefined : decodeURIComponent(user), host, port, path: normal };
}

/** The link to the server went away: the job is out of reach (exit 4). */
export class SftpLinkLostError extends JobMissingError {
  constructor(location: string, detail: string) {
    super(location, detail);
    // Not "no piecework job": the job may be fine, the link to it is not.
    this.message = `${detail}; the job ${location} is out of reach`;
    Object.defineProperty(this, 'hint', {
      value: 'check the network and the SSH server; chunks this worker held will be taken over by others after the stale time',
    });
  }
}

export interface SftpStoreOptions {
  /** Deadline of each request (ms); default PIECEWORK_SFTP_TIMEOUT_MS or 30 000. */
  requestTimeoutMs?: number;
  /** An identity file; default PIECEWORK_SSH_IDENTITY, then ~/.ssh/id_*. */
  identityFile?: string;
  /** known_hosts file; default PIECEWORK_KNOWN_HOSTS, then ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts. */
  knownHostsFile?: string;
}

export async function openSftpStore(location: string, options: SftpStoreOptions = {}): Promise<JobStore> {
  const address = parseSftpAddress(location);
  const env = process.env;
  const identity = options.identityFile ?? (env['PIECEWORK_SSH_IDENTITY'] || undefined);
  const knownHosts = options.knownHostsFile ?? (env['PIECEWORK_KNOWN_HOSTS'] || undefined);
  const envTimeout = Number(env['PIECEWORK_SFTP_TIMEOUT_MS']);
  const requestTimeoutMs = options.requestTimeoutMs ?? (Number.isFinite(envTimeout) && envTimeout > 0 ? envTimeout : DEFAULT_REQUEST_TIMEOUT_MS);
  const credentials = await loadCredentials(identity ? { identityFiles: [identity] } : {});
  const result = await connectHost(
    { host: address.host, port: address.port, ...(address.user ? { user: address.user } : {}) },
    {
      credentials,
      hostKeys: { knownHostsFiles: knownHosts ? [knownHosts] : defaultKnownHostsFiles(), acceptNew: false },
      keepaliveIntervalMs: KEEPALIVE_INTERVAL_MS,
      keepaliveCountMax: KEEPALIVE_COUNT_MAX,
      retries: 2,
    },
  );
  if (result.status !== 'connected') {
    const hint = result.status === 'host-key-unknown' ? `${result.hint ?? ''}${knownHosts ? '' : ' (or point PIECEWORK_KNOWN_HOSTS at a known_hosts file)'}`.trim() : result.status === 'auth-failed' ? `${result.hint ?? ''}; or set PIECEWORK_SSH_IDENTITY to a key file` : result.hint;
    const exitStatus = result.status === 'unreachable' ? ExitStatus.noJob : ExitStatus.failure;
    throw new PieceworkError(`${location}: ${result.message}`, { ...(hint ? { hint } : {}), exitStatus });
  }
  const ssh = result.ssh;
  // Nagle's algorithm is off (connectHost): small requests, many in flight, would each wait for
  // the server's delayed ACK (~40 ms a request through a 10 ms link instead of one round trip).
  // What a turn of the event loop sends then leaves in one segment, not one per packet piece.
  const socket = connectionSocket(ssh);
  if (socket) coalesceWrites(socket);
  let sftp: SFTPWrapper;
  try {
    sftp = await withTimeout(ssh.requestSFTP(), requestTimeoutMs, 'the SFTP subsystem to start');
  } catch (error) {
    ssh.dispose();
    throw new PieceworkError(`${location}: cannot start SFTP on ${address.host}: ${(error as Error).message}`, { hint: 'the server must offer the sftp subsystem (Subsystem sftp … in sshd_config)' });
  }
  const extensions = (sftp as unknown as { _extensions: Record<string, string> })._extensions ?? {};
  if (!extensions['posix-rename@openssh.com']) {
    ssh.dispose();
    throw new PieceworkError(`${location}: the SFTP server does not offer posix-rename@openssh.com, needed for atomic commits`, { hint: 'use an OpenSSH server, or mount the folder (sshfs) and give its path instead' });
  }
  const local = await fs.mkdtemp(path.join(tmpdir(), `${STAGING_PREFIX}${process.pid}-`)).catch((error: unknown) => {
    ssh.dispose();
    throw new LocalTempError('the staging folder for outputs', tmpdir(), error);
  });
  return new SftpJobStore(location, address, ssh, sftp, extensions, local, requestTimeoutMs);
}

interface SftpError extends Error {
  code?: number | string;
}

/** An SFTP failure as the Node-style error the rest of piecework understands (ENOENT…). */
function nodeError(error: unknown, remotePath: string, what: string): NodeJS.ErrnoException {
  const sftpCode = (error as SftpError).code;
  const code = sftpCode === FX_NO_SUCH_FILE ? 'ENOENT' : sftpCode === FX_PERMISSION_DENIED ? 'EACCES' : sftpCode === FX_FAILURE ? 'ESFTPFAILURE' : typeof sftpCode === 'string' ? sftpCode : 'ESFTP';
  const wrapped = new Error(`${what} ${remotePath}: ${(error as Error).message}`) as NodeJS.ErrnoException;
  wrapped.code = code;
  wrapped.path = remotePath;
  return wrapped;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export class SftpJobStore implements JobStore {
  readonly location: string;
  readonly address: SftpAddress;
  readonly root: string;
  readonly requestTimeoutMs: number;
  readonly #ssh: NodeSSH;
  readonly #sftp: SFTPWrapper;
  readonly #extensions: Record<string, string>;
  /** Local folder for staged inputs and temp outputs; removed by close(). */
  readonly #local: string;
  readonly #pending = new Map<(error: Error) => void, number>();
  /** Set by hurry(): requests sent before this time must be answered by #hurryDeadline. */
  #hurryTimer: NodeJS.Timeout | undefined;
  #hurriedMs: number | undefined;
  readonly #madeFolders = new Set<string>();
  #dead: Error | undefined;
  #closed = false;
  /** The removal of killed workers' staging folders on this host (stale-staging.ts), beside the work. */
  readonly #staleStagingSweep: Promise<unknown>;

  constructor(location: string, address: SftpAddress, ssh: NodeSSH, sftp: SFTPWrapper, extensions: Record<string, string>, local: string, requestTimeoutMs: number) {
    this.location = location;
    this.address = address;
    this.root = address.path;
    this.#ssh = ssh;
    this.#sftp = sftp;
    this.#extensions = extensions;
    this.#local = local;
    this.requestTimeoutMs = requestTimeoutMs;
    this.#staleStagingSweep = removeStaleStaging();
    const connection = ssh.connection;
    const lost = (why: string) => () => this.#linkLost(why);
    connection?.on('error', (error: Error) => this.#linkLost(error.message));
    connection?.on('close', lost('the connection closed'));
    connection?.on('end', lost('the server ended the connection'));
    sftp.on('close', lost('the SFTP channel closed'));
    sftp.on('error', (error: Error) => this.#linkLost(error.message));
  }

  #linkLost(why: string): void {
    if (this.#dead || this.#closed) return;
    this.#dead = new SftpLinkLostError(this.location, `lost the SFTP connection to ${this.address.host}:${this.address.port}: ${why}`);
    for (const reject of [...this.#pending.keys()]) reject(this.#dead);
    clearTimeout(this.#hurryTimer);
    // Destroyed, not ended: a graceful end waits for a peer that may never answer, and its open
    // socket would keep the process alive after it has said why it stops.
    this.#destroyConnection();
    for (const listener of this.#lostListeners.splice(0)) listener(this.#dead);
  }

  /** One SFTP request, with its deadline; a dead link fails it at once. */
  #call<T>(what: string, remotePath: string, send: (callback: (error: Error | null | undefined, value?: T) => void) => void): Promise<T> {
    if (this.#closed) return Promise.reject(new PieceworkError(`${this.location}: the store is closed`));
    if (this.#dead) return Promise.reject(this.#dead);
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const sentAt = Date.now();
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        if (TRACE) process.stderr.write(`sftp-trace ${sentAt} ${Date.now()} ${what} ${remotePath}\n`);
        clearTimeout(timer);
        this.#pending.delete(abort);
        if (this.#pending.size === 0) this.#drained?.();
        fn();
      };
      const abort = (error: Error) => finish(() => reject(error));
      const deadlineMs = Math.min(this.requestTimeoutMs, this.#hurriedMs ?? Infinity);
      const timer = setTimeout(() => {
        this.#linkLost(`no answer to ${what} ${remotePath} within ${deadlineMs / 1000} s`);
        abort(this.#dead ?? new Error('timeout'));
      }, deadlineMs);
      this.#pending.set(abort, Date.now());
      try {
        send((error, value) => {
          if (error) finish(() => reject(this.#dead ?? nodeError(error, remotePath, what)));
          else finish(() => resolve(value as T));
        });
      } catch (error) {
        finish(() => reject(this.#dead ?? nodeError(error, remotePath, what)));
      }
    });
  }

  #destroyConnection(): void {
    const socket = connectionSocket(this.#ssh);
    this.#ssh.dispose();
    socket?.destroy();
  }

  readonly #lostListeners: ((error: Error) => void)[] = [];

  onLinkLost(listener: (error: Error) => void): void {
    if (this.#dead) queueMicrotask(() => listener(this.#dead!));
    else this.#lostListeners.push(listener);
  }

  /** Stopping: requests (sent or to come) not answered within `ms` end the link. */
  hurry(ms: number): void {
    if (this.#dead || this.#closed || (this.#hurriedMs !== undefined && this.#hurriedMs <= ms)) return;
    this.#hurriedMs = ms;
    const since = Date.now();
    clearTimeout(this.#hurryTimer);
    this.#hurryTimer = setTimeout(() => {
      if ([...this.#pending.values()].some((sentAt) => sentAt <= since)) this.#linkLost(`no answer within ${ms / 1000} s after the stop signal`);
    }, ms);
    this.#hurryTimer.unref();
  }

  // ------------------------------------------------------------------ raw requests

  remotePath(area: Area, name: string): string {
    const folder = AREA_FOLDERS[area];
    return [this.root, folder, name].filter((part) => part !== '').join('/');
  }

  #stat(p: string): Promise<SftpStats> {
    return this.#call<SftpStats>('stat', p, (cb) => this.#sftp.stat(p, cb));
  }
  #lstat(p: string): Promise<SftpStats> {
    return this.#call<SftpStats>('lstat', p, (cb) => this.#sftp.lstat(p, cb));
  }
  #open(p: string, flags: string): Promise<Buffer> {
    return this.#call<Buffer>('open', p, (cb) => this.#sftp.open(p, flags as OpenMode, cb));
  }
  #closeHandle(handle: Buffer, p: string): Promise<void> {
    return this.#call<void>('close', p, (cb) => this.#sftp.close(handle, cb));
  }
  #fstat(handle: Buffer, p: string): Promise<SftpStats> {
    return this.#call<SftpStats>('fstat', p, (cb) => this.#sftp.fstat(handle, cb));
  }
  #readAt(handle: Buffer, p: string, length: number, position: number): Promise<Buffer> {
    const buffer = Buffer.allocUnsafe(length);
    return this.#call<Buffer>('read', p, (cb) => this.#sftp.read(handle, buffer, 0, length, position, (error, bytesRead) => cb(error, buffer.subarray(0, bytesRead ?? 0))));
  }
  #writeAt(handle: Buffer, p: string, data: Buffer, position: number): Promise<void> {
    return this.#call<void>('write', p, (cb) => this.#sftp.write(handle, data, 0, data.length, position, cb));
  }
  #mkdir(p: string): Promise<void> {
    return this.#call<void>('mkdir', p, (cb) => this.#sftp.mkdir(p, cb));
  }
  #rmdir(p: string): Promise<void> {
    return this.#call<void>('rmdir', p, (cb) => this.#sftp.rmdir(p, cb));
  }
  #unlink(p: string): Promise<void> {
    return this.#call<void>('unlink', p, (cb) => this.#sftp.unlink(p, cb));
  }
  #rename(from: string, to: string): Promise<void> {
    return this.#call<void>('posix-rename', to, (cb) => this.#sftp.ext_openssh_rename(from, to, cb));
  }
  #utimes(p: string, seconds: number): Promise<void> {
    return this.#call<void>('setstat', p, (cb) => this.#sftp.utimes(p, seconds, seconds, cb));
  }
  /**
   * A folder's entries. ssh2's readdir(path) asks for one batch at a time (OpenSSH answers ~100
   * names a batch) and waits for the close: 4 round trips for a small folder, and one more per
   * 100 names. Here several READDIRs are in flight at once — the server answers them in order,
   * each with the next batch, then end-of-folder — and the close is not waited for: 2 round
   * trips for a small folder, and 100 000 names in ~1000 / READDIR_DEPTH of them.
   */
  async #readdir(p: string): Promise<SftpEntry[]> {
    const handle = await this.#call<Buffer>('opendir', p, (cb) => this.#sftp.opendir(p, cb));
    const entries: SftpEntry[] = [];
    try {
      for (let depth = 2; ; depth = Math.min(depth * 2, READDIR_DEPTH)) {
        const batches = await Promise.all(Array.from({ length: depth }, () => this.#readdirBatch(handle, p)));
        for (const batch of batches) {
          if (batch === undefined) return entries;
          entries.push(...batch);
        }
      }
    } finally {
      void this.#closeHandle(handle, p).catch(() => {});
    }
  }

  /** The next batch of a folder's entries; undefined at its end. */
  #readdirBatch(handle: Buffer, p: string): Promise<SftpEntry[] | undefined> {
    return this.#call<SftpEntry[] | undefined>('readdir', p, (cb) =>
      this.#sftp.readdir(handle, (error: (Error & { code?: number }) | undefined, list: SftpEntry[]) => (error?.code === FX_EOF ? cb(undefined, undefined) : cb(error, list))),
    );
  }

  get #readLength(): number {
    return (this.#sftp as unknown as { _maxReadLen?: number })._maxReadLen ?? 32 * 1024;
  }
  get #writeLength(): number {
    return (this.#sftp as unknown as { _maxWriteLen?: number })._maxWriteLen ?? 32 * 1024;
  }

  /** A whole file: open, then fstat and the first read together (one round trip), more if needed. */
  async #readWhole(p: string, limit = Infinity): Promise<Buffer> {
    const handle = await this.#open(p, 'r');
    try {
      const first = Math.min(limit, this.#readLength);
      const [stats, head] = await Promise.all([limit === Infinity ? this.#fstat(handle, p) : Promise.resolve(undefined), this.#readAt(handle, p, first, 0)]);
      const parts = [head];
      let total = head.length;
      // Known size reached (or the prefix asked for): no read to find the end.
      let done = total >= limit || (stats !== undefined && total >= stats.size && head.length < first) || head.length === 0;
      while (!done) {
        const piece = await this.#readAt(handle, p, Math.min(limit - total, this.#readLength), total);
        if (piece.length === 0) break;
        parts.push(piece);
        total += piece.length;
        done = total >= limit;
      }
      return parts.length === 1 ? head : Buffer.concat(parts, total);
    } finally {
      // Not awaited for the result: the close is pipelined behind the reads.
      void this.#closeHandle(handle, p).catch(() => {});
    }
  }

  /** Write bytes to a new remote file: open, all writes and the close in flight together. */
  async #upload(p: string, source: Buffer | string, options: { fsync?: boolean } = {}): Promise<void> {
    const handle = await this.#open(p, 'w');
    let closed = false;
    try {
      // The last writes, the fsync and the close go out together: the server runs the requests
      // on one handle in the order sent, and the upload counts only if every one succeeded.
      const last: Promise<void>[] = [];
      if (typeof source === 'string') {
        // A local file, read in pieces, with up to 16 writes in flight.
        const file = await fs.open(source, 'r');
        try {
          const size = (await file.stat()).size;
          const pieceSize = this.#writeLength;
          for (let position = 0; position < size; position += pieceSize) {
            const buffer = Buffer.allocUnsafe(Math.min(pieceSize, size - position));
            const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
            last.push(this.#writeAt(handle, p, buffer.subarray(0, bytesRead), position));
            if (last.length >= 16) await last.shift();
          }
        } catch (error) {
          await Promise.allSettled(last);
          throw error;
        } finally {
          await file.close();
        }
      } else {
        const pieceSize = this.#writeLength;
        for (let position = 0; position < source.length; position += pieceSize) last.push(this.#writeAt(handle, p, source.subarray(position, position + pieceSize), position));
      }
      if (options.fsync && this.#extensions['fsync@openssh.com']) last.push(this.#call<void>('fsync', p, (cb) => this.#sftp.ext_openssh_fsync(handle, cb)));
      closed = true;
      last.push(this.#closeHandle(handle, p));
      const settled = await Promise.allSettled(last);
      const failed = settled.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
      if (failed) throw failed.reason;
    } catch (error) {
      if (!closed) void this.#closeHandle(handle, p).catch(() => {});
      void this.#unlink(p).catch(() => {});
      throw error;
    }
  }

  // ------------------------------------------------------------------ JobStore

  async readMarker(): Promise<string> {
    try {
      return (await this.#readWhole(this.remotePath('top', 'job.json'))).toString('utf8');
    } catch (error) {
      if (isCode(error, 'ENOENT')) throw new JobMissingError(this.location, 'job.json not found');
      if (isCode(error, 'ESFTPFAILURE')) {
        const info = await this.markerInfo();
        if (info?.directory) throw new JobMissingError(this.location, 'job.json is a folder');
      }
      throw this.#translate(error);
    }
  }

  async writeMarker(text: string): Promise<void> {
    await this.#writeAtomic(this.remotePath('top', 'job.json'), Buffer.from(text), true).catch((error: unknown) => {
      throw this.#translate(error);
    });
  }

  markerInfo(): Promise<EntryInfo | undefined> {
    return this.lookup('top', 'job.json');
  }

  async missingFolderAbove(file: string): Promise<string | undefined> {
    let missing: string | undefined;
    for (let folder = path.posix.dirname(file); folder.startsWith(this.root + '/'); folder = path.posix.dirname(folder)) {
      const found = await this.#stat(folder).then(
        () => true,
        (error: unknown) => !isCode(error, 'ENOENT'),
      );
      if (found) break;
      missing = folder;
    }
    return missing;
  }

  async read(area: Area, name: string): Promise<Buffer | undefined> {
    try {
      return await this.#readWhole(this.remotePath(area, name));
    } catch (error) {
      if (isCode(error, 'ENOENT')) return undefined;
      throw this.#translate(error);
    }
  }

  async readStream(area: Area, name: string): Promise<Readable | undefined> {
    const p = this.remotePath(area, name);
    let handle: Buffer;
    try {
      handle = await this.#open(p, 'r');
    } catch (error) {
      if (isCode(error, 'ENOENT')) return undefined;
      throw this.#translate(error);
    }
    // Four reads in flight: a large output streams at the link's speed, not a round trip per piece.
    return Readable.from(this.#streamPieces(handle, p), { objectMode: false });
  }

  /** A file's pieces in order, with up to four reads in flight. */
  async *#streamPieces(handle: Buffer, p: string): AsyncGenerator<Buffer> {
    const length = this.#readLength;
    const reads: { position: number; read: Promise<Buffer> }[] = [];
    let next = 0;
    let expected = 0;
    try {
      for (;;) {
        while (reads.length < 4) {
          reads.push({ position: next, read: this.#readAt(handle, p, length, next) });
          next += length;
        }
        const { position, read } = reads.shift()!;
        const piece = await read;
        if (position !== expected) continue;
        if (piece.length === 0) break;
        yield piece;
        expected = position + piece.length;
        if (piece.length < length) {
          // Short read: drop reads sent beyond it and go on from where it stopped.
          for (const r of reads.splice(0)) r.read.catch(() => {});
          next = expected;
        }
      }
    } catch (error) {
      throw this.#translate(error);
    } finally {
      for (const r of reads.splice(0)) r.read.catch(() => {});
      void this.#closeHandle(handle, p).catch(() => {});
    }
  }

  async readPrefix(area: Area, name: string, bytes: number): Promise<Buffer | undefined> {
    try {
      return await this.#readWhole(this.remotePath(area, name), bytes);
    } catch (error) {
      if (isCode(error, 'ENOENT')) return undefined;
      throw this.#translate(error);
    }
  }

  async write(area: Area, name: string, data: string | Uint8Array, options: { durable?: boolean } = {}): Promise<void> {
    const target = this.remotePath(area, name);
    const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    await this.#withGroupFolder(area, name, () => this.#writeAtomic(target, bytes, options.durable ?? false));
  }

  /** Upload under .tmp/, then posix-rename over the target: readers see old or new, never a mix. */
  async #writeAtomic(target: string, bytes: Buffer, durable: boolean): Promise<void> {
    const temp = `${this.remotePath('tmp', '')}/.${path.posix.basename(target)}.${HOST}.${process.pid}.${randomHex(4)}`;
    await this.#upload(temp, bytes, { fsync: durable });
    try {
      await this.#rename(temp, target);
    } catch (error) {
      void this.#unlink(temp).catch(() => {});
      throw error;
    }
  }

  async append(area: Area, name: string, text: string): Promise<void> {
    const p = this.remotePath(area, name);
    await this.#withGroupFolder(area, name, async () => {
      // O_APPEND on the server: the offset is ignored, each write lands at the end.
      const handle = await this.#open(p, 'a');
      try {
        await this.#writeAt(handle, p, Buffer.from(text), 0);
      } finally {
        void this.#closeHandle(handle, p).catch(() => {});
      }
    });
  }

  async lookup(area: Area, name: string): Promise<EntryInfo | undefined> {
    try {
      return entryInfo(await this.#stat(this.remotePath(area, name)));
    } catch (error) {
      if (isCode(error, 'ENOENT')) return undefined;
      throw this.#translate(error);
    }
  }

  async list(area: Area): Promise<ListedEntry[]> {
    const found: ListedEntry[] = [];
    const walk = async (relative: string): Promise<void> => {
      let entries: { filename: string; attrs: SftpStats }[];
      try {
        entries = await this.#readdir(this.remotePath(area, relative));
      } catch (error) {
        if (isCode(error, 'ENOENT') || isCode(error, 'ESFTPFAILURE')) return;
        throw this.#translate(error);
      }
      const subfolders: string[] = [];
      for (const entry of entries) {
        if (entry.filename === '.' || entry.filename === '..') continue;
        const name = relative ? `${relative}/${entry.filename}` : entry.filename;
        const directory = entry.attrs.isDirectory();
        found.push({ name, directory });
        if (directory && area !== 'top') subfolders.push(name);
      }
      // Folders of one level are read together (pipelined).
      await Promise.all(subfolders.map(walk));
    };
    await walk('');
    return found;
  }

  async remove(area: Area, name: string): Promise<boolean> {
    try {
      await this.#unlink(this.remotePath(area, name));
      return true;
    } catch (error) {
      if (isCode(error, 'ENOENT')) return false;
      throw this.#translate(error);
    }
  }

  async removeFolder(area: Area, name: string): Promise<boolean> {
    try {
      await this.#rmdir(this.remotePath(area, name));
      return true;
    } catch (error) {
      // Code 4: not empty (or not a folder): nothing removed, as the POSIX store says.
      if (isCode(error, 'ENOENT') || isCode(error, 'ESFTPFAILURE')) return false;
      throw this.#translate(error);
    }
  }

  async topLevel(): Promise<string[] | undefined> {
    try {
      const entries = await this.#readdir(this.root);
      return entries.map((e) => e.filename).filter((n) => n !== '.' && n !== '..');
    } catch (error) {
      if (isCode(error, 'ENOENT')) return undefined;
      if (isCode(error, 'ESFTPFAILURE')) {
        const info = await this.#stat(this.root).catch(() => undefined);
        if (info && !info.isDirectory()) throw new PieceworkError(`${this.location} exists and is not a folder`, { exitStatus: ExitStatus.usage });
      }
      throw this.#translate(error);
    }
  }

  async createJobFolders(): Promise<void> {
    // Only split makes the job folder (and its parents, as mkdir -p would).
    let current = '';
    for (const segment of this.root.split('/').filter(Boolean)) {
      current += `/${segment}`;
      await this.#mkdirIfMissing(current);
    }
    await Promise.all(JOB_FOLDER_NAMES.map((folder) => this.#mkdirIfMissing(`${this.root}/${folder}`)));
  }

  async #mkdirIfMissing(p: string): Promise<void> {
    try {
      await this.#mkdir(p);
    } catch (error) {
      if (!isCode(error, 'ESFTPFAILURE')) throw this.#translate(error);
      const info = await this.#stat(p).catch(() => undefined);
      if (!info?.isDirectory()) throw this.#translate(error);
    }
  }

  async removeJobEntries(): Promise<void> {
    try {
      // The marker first: a job without job.json is no job, whatever is left if this is cut short.
      await this.#unlink(this.remotePath('top', 'job.json')).catch((error: unknown) => {
        if (!isCode(error, 'ENOENT')) throw error;
      });
      for (const name of JOB_ENTRY_NAMES.filter((entry) => entry !== 'job.json')) await this.#removeTree(`${this.root}/${name}`);
    } catch (error) {
      throw this.#translate(error);
    }
  }

  async #removeTree(p: string): Promise<void> {
    let info: SftpStats;
    try {
      info = await this.#lstat(p);
    } catch (error) {
      if (isCode(error, 'ENOENT')) return;
      throw error;
    }
    if (!info.isDirectory()) {
      await this.#unlink(p);
      return;
    }
    const entries = await this.#readdir(p);
    await Promise.all(entries.filter((e) => e.filename !== '.' && e.filename !== '..').map((e) => (e.attrs.isDirectory() ? this.#removeTree(`${p}/${e.filename}`) : this.#unlink(`${p}/${e.filename}`))));
    await this.#rmdir(p);
  }

  async measureClock(label: string): Promise<MountClock> {
    const dirs = ['workers', 'logs', '.tmp'].map((d) => `${this.root}/${d}`);
    try {
      const samples = await Promise.all(
        [0, 1, 2].map(async (i) => {
          const probe = `${dirs[i % dirs.length]}/.clock-${label}-${i}`;
          const before = Date.now();
          const handle = await this.#open(probe, 'w');
          const after = Date.now();
          void this.#closeHandle(handle, probe).catch(() => {});
          const stamped = (await this.#stat(probe)).mtime * 1000;
          // Not awaited: the removal is a round trip the start of the work need not wait for.
          void this.#unlink(probe).catch(() => {});
          // SFTP mtimes are whole seconds (the write time truncated): compare with the middle of the
          // write window, moved half a second for the truncation (as mount-clock.ts does).
          return stamped + 500 - (before + after) / 2;
        }),
      );
      samples.sort((a, b) => a - b);
      return fixedMountClock(Math.round(samples[1]! / 1000) * 1000);
    } catch (error) {
      throw this.#translate(error);
    }
  }

  claims(settings: ClaimSettings, clock: MountClock, owner: ClaimOwner): Promise<Claims> {
    return Promise.resolve(new SftpClaimBook(this, settings, clock, owner));
  }

  async stageInput(chunk: string): Promise<StagedInput> {
    const local = path.join(this.#local, `in.${tempName(chunk)}`);
    let data: Buffer;
    try {
      data = await this.#readWhole(this.remotePath('chunks', chunk));
    } catch (error) {
      // A missing input is the attempt's failure (attempt.ts), named as the POSIX store names it.
      if (isCode(error, 'ENOENT')) throw Object.assign(new Error(`input missing: chunks/${chunk}`), { code: 'ENOENT', path: `chunks/${chunk}` });
      throw this.#translate(error);
    }
    writeFileSync(local, data);
    return { path: local, onLocalDisk: true, release: () => settled(() => removeLocal(local)) };
  }

  async newChunkFile(): Promise<PendingChunk> {
    const name = tempName('split', '');
    const local = path.join(this.#local, name);
    const remote = this.remotePath('tmp', name);
    await fs.writeFile(local, '');
    return {
      path: local,
      publish: async (chunk) => {
        try {
          await this.#upload(remote, local);
        } catch (error) {
          throw this.#translate(error);
        }
        await this.#withGroupFolder('chunks', chunk, () => this.#rename(remote, this.remotePath('chunks', chunk)));
        await fs.rm(local, { force: true });
      },
      discard: () => fs.rm(local, { force: true }),
    };
  }

  async openLaneSpace(workerId: string, lane: number): Promise<LaneSpace> {
    const folder = `${workerId}.${lane}`;
    const remote = this.remotePath('tmp', folder);
    const local = path.join(this.#local, folder);
    const make = async () => {
      await fs.mkdir(local, { recursive: true });
      await this.#mkdirIfMissing(remote);
    };
    await make();
    return {
      newOutput: (chunk, ext) => this.#pendingOutput(local, remote, chunk, ext),
      recreate: make,
      close: async () => {
        await this.#rmdir(remote).catch(() => {});
        await fs.rm(local, { recursive: true, force: true }).catch(() => {});
      },
    };
  }

  #pendingOutput(localFolder: string, remoteFolder: string, chunk: string, ext: string): PendingOutput {
    const name = tempName(chunk, ext);
    const localTemp = path.join(localFolder, name);
    const remoteTemp = `${remoteFolder}/${name}`;
    const output = chunk + ext;
    return {
      path: localTemp,
      onLocalDisk: true,
      commit: async (options = {}) => {
        // Not committed, not the chunk's fault; the folder is made again for the lane's next chunks.
        const laneFolderRemoved = async (): Promise<CommitOutcome> => {
          removeLocal(localTemp);
          await this.#mkdirIfMissing(remoteFolder);
          return 'lane-folder-removed';
        };
        const info = lstatSync(localTemp, { throwIfNoEntry: false });
        if (!info) return 'missing' satisfies CommitOutcome;
        if (!info.isFile()) return 'not-a-file';
        try {
          // A small output is read here at once; a big one in pieces, as the writes go out.
          const source = info.size <= SMALL_LOCAL_FILE ? readFileSync(localTemp) : localTemp;
          await this.#upload(remoteTemp, source, { fsync: options.fsync ?? false });
        } catch (error) {
          if (!isCode(error, 'ENOENT')) throw this.#translate(error);
          // The lane's folder went while the command ran (see CommitOutcome).
          return laneFolderRemoved();
        }
        try {
          await this.#withGroupFolder('out', output, () => this.#rename(remoteTemp, this.remotePath('out', output)));
        } catch (error) {
          // Uploaded, then the lane's folder went before the rename: the same case as above.
          if (isCode(error, 'ENOENT') && !(await this.#stat(remoteTemp).then(() => true, () => false))) return laneFolderRemoved();
          void this.#unlink(remoteTemp).catch(() => {});
          throw error;
        }
        removeLocal(localTemp);
        return 'committed';
      },
      discard: async () => {
        await fs.rm(localTemp, { force: true, recursive: true }).catch(() => {});
      },
    };
  }

  /** Over SFTP a round trip: the worker reuses a roomy answer for a while (work/free-space.ts). */
  async freeBytes(): Promise<number | undefined> {
    if (!this.#extensions['statvfs@openssh.com']) return undefined;
    try {
      const p = this.remotePath('tmp', '');
      const info = await this.#call<{ f_bavail: number | bigint; f_frsize: number | bigint; f_bsize: number | bigint }>('statvfs', p, (cb) => this.#sftp.ext_openssh_statvfs(p, cb));
      return Number(info.f_bavail) * Number(info.f_frsize || info.f_bsize);
    } catch {
      return undefined;
    }
  }

  localPath(): undefined {
    return undefined;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Requests sent and not waited for (a clock probe's removal, a handle's close) are answered
    // before the goodbye, on a live link: dropped, they would leave files behind.
    await this.#drain(CLOSE_GRACE_MS);
    const closed = new PieceworkError(`${this.location}: the store is closed`);
    for (const reject of [...this.#pending.keys()]) reject(closed);
    clearTimeout(this.#hurryTimer);
    // A server that does not answer the goodbye must not keep the process alive.
    const socket = connectionSocket(this.#ssh);
    this.#ssh.dispose();
    setTimeout(() => socket?.destroy(), CLOSE_GRACE_MS).unref();
    await Promise.all([fs.rm(this.#local, { recursive: true, force: true }).catch(() => {}), this.#staleStagingSweep]);
  }

  #drained: (() => void) | undefined;

  /** Wait until no request is unanswered, at most `ms`; not at all on a link known to be lost. */
  async #drain(ms: number): Promise<void> {
    if (this.#pending.size === 0 || this.#dead) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#drained = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.#drained = undefined;
  }

  // ------------------------------------------------------------------ for claims

  /** @internal */ statPath(p: string): Promise<SftpStats> {
    return this.#stat(p);
  }
  /** @internal */ mkdirPath(p: string): Promise<void> {
    return this.#mkdir(p);
  }
  /** @internal posix-rename: replaces `to` if it exists. */
  renamePath(from: string, to: string): Promise<void> {
    return this.#rename(from, to);
  }
  /** @internal */ rmdirPath(p: string): Promise<void> {
    return this.#rmdir(p);
  }
  /** @internal */ unlinkPath(p: string): Promise<void> {
    return this.#unlink(p);
  }
  /** @internal */ utimesPath(p: string, seconds: number): Promise<void> {
    return this.#utimes(p, seconds);
  }
  /** @internal */ writeFileAtomic(p: string, text: string): Promise<void> {
    return this.#writeAtomic(p, Buffer.from(text), false);
  }
  /** @internal A new file with these bytes, failing if the name exists (exclusive create). */
  async createFile(p: string, text: string): Promise<void> {
    const handle = await this.#open(p, 'wx');
    try {
      await this.#writeAt(handle, p, Buffer.from(text), 0);
    } finally {
      await this.#closeHandle(handle, p).catch(() => {});
    }
  }
  /** @internal */ readPrefixPath(p: string, bytes: number): Promise<Buffer> {
    return this.#readWhole(p, bytes);
  }
  /** @internal */ makeGroupFolders(area: Area, group: string): Promise<void> {
    return this.#makeGroupFolders(area, group);
  }
  /** @internal */ translate(error: unknown): unknown {
    return this.#translate(error);
  }

  /** Run an operation on a name whose group folder may not exist yet; make it and try again. */
  async #withGroupFolder<T>(area: Area, name: string, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      const slash = name.lastIndexOf('/');
      if (!isCode(error, 'ENOENT') || slash === -1) throw this.#translate(error);
      // Already made — perhaps by a concurrent call, after this one failed: one more try tells.
      if (!this.#madeFolders.has(`${area}/${name.slice(0, slash)}`)) await this.#makeGroupFolders(area, name.slice(0, slash));
      try {
        return await operation();
      } catch (again) {
        throw this.#translate(again);
      }
    }
  }

  /** Group folders below an area, one level at a time; never the area or the job folder. */
  async #makeGroupFolders(area: Area, group: string): Promise<void> {
    let current = this.remotePath(area, '');
    for (const segment of group.split('/')) {
      current = `${current}/${segment}`;
      try {
        await this.#mkdirIfMissing(current);
      } catch (error) {
        throw this.#translate(error);
      }
    }
    this.#madeFolders.add(`${area}/${group}`);
  }

  #translate(error: unknown): unknown {
    if (error instanceof PieceworkError) return error;
    if (this.#dead) return this.#dead;
    if (isCode(error, 'EACCES')) {
      return new PieceworkError(`${this.location} is not writable (or readable) by this user: ${(error as Error).message}`, {
        hint: 'check the owner and permissions of the job folder on the server, or connect as the user who made the job',
        cause: error,
      });
    }
    return error;
  }
}

/**
 * The connection's socket. ssh2's `destroy()` does nothing once `end()` was called (it checks
 * that the socket is still writable), and `end()` leaves the socket open until the peer answers:
 * a silent peer would keep the process alive. So the socket itself is destroyed.
 */
function connectionSocket(ssh: NodeSSH): Socket | undefined {
  // ssh2 keeps the socket it connected on as `_sock` (a net.Socket for a TCP connection).
  const socket = (ssh.connection as unknown as { _sock?: unknown } | null)?._sock;
  return socket instanceof Socket ? socket : undefined;
}

function isCode(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === code;
}

function entryInfo(stats: SftpStats): EntryInfo {
  return { size: stats.size, mtimeMs: stats.mtime * 1000, directory: stats.isDirectory() };
}

// ---------------------------------------------------------------------- claims

/**
 * Claims over SFTP, the rule of posix-claims.ts spoken directly: `mkdir locks/<chunk>` claims,
 * the holder re-stamps the lock's mtime every updateMs (setstat), a lock whose server mtime is
 * older than staleMs by the mount clock may be taken over (rmdir + mkdir), and the owner record
 * `locks/<chunk>.owner` (token first) tells a holder that someone else took its claim.
 */
/** Claims refused with a bare Failure, none made between, before the worker stops saying so (see #tryMkdir). */
const MAX_UNEXPLAINED_CLAIM_FAILURES = 8;

class SftpClaimBook implements Claims {
  readonly store: SftpJobStore;
  readonly settings: ClaimSettings;
  readonly clock: MountClock;
  readonly identity: ClaimOwner;

  /**
   * Claims since the last one made whose mkdir kept failing with a bare Failure for a name that is
   * not there. Not reset by a chunk found busy: on a full disk, others' older claims still exist.
   */
  #unexplainedFailures = 0;

  constructor(store: SftpJobStore, settings: ClaimSettings, clock: MountClock, identity: ClaimOwner) {
    this.store = store;
    this.settings = settings;
    this.clock = clock;
    this.identity = identity;
  }

  lockPath(chunk: string): string {
    return this.store.remotePath('locks', chunk);
  }
  ownerPath(chunk: string): string {
    return this.store.remotePath('locks', chunk + OWNER_SUFFIX);
  }

  async claim(chunk: string, lane: number): Promise<Claim | undefined> {
    const lock = this.lockPath(chunk);
    try {
      const madeAt = await this.#tryMkdir(lock, chunk);
      if (madeAt !== undefined) return this.#newClaim(chunk, lane, false, madeAt);
      // It exists: a live claim, or a stale one to take over.
      let info: SftpStats;
      try {
        info = await this.store.statPath(lock);
      } catch (error) {
        if (isCode(error, 'ENOENT')) return undefined; // released just now: busy this round
        throw error;
      }
      if (!this.#isStale(info)) {
        // Not stale, but held by a process of this host and boot that is gone (a kill -9 and a
        // rerun): taken now rather than after the stale period, as on a mount.
        if (!(await this.#removeClaimOfDeadLocalProcess(chunk))) return undefined;
        const madeAt2 = await this.#tryMkdir(lock, chunk);
        return madeAt2 === undefined ? undefined : this.#newClaim(chunk, lane, false, madeAt2);
      }
      // Take over: look again (another contender may have just taken it), remove, make anew.
      const again = await this.store.statPath(lock).catch(() => undefined);
      if (!again || again.mtime !== info.mtime || !this.#isStale(again)) return undefined;
      await this.store.rmdirPath(lock).catch(() => {});
      const takenAt = await this.#tryMkdir(lock, chunk);
      if (takenAt === undefined) return undefined;
      // Written at once: a contender that raced this takeover learns of it from the token, and
      // the old holder's release finds it.
      const claim = this.#newClaim(chunk, lane, true, takenAt);
      await claim.ownerWritten;
      return claim;
    } catch (error) {
      throw this.store.translate(error);
    }
  }

  /**
   * Remove a claim whose holder ran on this host, in this boot, and is gone: true when this call
   * removed it. The record is taken by a rename first, so that of several workers that judged the
   * claim dead one wins; nothing is removed on any doubt.
   */
  async #removeClaimOfDeadLocalProcess(chunk: string): Promise<boolean> {
    if (!this.identity.bootId) return false;
    const ownerPath = this.ownerPath(chunk);
    const text = (await this.store.readPrefixPath(ownerPath, OWNER_RECORD_MAX_BYTES).catch(() => undefined))?.toString('utf8');
    if (!text || !heldByDeadLocalProcess(parseOwnerRecord(text), this.identity)) return false;
    const taken = this.store.remotePath('tmp', tempName('dead-claim'));
    try {
      await this.store.renamePath(ownerPath, taken);
    } catch (error) {
      if (isCode(error, 'ENOENT') || isCode(error, 'ESFTPFAILURE')) return false; // another worker took it first
      throw error;
    }
    // Still the record we judged? (A new holder writes its own only after a second.)
    const moved = (await this.store.readPrefixPath(taken, TOKEN_LENGTH).catch(() => undefined))?.toString('latin1');
    if (moved !== text.slice(0, TOKEN_LENGTH)) {
      await this.store.renamePath(taken, ownerPath).catch(() => {});
      return false;
    }
    try {
      await this.store.rmdirPath(this.lockPath(chunk)).catch((error: unknown) => {
        if (!isCode(error, 'ENOENT') && !isCode(error, 'ESFTPFAILURE')) throw error;
      });
    } finally {
      await this.store.unlinkPath(taken).catch(() => {});
    }
    return true;
  }

  #isStale(info: SftpStats): boolean {
    // Server mtimes are whole seconds (truncated): count the lock as stamped at the second's end.
    return this.clock.now() - (info.mtime * 1000 + 999) > this.settings.staleMs;
  }

  /**
   * mkdir the lock: when the mkdir that made it was sent (the lock is no older), or undefined when
   * the name exists; a grouped chunk's folder is made on demand.
   */
  async #tryMkdir(lock: string, chunk: string): Promise<number | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        const sentAt = Date.now();
        await this.store.mkdirPath(lock);
        this.#unexplainedFailures = 0;
        return sentAt;
      } catch (error) {
        if (!isCode(error, 'ESFTPFAILURE') && !isCode(error, 'ENOENT')) throw error;
        // Code 4 says nothing: ask whether the name exists.
        const exists = await this.store.statPath(lock).then(
          () => true,
          (e: unknown) => {
            if (isCode(e, 'ENOENT')) return false;
            throw e;
          },
        );
        if (exists) return undefined;
        const slash = chunk.lastIndexOf('/');
        if (attempt === 0 && slash !== -1) {
          await this.store.makeGroupFolders('locks', chunk.slice(0, slash));
          continue;
        }
        // Code 4 for a name that is gone now: OpenSSH's answer to EEXIST, and the holder released
        // its claim between the two requests. Try again a few times; still racing a holder that
        // takes and releases it, the chunk is busy this round. But a server that refuses every
        // claim this way (a full disk: OpenSSH answers ENOSPC with the same bare code) is reported,
        // or the worker would wait for ever on chunks it takes for busy.
        if (!isCode(error, 'ESFTPFAILURE')) throw error;
        if (attempt < 3) continue;
        if (++this.#unexplainedFailures < MAX_UNEXPLAINED_CLAIM_FAILURES) return undefined;
        throw new PieceworkError(`${this.store.location}: the server refuses to make claim folders in locks/ (${MAX_UNEXPLAINED_CLAIM_FAILURES} claims since the last one made were answered "Failure" for names that do not exist): ${(error as Error).message}`, {
          hint: 'a full disk or an exhausted inode count on the head, most likely: check df and df -i there',
          cause: error,
        });
      }
    }
  }

  #newClaim(chunk: string, lane: number, writeOwnerNow: boolean, madeAt: number): SftpClaim {
    const { token, text } = newOwnerRecord(this.identity, chunk, lane, this.clock.now());
    // A takeover replaces the old holder's record; a plain claim's late record is created only if
    // there is none: a takeover's record, already there, must not be overwritten by the old holder.
    const writeOwner = writeOwnerNow ? () => this.store.writeFileAtomic(this.ownerPath(chunk), text()) : () => this.store.createFile(this.ownerPath(chunk), text());
    return new SftpClaim(this, chunk, token, writeOwner, writeOwnerNow, madeAt);
  }

  async readOwnerToken(chunk: string): Promise<string | undefined> {
    try {
      const prefix = await this.store.readPrefixPath(this.ownerPath(chunk), TOKEN_LENGTH);
      return prefix.length === TOKEN_LENGTH ? prefix.toString('latin1') : undefined;
    } catch (error) {
      if (isCode(error, 'ENOENT')) return undefined;
      throw error;
    }
  }
}

class SftpClaim implements Claim {
  readonly chunk: string;
  readonly token: string;
  /** When the mkdir that made the lock was sent: the lock's mtime is no older. */
  readonly claimedAt: number;
  #book: SftpClaimBook;
  #lost: Error | undefined;
  #listeners: ((reason: Error) => void)[] = [];
  #ownerWritten: Promise<void> | undefined;
  #ownerTimer: NodeJS.Timeout | undefined;
  #refresh: NodeJS.Timeout;
  /** The mtime (server seconds) we last stamped on the lock. */
  #stamped: number | undefined;
  #released = false;

  constructor(book: SftpClaimBook, chunk: string, token: string, writeOwner: () => Promise<void>, writeOwnerNow: boolean, claimedAt: number) {
    this.#book = book;
    this.claimedAt = claimedAt;
    this.chunk = chunk;
    this.token = token;
    const write = () => {
      if (this.#lost || this.#released) return;
      this.#ownerWritten = writeOwner();
      // A record already there (not ours): the claim was taken over; stillOurs() will tell.
      this.#ownerWritten.catch(() => {});
    };
    if (writeOwnerNow) write();
    else {
      // As on a mount: most chunks end before a record would be worth its round trips.
      this.#ownerTimer = setTimeout(write, OWNER_RECORD_DELAY_MS);
      this.#ownerTimer.unref();
    }
    this.#refresh = setInterval(() => void this.#update().catch(() => {}), book.settings.updateMs);
    this.#refresh.unref();
  }

  get lost(): Error | undefined {
    return this.#lost;
  }

  get ownerWritten(): Promise<void> | undefined {
    return this.#ownerWritten;
  }

  onLost(listener: (reason: Error) => void): void {
    if (this.#lost) listener(this.#lost);
    else this.#listeners.push(listener);
  }

  get oldEnoughToCheck(): boolean {
    return Date.now() - this.claimedAt > this.#book.settings.staleMs / 2;
  }

  #markLost(reason: Error): void {
    if (this.#lost) return;
    this.#lost = reason;
    clearInterval(this.#refresh);
    clearTimeout(this.#ownerTimer);
    for (const listener of this.#listeners.splice(0)) listener(reason);
  }

  async stillOurs(): Promise<boolean> {
    if (this.#lost) return false;
    if (!this.#ownerWritten) return true;
    await this.#ownerWritten;
    const token = await this.#book.readOwnerToken(this.chunk);
    if (token !== undefined && token !== this.token) {
      this.#markLost(new Error(`claim on ${this.chunk} was taken over by another worker`));
      return false;
    }
    return true;
  }

  /** Re-stamp the lock (server time), after checking nobody else made it anew since our stamp. */
  async #update(): Promise<void> {
    if (this.#lost || this.#released) return;
    const lock = this.#book.lockPath(this.chunk);
    const [info, token] = await Promise.all([this.#book.store.statPath(lock).catch((error: unknown) => (isCode(error, 'ENOENT') ? undefined : Promise.reject(error as Error))), this.#book.readOwnerToken(this.chunk)]);
    if (this.#lost || this.#released) return;
    // The token is read even before ours is written: a takeover writes its record at once.
    if (token !== undefined && token !== this.token) return this.#markLost(new Error(`claim on ${this.chunk} was taken over by another worker`));
    if (!info) return this.#markLost(new Error(`claim on ${this.chunk} went away (its lock was removed)`));
    if (this.#stamped !== undefined && info.mtime !== this.#stamped) return this.#markLost(new Error(`claim on ${this.chunk} was taken over by another worker (its lock changed)`));
    const stamp = Math.floor(this.#book.clock.now() / 1000);
    await this.#book.store.utimesPath(lock, stamp);
    this.#stamped = stamp;
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    clearInterval(this.#refresh);
    clearTimeout(this.#ownerTimer);
    if (this.#lost) return;
    await this.#ownerWritten?.catch(() => {});
    const store = this.#book.store;
    // Never remove a claim another worker took: its owner record carries another token.
    const token = await this.#book.readOwnerToken(this.chunk).catch(() => undefined);
    if (token !== undefined && token !== this.token) {
      this.#markLost(new Error(`claim on ${this.chunk} was taken over by another worker`));
      return;
    }
    await Promise.all([token === undefined ? Promise.resolve() : store.unlinkPath(this.#book.ownerPath(this.chunk)).catch(() => {}), store.rmdirPath(this.#book.lockPath(this.chunk)).catch(() => {})]);
  }
}

/**
 * The staging folder's files are this process's own, on a local disk ($TMPDIR): their calls are
 * made inline. Each call through libuv's threads costs a wake-up and a switch or two, which on a
 * busy 2-core host cost the event loop more than the call itself (`make bench`, SFTP rows).
 */
const SMALL_LOCAL_FILE = 1 << 20;

function removeLocal(file: string): void {
  try {
    unlinkSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
