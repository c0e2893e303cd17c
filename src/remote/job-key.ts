/**
 * Per-job keys (issue 12). The key sshfs or an SFTP worker uses to reach the head travels where
 * others can read it (a cloud instance's metadata: any process there may). So launch makes one
 * ed25519 key pair per job, comment `piecework-job-<id>`, and installs its public half on the
 * head as an SFTP-only key:
 *
 *     restrict,command="internal-sftp" ssh-ed25519 AAAA… piecework-job-<id>
 *
 * — whoever holds it can read and write the user's files over SFTP, and nothing else: no shell,
 * no forwarding. `launch --delete` removes that line (only lines whose comment is the job's) and
 * forgets the key.
 *
 * Where the private key lives: on the machine that launched, under
 * `~/.config/piecework/job-keys/<id>` (0600, folder 0700; `PIECEWORK_JOB_KEYS_DIR` overrides), with
 * `<id>.json` naming the heads it was installed on. Never in the job folder: every host, instance
 * and command of the job reads that folder, and a new split may replace it. Found again by the
 * job's id, a rerun of launch reuses the key and `--delete` knows where to revoke it without
 * `--mount`. The head is reached as the launching user (agent, ~/.ssh/id_*, `--identity`), its
 * host key checked against known_hosts as for every other connection of launch.
 *
 * Nothing here prints: progress goes to `onEvent`.
 */
import { generateKeyPairSync, randomBytes, randomInt } from 'node:crypto';
import { link, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { errorCode, PieceworkError } from '../core/errors.js';
import { formatHost } from './hosts.js';
import { connectHost, defaultKnownHostsFiles, loadCredentials } from './ssh.js';
import { renderTemplate } from './templates.js';
import type { NodeSSH } from 'node-ssh';

export interface JobKey {
  jobId: string;
  /** `piecework-job-<id>`: the comment of the key, and what marks the job's authorized_keys lines. */
  comment: string;
  /** OpenSSH-format private key (unencrypted: it is written into the instances' scripts). */
  privateKey: string;
  /** `ssh-ed25519 AAAA… piecework-job-<id>`. */
  publicKey: string;
  /** Where the private key is (or would be) kept on this machine. */
  file: string;
}

/** A head the key is installed on, as launch reached it. */
export interface KeyHead {
  user?: string;
  host: string;
  port: number;
  /** The authorized_keys file on the head; default ~/.ssh/authorized_keys (`PIECEWORK_HEAD_AUTHORIZED_KEYS`). */
  authorizedKeys?: string;
}

/** How launch logs in to the head: as the launching user, host key checked. */
export interface HeadLogin {
  identityFiles?: readonly string[];
  agent?: string | false;
  knownHostsFiles?: readonly string[];
  acceptNewHostKeys?: boolean;
  connectTimeoutMs?: number;
}

export type JobKeyEvent =
  | { type: 'job-key:created'; comment: string; file: string }
  | { type: 'job-key:installed'; comment: string; head: string; file: string; result: 'added' | 'present' }
  | { type: 'job-key:revoked'; comment: string; head: string; file: string; result: 'removed' | 'absent'; lines: number }
  | { type: 'job-key:forgotten'; comment: string; file: string };

export interface RevokeOutcome {
  comment: string;
  /** The local private key (deleted unless a head failed). */
  file: string;
  revoked: { head: string; file: string; result: 'removed' | 'absent'; lines: number }[];
  /** Heads that could not be reached or edited: the key is kept, so that --delete can try again. */
  failed: { head: string; message: string; hint?: string }[];
}

export function jobKeyComment(jobId: string): string {
  return `piecework-job-${jobId}`;
}

/** The folder of the launching user's job keys. */
export function jobKeysDir(env: NodeJS.ProcessEnv = process.env): string {
  const override = env['PIECEWORK_JOB_KEYS_DIR'];
  if (override) return override;
  return join(env['XDG_CONFIG_HOME'] || join(homedir(), '.config'), 'piecework', 'job-keys');
}

/** The line the head gets: files over SFTP, nothing else. */
export function sftpOnlyLine(key: Pick<JobKey, 'publicKey'>): string {
  return `restrict,command="internal-sftp" ${key.publicKey}`;
}

/** The authorized_keys file to edit on the head: `PIECEWORK_HEAD_AUTHORIZED_KEYS` (tests), else sshd's default. */
export function headAuthorizedKeys(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env['PIECEWORK_HEAD_AUTHORIZED_KEYS'] || undefined;
}

const keyFile = (jobId: string): string => join(jobKeysDir(), checkedId(jobId));
const recordFile = (jobId: string): string => `${keyFile(jobId)}.json`;

function checkedId(jobId: string): string {
  // The id names a file here and marks lines on the head: letters and digits only (as job.json's).
  if (!/^[A-Za-z0-9]{1,64}$/.test(jobId)) throw new PieceworkError(`job id ${JSON.stringify(jobId)} cannot name a job key (letters and digits only)`);
  return jobId;
}

/** A new key pair, in memory only (a dry run shows a script with one). */
export function generateJobKey(jobId: string): JobKey {
  const comment = jobKeyComment(checkedId(jobId));
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  // The raw 32-byte halves are the tails of the DER encodings (SPKI and PKCS#8 have fixed prefixes for ed25519).
  const pub = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const seed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32);
  const blob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
  return { jobId, comment, privateKey: openSshPrivateKey(blob, pub, seed, comment), publicKey: `ssh-ed25519 ${blob.toString('base64')} ${comment}`, file: keyFile(jobId) };
}

/** The job's key kept on this machine, if there is one. */
export async function readJobKey(jobId: string): Promise<JobKey | undefined> {
  const file = keyFile(jobId);
  let privateKey: string;
  try {
    privateKey = await readFile(file, 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return undefined;
    throw error;
  }
  const comment = jobKeyComment(jobId);
  const blob = publicBlobOf(privateKey);
  if (!blob) throw new PieceworkError(`${file} is not an OpenSSH private key`, { hint: `remove it (and ${recordFile(jobId)}) to let launch make a new job key` });
  return { jobId, comment, privateKey, publicKey: `ssh-ed25519 ${blob.toString('base64')} ${comment}`, file };
}

/**
 * The job's key: the one kept here, or a new one written 0600 (a link from a temp file, so two
 * launches of one job at once end up with the same key: the second one's link fails and it reads
 * the first one's).
 */
export async function ensureJobKey(jobId: string, onEvent?: (event: JobKeyEvent) => void): Promise<JobKey> {
  const existing = await readJobKey(jobId);
  if (existing) return existing;
  const key = generateJobKey(jobId);
  await mkdir(jobKeysDir(), { recursive: true, mode: 0o700 });
  const temporary = `${key.file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temporary, key.privateKey, { mode: 0o600, flag: 'wx' });
    await link(temporary, key.file);
  } catch (error) {
    if (errorCode(error) !== 'EEXIST') throw error;
    return (await readJobKey(jobId)) ?? key;
  } finally {
    await rm(temporary, { force: true });
  }
  onEvent?.({ type: 'job-key:created', comment: key.comment, file: key.file });
  return key;
}

/** Add the key to the head's authorized_keys (SFTP only); idempotent. The head is recorded first, so --delete revokes even a half-done install. */
export async function installJobKey(key: JobKey, head: KeyHead, login: HeadLogin, onEvent?: (event: JobKeyEvent) => void): Promise<{ head: string; file: string; result: 'added' | 'present' }> {
  await rememberHead(key.jobId, head);
  const out = await onHead(head, login, { PW_KEY_ACTION: 'add', PW_KEY_COMMENT: key.comment, PW_KEY_LINE: sftpOnlyLine(key), PW_AUTHORIZED_KEYS: head.authorizedKeys }, 'add the job key');
  const result = out['result'] === 'present' ? 'present' : 'added';
  const outcome = { head: formatHost(head), file: out['file'] ?? '~/.ssh/authorized_keys', result } as const;
  onEvent?.({ type: 'job-key:installed', comment: key.comment, ...outcome });
  return outcome;
}

/** The heads the job's key was installed on, and whether a key is kept here (for a dry run). */
export async function jobKeyRecord(jobId: string): Promise<{ heads: KeyHead[]; keyFile?: string } | undefined> {
  const heads = await readHeads(jobId);
  const key = await readJobKey(jobId).catch(() => undefined);
  if (heads.length === 0 && !key) return undefined;
  return { heads, ...(key ? { keyFile: key.file } : {}) };
}

/**
 * Remove the job's lines from the authorized_keys of every head it was installed on, then the key
 * here. Undefined when this machine has no key of the job. A head that cannot be reached is
 * reported in `failed`, and the key and record are kept for another try.
 */
export async function revokeJobKey(jobId: string, login: HeadLogin, onEvent?: (event: JobKeyEvent) => void): Promise<RevokeOutcome | undefined> {
  const comment = jobKeyComment(checkedId(jobId));
  const heads = await readHeads(jobId);
  const file = keyFile(jobId);
  const keyKept = await readFile(file).then(() => true, () => false);
  if (heads.length === 0 && !keyKept) return undefined;
  const outcome: RevokeOutcome = { comment, file, revoked: [], failed: [] };
  const left: KeyHead[] = [];
  for (const head of heads) {
    try {
      const out = await onHead(head, login, { PW_KEY_ACTION: 'remove', PW_KEY_COMMENT: comment, PW_AUTHORIZED_KEYS: head.authorizedKeys }, 'revoke the job key');
      const revoked = { head: formatHost(head), file: out['file'] ?? '~/.ssh/authorized_keys', result: out['result'] === 'removed' ? ('removed' as const) : ('absent' as const), lines: Number(out['lines'] ?? 0) };
      outcome.revoked.push(revoked);
      onEvent?.({ type: 'job-key:revoked', comment, ...revoked });
    } catch (error) {
      if (!(error instanceof PieceworkError)) throw error;
      left.push(head);
      // Why, without the "cannot revoke the job key on the head H:" the caller says itself.
      const message = error.message.replace(/^cannot revoke the job key on the head \S+: /, '');
      outcome.failed.push({ head: formatHost(head), message, ...(error.hint ? { hint: error.hint } : {}) });
    }
  }
  if (left.length > 0) {
    await writeHeads(jobId, left);
    return outcome;
  }
  await rm(recordFile(jobId), { force: true });
  if (keyKept) {
    await rm(file, { force: true });
    onEvent?.({ type: 'job-key:forgotten', comment, file });
  }
  return outcome;
}

// ---------------------------------------------------------------------------------------------

async function readHeads(jobId: string): Promise<KeyHead[]> {
  try {
    const record = JSON.parse(await readFile(recordFile(jobId), 'utf8')) as { heads?: KeyHead[] };
    return Array.isArray(record.heads) ? record.heads.filter((h) => typeof h.host === 'string' && Number.isInteger(h.port)) : [];
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return [];
    throw new PieceworkError(`cannot read ${recordFile(jobId)}: ${(error as Error).message}`, { hint: 'it lists the heads the job key was installed on; fix or remove it' });
  }
}

async function rememberHead(jobId: string, head: KeyHead): Promise<void> {
  const heads = await readHeads(jobId);
  const same = (h: KeyHead): boolean => h.host === head.host && h.port === head.port && h.user === head.user && h.authorizedKeys === head.authorizedKeys;
  if (!heads.some(same)) await writeHeads(jobId, [...heads, head]);
}

async function writeHeads(jobId: string, heads: KeyHead[]): Promise<void> {
  await mkdir(jobKeysDir(), { recursive: true, mode: 0o700 });
  const file = recordFile(jobId);
  const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temporary, `${JSON.stringify({ jobId, comment: jobKeyComment(jobId), heads }, null, 2)}\n`, { mode: 0o600 });
  await rename(temporary, file);
}

/** What to check when launch cannot do something on the head. */
function headHint(head: KeyHead, what: string): string {
  return `launch logs in to the head as you (agent, ~/.ssh/id_*, or --identity) to ${what}; check that \`ssh ${head.port === 22 ? '' : `-p ${head.port} `}${head.user ? `${head.user}@` : ''}${head.host} true\` works from here`;
}

/**
 * Log in to the head as the launching user (agent, ~/.ssh/id_*, `--identity`), its host key
 * checked against known_hosts; a PieceworkError saying what could not be done (`what`) otherwise.
 */
export async function connectToHead(head: KeyHead, login: HeadLogin, what: string): Promise<NodeSSH> {
  const label = formatHost(head);
  const knownHostsFiles = login.knownHostsFiles ? [...login.knownHostsFiles] : defaultKnownHostsFiles();
  const credentials = await loadCredentials({
    ...(login.identityFiles ? { identityFiles: login.identityFiles } : {}),
    ...(login.agent !== undefined ? { agent: login.agent } : {}),
  });
  const connection = await connectHost(
    { host: head.host, port: head.port, ...(head.user ? { user: head.user } : {}) },
    {
      credentials,
      hostKeys: { knownHostsFiles, acceptNew: login.acceptNewHostKeys ?? false },
      ...(login.connectTimeoutMs !== undefined ? { readyTimeoutMs: login.connectTimeoutMs } : {}),
      retries: 2,
    },
  );
  if (connection.status !== 'connected') {
    throw new PieceworkError(`cannot ${what} on the head ${label}: ${connection.message.replace(`${label}: `, '')}`, { hint: connection.hint ?? headHint(head, what) });
  }
  return connection.ssh;
}

/** Run templates/authorized-keys.sh on the head as the launching user; its `key=value` lines. */
async function onHead(head: KeyHead, login: HeadLogin, values: Record<string, string | undefined>, what: string): Promise<Record<string, string>> {
  const label = formatHost(head);
  const hint = headHint(head, what);
  const ssh = await connectToHead(head, login, what);
  try {
    const script = await renderTemplate('authorized-keys.sh', values);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new PieceworkError(`cannot ${what} on the head ${label}: no answer within 60 s`, { hint })), 60_000);
    });
    const run = await Promise.race([ssh.execCommand('sh -s', { stdin: script }), timeout]).finally(() => clearTimeout(timer));
    const out: Record<string, string> = {};
    for (const line of run.stdout.split('\n')) {
      const match = /^piecework-keys: ([a-z_]+)=(.*)$/.exec(line.trimEnd());
      if (match) out[match[1] as string] = match[2] as string;
    }
    if (run.code !== 0 || out['result'] === undefined) {
      const why = run.stderr.trim().split('\n').pop() || `exit ${run.code}`;
      throw new PieceworkError(`cannot ${what} on the head ${label}: ${why.replace(/^piecework-keys: error: /, '')}`, { hint: `${out['file'] ?? '~/.ssh/authorized_keys'} on the head: is it writable by ${head.user ?? 'you'}?` });
    }
    return out;
  } finally {
    ssh.dispose();
  }
}

// --- the OpenSSH private key format (PROTOCOL.key), unencrypted, one ed25519 key -----------------

function sshString(value: string | Buffer): Buffer {
  const data = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  return Buffer.concat([length, data]);
}

function uint32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value);
  return b;
}

function openSshPrivateKey(publicBlob: Buffer, pub: Buffer, seed: Buffer, comment: string): string {
  const check = randomInt(0, 2 ** 32 - 1);
  let secret = Buffer.concat([uint32(check), uint32(check), sshString('ssh-ed25519'), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]);
  // Padded with 1, 2, 3… to the cipher's block size (8 for "none").
  const padding = (8 - (secret.length % 8)) % 8;
  secret = Buffer.concat([secret, Buffer.from(Array.from({ length: padding }, (_, i) => i + 1))]);
  const body = Buffer.concat([Buffer.from('openssh-key-v1\0', 'latin1'), sshString('none'), sshString('none'), sshString(''), uint32(1), sshString(publicBlob), sshString(secret)]);
  const lines = body.toString('base64').match(/.{1,70}/g) ?? [];
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines.join('\n')}\n-----END OPENSSH PRIVATE KEY-----\n`;
}

/** The public key blob stored (unencrypted) in an OpenSSH private key file. */
function publicBlobOf(privateKey: string): Buffer | undefined {
  const body = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(privateKey)?.[1];
  if (!body) return undefined;
  const blob = Buffer.from(body.replace(/\s+/g, ''), 'base64');
  const magic = 'openssh-key-v1\0';
  if (blob.subarray(0, magic.length).toString('latin1') !== magic) return undefined;
  let at = magic.length;
  const next = (): Buffer | undefined => {
    if (at + 4 > blob.length) return undefined;
    const length = blob.readUInt32BE(at);
    const value = blob.subarray(at + 4, at + 4 + length);
    at += 4 + length;
    return value.length === length ? value : undefined;
  };
  next(); // cipher
  next(); // kdf
  next(); // kdf options
  at += 4; // number of keys
  return next();
}
