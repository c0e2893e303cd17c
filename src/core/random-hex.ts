/**
 * Random hex for names and tokens (temp files, owner records). crypto.randomBytes is a call into
 * OpenSSL each time, ~15 µs here, and a worker asks for several per chunk: bytes are drawn 4 KiB
 * at a time and handed out in slices. Uniqueness, not secrecy, is what these names need.
 */
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let next = POOL_BYTES;

/** `bytes` random bytes as 2 × bytes hex digits. */
export function randomHex(bytes: number): string {
  if (bytes > POOL_BYTES) throw new RangeError(`randomHex: at most ${POOL_BYTES} bytes`);
  if (next + bytes > POOL_BYTES) {
    randomFillSync(pool);
    next = 0;
  }
  const hex = pool.toString('hex', next, next + bytes);
  next += bytes;
  return hex;
}
