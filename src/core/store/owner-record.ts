import { processIsGone } from '../processes.js';
import { randomHex } from '../random-hex.js';
import type { ClaimOwner } from './job-store.js';

/**
 * A claim's owner record, `locks/<chunk>.owner`, beside the claim (files inside the lock folder
 * would make a takeover fail with ENOTEMPTY): a random token on the first line — the holder
 * re-reads it to learn of a takeover the mount's caches hid — then who holds it, as JSON.
 */
export interface OwnerRecord {
  token: string;
  worker: string;
  host: string;
  pid: number;
  /** The holder's boot id: on this host and this boot, a gone pid means a dead claim. */
  bootId?: string;
  lane: number;
  chunk: string;
  /** ISO time by the mount's clock. */
  claimedAt: string;
}

export const TOKEN_LENGTH = 32;
/** Claims younger than this have no owner record (most chunks end sooner; see posix-claims). */
export const OWNER_RECORD_DELAY_MS = 1000;

export function defaultUpdateMs(staleMs: number): number {
  // Leave room for an sshfs attribute cache (20 s) and clock rounding within the stale period.
  return Math.max(1000, Math.floor(staleMs / 4));
}

/**
 * A new claim's owner record: its token (random) and the text written to `<chunk>.owner`. The
 * text is made when asked for: most claims end before their record is due (OWNER_RECORD_DELAY_MS).
 */
export function newOwnerRecord(identity: ClaimOwner, chunk: string, lane: number, mountNow: number): { token: string; text: () => string } {
  const token = randomHex(TOKEN_LENGTH / 2);
  const text = () => {
    const record: OwnerRecord = {
      token,
      worker: identity.workerId,
      host: identity.host,
      pid: identity.pid,
      bootId: identity.bootId,
      lane,
      chunk,
      claimedAt: new Date(mountNow).toISOString(),
    };
    return `${token}\n${JSON.stringify(record)}\n`;
  };
  return { token, text };
}

export function parseOwnerRecord(text: string | undefined): OwnerRecord | undefined {
  if (!text) return undefined;
  try {
    return JSON.parse(text.slice(text.indexOf('\n') + 1).trim()) as OwnerRecord;
  } catch {
    return undefined;
  }
}

/**
 * Whether a claim's holder ran on this host, in this boot, and is gone (its pid does not exist):
 * then the claim is dead now, with no stale period to wait. Any doubt (no boot id, another host,
 * a record that does not parse) is a no.
 */
export function heldByDeadLocalProcess(owner: OwnerRecord | undefined, identity: ClaimOwner): boolean {
  if (!owner || !identity.bootId) return false; // no /proc boot id: a pid alone could be another boot's
  if (owner.host !== identity.host || owner.bootId !== identity.bootId) return false;
  if (!Number.isInteger(owner.pid) || owner.pid === process.pid) return false;
  return processIsGone(owner.pid);
}
