/**
 * A small known_hosts reader and writer, enough to verify host keys the way OpenSSH does (ssh2
 * accepts any key unless it is given a verifier, and no well-kept parser exists on npm).
 *
 * Understood (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"):
 * - `host1,host2,1.2.3.4 TYPE BASE64 [comment]`; patterns with `*`, `?` and negation `!pattern`;
 * - `[host]:port` for ports other than 22 (port 22 is written as the bare host);
 * - hashed names `|1|base64(salt)|base64(hmac-sha1(salt, name))`, as written by `ssh-keygen -H`
 *   and by ssh with `HashKnownHosts yes` (Debian's default);
 * - `@revoked` lines (a revoked key is refused even if another line accepts it) and
 *   `@cert-authority` lines (skipped: host certificates are not supported, so a host known only
 *   through a CA is "unknown").
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { appendFile, mkdir, open, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { errorCode } from '../core/errors.js';

export type HostKeyVerdict = 'match' | 'mismatch' | 'unknown' | 'revoked';

export type KnownHostsNames =
  | { kind: 'patterns'; patterns: string[] }
  | { kind: 'hashed'; salt: Buffer; hash: Buffer };

export interface KnownHostsEntry {
  marker?: 'revoked' | 'cert-authority';
  names: KnownHostsNames;
  keyType: string;
  keyBase64: string;
  /** 1-based line number in its file, for messages ("offending key in known_hosts:12"). */
  line: number;
  file?: string;
}

export interface HostKeyCheck {
  verdict: HostKeyVerdict;
  /** The entries for this host (all key types), e.g. to show which line a changed key contradicts. */
  entries: KnownHostsEntry[];
}

/** Parse known_hosts text. Lines that cannot be understood are skipped, as ssh does. */
export function parseKnownHosts(text: string, file?: string): KnownHostsEntry[] {
  const entries: KnownHostsEntry[] = [];
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    let marker: KnownHostsEntry['marker'];
    if (fields[0]?.startsWith('@')) {
      const name = fields.shift();
      if (name === '@revoked') marker = 'revoked';
      else if (name === '@cert-authority') marker = 'cert-authority';
      else return; // unknown marker: ignore the line, like ssh
    }
    const [hostField, keyType, keyBase64] = fields;
    if (!hostField || !keyType || !keyBase64) return;
    const names = parseNames(hostField);
    if (!names) return;
    const entry: KnownHostsEntry = { names, keyType, keyBase64, line: index + 1 };
    if (marker) entry.marker = marker;
    if (file !== undefined) entry.file = file;
    entries.push(entry);
  });
  return entries;
}

function parseNames(field: string): KnownHostsNames | undefined {
  if (field.startsWith('|1|')) {
    const [, , salt, hash] = field.split('|');
    if (!salt || !hash) return undefined;
    return { kind: 'hashed', salt: Buffer.from(salt, 'base64'), hash: Buffer.from(hash, 'base64') };
  }
  if (field.startsWith('|')) return undefined; // another hash scheme: cannot match it
  return { kind: 'patterns', patterns: field.split(',').filter((p) => p !== '') };
}

/** An entry as a known_hosts line (hashed names stay hashed: they still match the same host). */
export function formatKnownHostsEntry(entry: KnownHostsEntry): string {
  const names =
    entry.names.kind === 'hashed'
      ? `|1|${entry.names.salt.toString('base64')}|${entry.names.hash.toString('base64')}`
      : entry.names.patterns.join(',');
  const marker = entry.marker ? `@${entry.marker} ` : '';
  return `${marker}${names} ${entry.keyType} ${entry.keyBase64}`;
}

/** The plain (unmarked) entries that name a host: what a copy of its known_hosts lines needs. */
export function entriesForHost(entries: readonly KnownHostsEntry[], host: string, port: number): KnownHostsEntry[] {
  return entries.filter((e) => e.marker === undefined && entryMatchesHost(e, host, port));
}

/** The name ssh looks up: `host` on port 22, `[host]:port` otherwise. */
export function hostLookupName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** `|1|salt|hash` for a lookup name, as `ssh-keygen -H` writes it (fresh random salt by default). */
export function hashHostName(name: string, salt: Buffer = randomBytes(20)): string {
  const hash = createHmac('sha1', salt).update(name).digest();
  return `|1|${salt.toString('base64')}|${hash.toString('base64')}`;
}

/** Does this entry name the host? (For plain patterns: any positive match and no negated one.) */
export function entryMatchesHost(entry: KnownHostsEntry, host: string, port: number): boolean {
  const name = hostLookupName(host, port);
  if (entry.names.kind === 'hashed') {
    const hash = createHmac('sha1', entry.names.salt).update(name).digest();
    return hash.length === entry.names.hash.length && hash.equals(entry.names.hash);
  }
  let matched = false;
  for (const pattern of entry.names.patterns) {
    const negated = pattern.startsWith('!');
    if (globMatch(negated ? pattern.slice(1) : pattern, name)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

/** ssh's match_pattern: `*` and `?` wildcards, case-insensitive (host names are). */
function globMatch(pattern: string, text: string): boolean {
  const source = pattern
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.|+()[\]{}]/g, '\\$&')))
    .join('');
  return new RegExp(`^${source}$`, 'is').test(text);
}

function sameKey(entry: KnownHostsEntry, keyType: string, keyBase64: string): boolean {
  return entry.keyType === keyType && Buffer.from(entry.keyBase64, 'base64').equals(Buffer.from(keyBase64, 'base64'));
}

/**
 * The verdict for a presented key, from parsed entries:
 * - 'revoked'  a matching `@revoked` line lists this key (whatever else says);
 * - 'match'    a line for this host lists this key;
 * - 'mismatch' the host is known, but not with this key — a different key of the same type, or
 *              only keys of other types. (OpenSSH would ask in the second case; we refuse: our
 *              connection prefers the key types already known, so reaching another type means the
 *              host no longer offers them, and a person should look.)
 * - 'unknown'  nothing names this host.
 */
export function judgeHostKey(
  entries: readonly KnownHostsEntry[],
  host: string,
  port: number,
  keyType: string,
  keyBase64: string,
): HostKeyCheck {
  const forHost = entries.filter((e) => e.marker !== 'cert-authority' && entryMatchesHost(e, host, port));
  const plain = forHost.filter((e) => e.marker === undefined);
  const revoked = entries.some((e) => e.marker === 'revoked' && sameKey(e, keyType, keyBase64) && entryMatchesHost(e, host, port));
  let verdict: HostKeyVerdict;
  if (revoked) verdict = 'revoked';
  else if (plain.some((e) => sameKey(e, keyType, keyBase64))) verdict = 'match';
  else if (plain.length > 0) verdict = 'mismatch';
  else verdict = 'unknown';
  return { verdict, entries: plain };
}

/** Read and parse known_hosts files; a missing file counts as empty. */
export async function readKnownHosts(files: string | readonly string[]): Promise<KnownHostsEntry[]> {
  const entries: KnownHostsEntry[] = [];
  for (const file of typeof files === 'string' ? [files] : files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') continue;
      throw error;
    }
    entries.push(...parseKnownHosts(text, file));
  }
  return entries;
}

/** Check a presented host key against one or more known_hosts files. */
export async function checkHostKey(
  files: string | readonly string[],
  host: string,
  port: number,
  keyType: string,
  keyBase64: string,
): Promise<HostKeyVerdict> {
  return judgeHostKey(await readKnownHosts(files), host, port, keyType, keyBase64).verdict;
}

/** The key types recorded for a host, to prefer them when negotiating (as OpenSSH does). */
export async function knownKeyTypes(files: string | readonly string[], host: string, port: number): Promise<string[]> {
  const entries = await readKnownHosts(files);
  const types = entries.filter((e) => e.marker === undefined && entryMatchesHost(e, host, port)).map((e) => e.keyType);
  return [...new Set(types)];
}

// Appends from concurrent connections in this process are serialised, so lines never interleave.
let appendQueue: Promise<unknown> = Promise.resolve();

/**
 * Record a host key, like OpenSSH's `StrictHostKeyChecking accept-new`: one line appended, hashed
 * by default (`hash: false` writes the plain `[host]:port` name). Creates the file (0600) and its
 * folder (0700) when missing. Returns the line written.
 */
export function appendHostKey(
  file: string,
  host: string,
  port: number,
  keyType: string,
  keyBase64: string,
  options: { hash?: boolean } = {},
): Promise<string> {
  const name = hostLookupName(host, port);
  const line = `${options.hash === false ? name : hashHostName(name)} ${keyType} ${keyBase64}`;
  const task = appendQueue.then(async () => {
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    // A file whose last line has no newline would glue our entry onto it.
    const prefix = (await endsWithoutNewline(file)) ? '\n' : '';
    await appendFile(file, `${prefix}${line}\n`, { mode: 0o600 });
    return line;
  });
  appendQueue = task.catch(() => undefined);
  return task;
}

async function endsWithoutNewline(file: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return false;
    throw error;
  }
  try {
    const { size } = await handle.stat();
    if (size === 0) return false;
    const last = Buffer.alloc(1);
    await handle.read(last, 0, 1, size - 1);
    return last[0] !== 0x0a;
  } finally {
    await handle.close();
  }
}

/** The key type named inside an SSH public key blob (its first string), e.g. `ssh-ed25519`. */
export function keyTypeOfBlob(blob: Buffer): string {
  if (blob.length < 4) throw new Error('host key blob too short');
  const length = blob.readUInt32BE(0);
  if (length > blob.length - 4 || length > 64) throw new Error('host key blob is malformed');
  return blob.subarray(4, 4 + length).toString('latin1');
}

/** OpenSSH's fingerprint of a key: `SHA256:` and unpadded base64 of the blob's SHA-256. */
export function keyFingerprint(keyBase64: string): string {
  const digest = createHash('sha256').update(Buffer.from(keyBase64, 'base64')).digest('base64');
  return `SHA256:${digest.replace(/=+$/, '')}`;
}
