/**
 * The host inventory for `launch`: `--hosts FILE` (one host a line, as in GNU parallel's sshlogin
 * files) or `--hosts a,b,c`. Every line is checked before anything starts, and a bad one is
 * reported with its file and line number.
 *
 *   # lab machines                 comment lines and blank lines are ignored
 *   8/alice@lab1.example.org       8 lanes on this host
 *   lab2:2222                      another port
 *   [fe80::1%eth0]:22  [::1]:2222  IPv6 in brackets (bare IPv6 is accepted when no port is given)
 */
import { readFile } from 'node:fs/promises';
import { isIPv6 } from 'node:net';
import { UsageError, errorCode } from '../core/errors.js';

export interface HostSpec {
  /** Login name; undefined means the local user name (as `ssh` does). */
  user?: string;
  /** Host name, IPv4 address or IPv6 address (without brackets). */
  host: string;
  port: number;
  /** Lanes (`work -j`) on this host; undefined means `--lanes`, or the host's CPU count. */
  lanes?: number;
  /** Where the host was named, for messages: `hosts.txt:3` or `--hosts`. */
  source: string;
}

export const defaultSshPort = 22;

// A DNS name or an IPv4 address; underscores are tolerated because /etc/hosts often has them.
const hostName = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;
const userName = /^[A-Za-z0-9._][A-Za-z0-9._-]*\$?$/;

/** Parse one `[N/][user@]host[:port]` spec. Throws an Error whose message says what is wrong. */
export function parseHostSpec(text: string, source: string): HostSpec {
  let rest = text.trim();
  if (rest === '') throw new Error('empty host');
  if (/\s/.test(rest)) throw new Error(`unexpected space in "${rest}" (one host a line)`);

  let lanes: number | undefined;
  const lanesMatch = /^(\d+)\//.exec(rest);
  if (lanesMatch) {
    lanes = Number(lanesMatch[1]);
    if (!Number.isSafeInteger(lanes) || lanes < 1) throw new Error(`lanes must be at least 1 in "${text}"`);
    rest = rest.slice(lanesMatch[0].length);
  } else if (/^[^@]*\//.test(rest)) {
    throw new Error(`"${text}": the lanes prefix must be a number, as in 8/host`);
  }

  let user: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at !== -1) {
    user = rest.slice(0, at);
    rest = rest.slice(at + 1);
    if (!userName.test(user)) throw new Error(`bad user name "${user}" in "${text}"`);
  }

  let host: string;
  let port = defaultSshPort;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close === -1) throw new Error(`missing "]" in "${text}"`);
    host = rest.slice(1, close);
    const after = rest.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) throw new Error(`unexpected "${after}" after "]" in "${text}"`);
      port = parsePort(after.slice(1), text);
    }
    if (!isIPv6(host.replace(/%[A-Za-z0-9_.-]+$/, '')) && !hostName.test(host)) {
      throw new Error(`bad address "${host}" in "${text}"`);
    }
  } else if ((rest.match(/:/g) ?? []).length >= 2) {
    // Bare IPv6 such as fe80::1: allowed, but then it cannot carry a port.
    if (!isIPv6(rest.replace(/%[A-Za-z0-9_.-]+$/, ''))) {
      throw new Error(`bad address "${rest}" in "${text}" (write IPv6 with a port as [addr]:port)`);
    }
    host = rest;
  } else {
    const colon = rest.indexOf(':');
    host = colon === -1 ? rest : rest.slice(0, colon);
    if (colon !== -1) port = parsePort(rest.slice(colon + 1), text);
    if (!hostName.test(host)) throw new Error(`bad host name "${host}" in "${text}"`);
  }

  const spec: HostSpec = { host, port, source };
  if (user !== undefined) spec.user = user;
  if (lanes !== undefined) spec.lanes = lanes;
  return spec;
}

function parsePort(text: string, whole: string): number {
  const port = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(port >= 1 && port <= 65535)) throw new Error(`bad port "${text}" in "${whole}"`);
  return port;
}

/** Parse the text of a hosts file; `fileName` is used in messages and in each spec's `source`. */
export function parseHostsFile(text: string, fileName: string): HostSpec[] {
  const specs: HostSpec[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    // A host name never contains '#', so everything from '#' on is a comment.
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    const source = `${fileName}:${index + 1}`;
    try {
      specs.push(parseHostSpec(line, source));
    } catch (error) {
      throw new UsageError(`${source}: ${(error as Error).message}`, hostSyntaxHint);
    }
  });
  return specs;
}

/** Parse `a,b,c` as given to `--hosts`. */
export function parseHostList(list: string, source = '--hosts'): HostSpec[] {
  const specs: HostSpec[] = [];
  for (const [index, item] of list.split(',').entries()) {
    if (item.trim() === '') continue;
    try {
      specs.push(parseHostSpec(item, source));
    } catch (error) {
      throw new UsageError(`${source} (item ${index + 1}): ${(error as Error).message}`, hostSyntaxHint);
    }
  }
  return specs;
}

const hostSyntaxHint = 'each host is [N/][user@]host[:port], e.g. 8/alice@lab1:2222 or [::1]:2222';

/**
 * Resolve the values of `--hosts` (the flag may be repeated): a value naming an existing file is a
 * hosts file, anything else is a comma-separated list. Duplicates (same user, host and port) are an
 * error naming both places, so that a host is never started twice by accident.
 */
export async function resolveHosts(values: readonly string[]): Promise<HostSpec[]> {
  const specs: HostSpec[] = [];
  for (const value of values) {
    let text: string | undefined;
    try {
      text = await readFile(value, 'utf8');
    } catch (error) {
      const code = errorCode(error);
      if (code === 'EISDIR') throw new UsageError(`--hosts ${value}: is a folder, not a hosts file`);
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
    }
    if (text !== undefined) {
      specs.push(...parseHostsFile(text, value));
      continue;
    }
    if (looksLikePath(value)) {
      throw new UsageError(`--hosts ${value}: no such file`, 'give a hosts file (one host a line) or a list a,b,c');
    }
    specs.push(...parseHostList(value));
  }
  if (specs.length === 0) throw new UsageError('--hosts names no host', hostSyntaxHint);

  const seen = new Map<string, HostSpec>();
  for (const spec of specs) {
    const key = hostKey(spec);
    const earlier = seen.get(key);
    if (earlier) {
      throw new UsageError(
        `${formatHost(spec)} is listed twice (${earlier.source} and ${spec.source})`,
        'give each host once; use N/host to run N lanes on it',
      );
    }
    seen.set(key, spec);
  }
  return specs;
}

/** `hosts.txt` or `conf/lab` is a missing file, not a host; `8/lab1,lab2` is a list. */
function looksLikePath(value: string): boolean {
  if (/\.(txt|hosts|list|conf|cfg)$/i.test(value)) return true;
  return value.split(',').some((item) => item.trim().replace(/^\d+\//, '').includes('/'));
}

function hostKey(spec: HostSpec): string {
  return `${spec.user ?? ''}@${spec.host.toLowerCase()}:${spec.port}`;
}

/** `user@host:port` for people: the port only when it is not 22, IPv6 in brackets when needed. */
export function formatHost(spec: Pick<HostSpec, 'user' | 'host' | 'port'>): string {
  const needsBrackets = spec.host.includes(':') && spec.port !== defaultSshPort;
  const host = needsBrackets ? `[${spec.host}]` : spec.host;
  return `${spec.user ? `${spec.user}@` : ''}${host}${spec.port === defaultSshPort ? '' : `:${spec.port}`}`;
}

/** How to reach a set of hosts over SSH: shared by launch and stop --now. */
export interface HostConnectionOptions {
  /** `--hosts` values: hosts files or comma lists. */
  hosts?: readonly string[];
  /** Already parsed hosts (used instead of `hosts`). */
  hostSpecs?: readonly HostSpec[];
  identityFiles?: readonly string[];
  /** Agent socket; default `SSH_AUTH_SOCK`; `false` to use no agent. */
  agent?: string | false;
  /** Default: ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts; new keys go to the first. */
  knownHostsFiles?: readonly string[];
  acceptNewHostKeys?: boolean;
  /** Hosts worked on at once (handshakes, uploads, mounts against the head's sshd). Default 8. */
  concurrency?: number;
  connectTimeoutMs?: number;
  connectRetries?: number;
}
