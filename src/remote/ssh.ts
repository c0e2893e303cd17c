/**
 * SSH connections for `launch`, on node-ssh (ssh2 underneath), with what ssh2 leaves out:
 * host keys checked against known_hosts (ssh2 accepts any key unless given a verifier), the
 * user's default key files (node-ssh reads none), an error listener that outlives the handshake
 * (node-ssh removes its own, and a later reset would crash the process), and bounded, retried
 * connects (sshd's default `MaxStartups 10:30:100` drops bursts of new connections).
 */
import { readFile } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NodeSSH, type Config } from 'node-ssh';
import type { AnyAuthMethod, ConnectConfig } from 'ssh2';
import { UsageError, errorCode } from '../core/errors.js';
import { formatHost } from './hosts.js';
import { appendHostKey, entryMatchesHost, judgeHostKey, keyFingerprint, keyTypeOfBlob, readKnownHosts } from './known-hosts.js';

export interface SshTarget {
  host: string;
  port: number;
  /** Defaults to the local user name, as `ssh` does. */
  user?: string;
}

/** Credentials, resolved once for all hosts by `loadCredentials`. */
export interface SshCredentials {
  /** Path of the agent's socket (`SSH_AUTH_SOCK`), tried first. */
  agent?: string;
  /** Private keys (file contents), tried in order after the agent. */
  keys: { file: string; text: string }[];
}

export interface HostKeyPolicy {
  /** Files to check; the first is where new keys are recorded. */
  knownHostsFiles: string[];
  /** Record the key of a host not yet known (OpenSSH's accept-new). Changed keys are never accepted. */
  acceptNew: boolean;
  /** Write new entries hashed (`|1|…`, as with `HashKnownHosts yes`); default true. */
  hashNewEntries?: boolean;
}

export interface ConnectOptions {
  credentials: SshCredentials;
  hostKeys: HostKeyPolicy;
  /** TCP connect + handshake + authentication, per attempt (ms). Default 20 000. */
  readyTimeoutMs?: number;
  /** Attempts after the first when the server drops the connection early. Default 4. */
  retries?: number;
  /** First back-off delay (ms), doubled each time, with jitter. Default 500. */
  retryBaseMs?: number;
  /** Keep-alive probes (ms apart) and how many may go unanswered; defaults 15 000 and 3. */
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  onRetry?: (info: { attempt: number; delayMs: number; reason: string }) => void;
  onHostKeyRecorded?: (info: { file: string; keyType: string; fingerprint: string }) => void;
}

export interface PresentedHostKey {
  keyType: string;
  fingerprint: string;
}

export type ConnectFailureStatus =
  | 'unreachable'
  | 'auth-failed'
  | 'host-key-unknown'
  | 'host-key-changed'
  | 'host-key-revoked'
  | 'error';

export type ConnectResult =
  | {
      status: 'connected';
      ssh: NodeSSH;
      hostKey: PresentedHostKey;
      /** The key was not known and has just been recorded (accept-new). */
      hostKeyRecorded: boolean;
      attempts: number;
      /** Errors the connection reported after it was established (resets, timeouts). */
      laterErrors: Error[];
    }
  | {
      status: ConnectFailureStatus;
      message: string;
      hint?: string;
      hostKey?: PresentedHostKey;
      attempts: number;
    };

export const defaultKnownHostsFiles = (): string[] => [join(homedir(), '.ssh', 'known_hosts'), '/etc/ssh/ssh_known_hosts'];

const defaultIdentityNames = ['id_ed25519', 'id_ecdsa', 'id_rsa'];

/**
 * Gather credentials once: the agent (`agent` or `SSH_AUTH_SOCK`; `false`: none), then the identity files given,
 * or — when none are given — the user's unencrypted default keys (~/.ssh/id_ed25519, id_ecdsa,
 * id_rsa), as `ssh` would try them. Encrypted keys need the agent (ssh-add).
 */
export async function loadCredentials(options: { identityFiles?: readonly string[]; agent?: string | false } = {}): Promise<SshCredentials> {
  const agent = options.agent === false ? undefined : (options.agent ?? process.env['SSH_AUTH_SOCK']);
  const explicit = options.identityFiles ?? [];
  const keys: SshCredentials['keys'] = [];
  const candidates = explicit.length > 0 ? explicit : defaultIdentityNames.map((name) => join(homedir(), '.ssh', name));
  for (const file of candidates) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if (explicit.length === 0 && errorCode(error) === 'ENOENT') continue;
      throw new UsageError(`cannot read identity file ${file}: ${(error as Error).message}`);
    }
    if (isEncryptedPrivateKey(text)) {
      if (explicit.length === 0) continue; // the agent probably holds it
      throw new UsageError(`identity file ${file} is protected by a passphrase`, `load it into the agent (ssh-add ${file}) and run again without --identity`);
    }
    keys.push({ file, text });
  }
  const credentials: SshCredentials = { keys };
  if (agent) credentials.agent = agent;
  if (!credentials.agent && keys.length === 0) {
    throw new UsageError('no SSH credentials: no agent (SSH_AUTH_SOCK) and no usable key in ~/.ssh', 'start ssh-agent and ssh-add a key, or pass --identity FILE');
  }
  return credentials;
}

/** True for an OpenSSH-format key whose cipher is not "none", or a PEM key marked ENCRYPTED. */
export function isEncryptedPrivateKey(text: string): boolean {
  if (/Proc-Type:\s*4,ENCRYPTED|BEGIN ENCRYPTED PRIVATE KEY/.test(text)) return true;
  const body = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(text)?.[1];
  if (!body) return false;
  const blob = Buffer.from(body.replace(/\s+/g, ''), 'base64');
  const magic = 'openssh-key-v1\0';
  if (blob.subarray(0, magic.length).toString('latin1') !== magic || blob.length < magic.length + 4) return false;
  const length = blob.readUInt32BE(magic.length);
  return blob.subarray(magic.length + 4, magic.length + 4 + length).toString('latin1') !== 'none';
}

// ssh2's defaults, in its order; a host's known key types are moved to the front (as OpenSSH does)
// so that the key we are shown is one we can check, not a new type that looks "unknown".
const hostKeyAlgorithms = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'];

export function preferredHostKeyAlgorithms(knownTypes: readonly string[]): string[] | undefined {
  const preferred = knownTypes.flatMap((type) => (type === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [type])).filter((a) => hostKeyAlgorithms.includes(a));
  if (preferred.length === 0) return undefined;
  return [...new Set([...preferred, ...hostKeyAlgorithms])];
}

/** Connect to one host, retrying only when the server dropped the connection before the handshake. */
export async function connectHost(target: SshTarget, options: ConnectOptions): Promise<ConnectResult> {
  const retries = options.retries ?? 4;
  const baseMs = options.retryBaseMs ?? 500;
  let attempt = 0;
  for (;;) {
    attempt += 1;
    const { result, retryable } = await connectOnce(target, options, attempt);
    if (!retryable || attempt > retries || result.status === 'connected') return result;
    // Exponential back-off with full jitter, so that a burst of launches does not retry in step.
    const delayMs = Math.round(Math.min(8000, baseMs * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2));
    options.onRetry?.({ attempt, delayMs, reason: result.message });
    await sleep(delayMs);
  }
}

interface Attempt {
  result: ConnectResult;
  retryable: boolean;
}

async function connectOnce(target: SshTarget, options: ConnectOptions, attempts: number): Promise<Attempt> {
  const { host, port } = target;
  const username = target.user ?? userInfo().username;
  const label = formatHost({ host, port, user: target.user });
  const policy = options.hostKeys;
  // Read afresh on every attempt: another connection of this launch may have just recorded a key.
  const entries = await readKnownHosts(policy.knownHostsFiles);
  const knownTypes = [...new Set(entries.filter((e) => e.marker === undefined && entryMatchesHost(e, host, port)).map((e) => e.keyType))];

  let presented: PresentedHostKey | undefined;
  let refusal: { status: ConnectFailureStatus; message: string; hint?: string } | undefined;
  let recorded = false;

  const hostVerifier = (key: Buffer, verify: (valid: boolean) => void): void => {
    void (async () => {
      const keyType = keyTypeOfBlob(key);
      const keyBase64 = key.toString('base64');
      presented = { keyType, fingerprint: keyFingerprint(keyBase64) };
      const check = judgeHostKey(entries, host, port, keyType, keyBase64);
      switch (check.verdict) {
        case 'match':
          return verify(true);
        case 'unknown':
          if (policy.acceptNew) {
            const file = policy.knownHostsFiles[0];
            if (file === undefined) throw new Error('no known_hosts file to record the new key in');
            await appendHostKey(file, host, port, keyType, keyBase64, { hash: policy.hashNewEntries ?? true });
            recorded = true;
            options.onHostKeyRecorded?.({ file, keyType, fingerprint: presented.fingerprint });
            return verify(true);
          }
          refusal = {
            status: 'host-key-unknown',
            message: `host key of ${label} is not known (${keyType} ${presented.fingerprint})`,
            hint: `check the fingerprint with the host's owner, then run again with --accept-new-host-keys (or: ssh-keyscan -p ${port} ${host} >> ~/.ssh/known_hosts)`,
          };
          return verify(false);
        case 'mismatch': {
          const where = check.entries.map((e) => `${e.file ?? 'known_hosts'}:${e.line} (${e.keyType})`).join(', ');
          refusal = {
            status: 'host-key-changed',
            message: `HOST KEY OF ${label} HAS CHANGED — refusing to connect. It now presents ${keyType} ${presented.fingerprint}; known_hosts has ${where}. Someone could be intercepting the connection, or the host was reinstalled.`,
            hint: `if the change is expected, remove the old entry (ssh-keygen -R ${port === 22 ? host : `'[${host}]:${port}'`}${policy.knownHostsFiles[0] ? ` -f ${policy.knownHostsFiles[0]}` : ''}) and check the new fingerprint`,
          };
          return verify(false);
        }
        case 'revoked':
          refusal = {
            status: 'host-key-revoked',
            message: `host key of ${label} (${keyType} ${presented.fingerprint}) is marked @revoked in known_hosts — refusing to connect`,
          };
          return verify(false);
      }
    })().catch((error: unknown) => {
      refusal = { status: 'error', message: `cannot check the host key of ${label}: ${(error as Error).message}` };
      verify(false);
    });
  };

  const authHandler: AnyAuthMethod[] = [];
  if (options.credentials.agent) authHandler.push({ type: 'agent', username, agent: options.credentials.agent });
  for (const key of options.credentials.keys) authHandler.push({ type: 'publickey', username, key: key.text });

  const config: Config = {
    host,
    port,
    username,
    authHandler,
    hostVerifier,
    readyTimeout: options.readyTimeoutMs ?? 20_000,
    // Notice a dead host during a long upload or command: 3 missed keep-alives 15 s apart.
    keepaliveInterval: options.keepaliveIntervalMs ?? 15_000,
    keepaliveCountMax: options.keepaliveCountMax ?? 3,
  };
  const algorithms = preferredHostKeyAlgorithms(knownTypes);
  if (algorithms) config.algorithms = { serverHostKey: algorithms as NonNullable<ConnectConfig['algorithms']>['serverHostKey'] };

  const ssh = new NodeSSH();
  try {
    const connecting = ssh.connect(config);
    // Nagle's algorithm off from the first byte: the handshake's small packets (NEWKEYS, then the
    // service request…) otherwise wait for the server's delayed ACK, ~40 ms each time. node-ssh
    // makes the ssh2 client and its socket synchronously, before its first await.
    (ssh.connection as unknown as { _sock?: { setNoDelay?: (on: boolean) => void } } | null)?._sock?.setNoDelay?.(true);
    await connecting;
  } catch (error) {
    ssh.dispose();
    if (refusal) return { result: { ...refusal, ...(presented ? { hostKey: presented } : {}), attempts }, retryable: false };
    const { retryable, ...failure } = classifyConnectError(error as Error, label);
    return { result: { ...failure, attempts }, retryable };
  }
  // node-ssh drops its 'error' listener once connected; without one, a later reset would be an
  // uncaught 'error' event and take the whole launch down. Keep the errors for the caller instead.
  const laterErrors: Error[] = [];
  ssh.connection?.on('error', (error: Error) => laterErrors.push(error));
  const hostKey = presented ?? { keyType: 'unknown', fingerprint: '' };
  return { result: { status: 'connected', ssh, hostKey, hostKeyRecorded: recorded, attempts, laterErrors }, retryable: false };
}

const unreachableCodes = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTDOWN', 'EADDRNOTAVAIL']);

/** Map an ssh2/node-ssh connect error to a per-host status. */
export function classifyConnectError(
  error: Error,
  label: string,
): { status: ConnectFailureStatus; message: string; hint?: string; retryable: boolean } {
  const code = errorCode(error);
  const level = (error as { level?: unknown }).level;
  const message = error.message;
  if (level === 'client-authentication' || /authentication methods failed/i.test(message)) {
    return { status: 'auth-failed', message: `${label}: authentication failed (publickey)`, hint: 'check the user name, that the key is in the host\'s authorized_keys, and that the agent holds it (ssh-add -l)', retryable: false };
  }
  if (/Timed out while waiting for handshake/i.test(message) || level === 'client-timeout') {
    return { status: 'unreachable', message: `${label}: no SSH handshake within the timeout`, retryable: false };
  }
  if (code && unreachableCodes.has(code)) {
    const why: Record<string, string> = {
      ECONNREFUSED: 'connection refused (no sshd on that port?)',
      ENOTFOUND: 'no such host name',
      EAI_AGAIN: 'host name lookup failed (DNS)',
      ETIMEDOUT: 'connection timed out',
    };
    return { status: 'unreachable', message: `${label}: ${why[code] ?? code}`, retryable: false };
  }
  // The server closed or reset the connection before the handshake: sshd's MaxStartups refusing a
  // burst looks exactly like this, so these are retried with back-off.
  if (code === 'ECONNRESET' || code === 'EPIPE' || /Connection lost before handshake|No response from server|socket hang up/i.test(message)) {
    return { status: 'error', message: `${label}: connection dropped by the server (${message})`, retryable: true };
  }
  if (/Cannot parse privateKey|privateKey/i.test(message)) {
    return { status: 'auth-failed', message: `${label}: ${message}`, retryable: false };
  }
  return { status: 'error', message: `${label}: ${message}`, retryable: false };
}

export { mapBounded } from '../core/concurrency.js';
