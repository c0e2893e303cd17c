/**
 * Where a lane's commands write their stderr: one local file per lane, reused chunk after chunk,
 * whose tail goes into a failure record. A file rather than a pipe because a pipe costs the worker
 * a stream, its events and a copy of every byte for each chunk — a fifth of what starting a short
 * command costs — while a file costs nothing until a chunk fails and its tail is read.
 *
 * The file is unlinked as soon as it is open, so that nothing is left behind even by a SIGKILL;
 * it lives in the local temp folder, never on the job's mount.
 */
import { fstatSync, ftruncateSync, promises as fs, readSync } from 'node:fs';
import { randomHex } from '../random-hex.js';
import { settled } from '../concurrency.js';
import { LocalTempError } from '../errors.js';
import os from 'node:os';
import path from 'node:path';

/** A command writing more than this to stderr has its earlier stderr dropped: only the tail counts. */
const MAX_BYTES = 16 * 1024 * 1024;

export class StderrCapture {
  readonly #handle: fs.FileHandle;

  private constructor(handle: fs.FileHandle) {
    this.#handle = handle;
  }

  static async open(): Promise<StderrCapture> {
    const file = path.join(os.tmpdir(), `piecework-stderr-${process.pid}-${randomHex(4)}`);
    // 'a+': the command appends, so writes land at the end even after a truncate under it.
    const handle = await fs.open(file, 'a+', 0o600).catch((error: unknown) => {
      throw new LocalTempError("a lane's stderr file", os.tmpdir(), error);
    });
    await fs.unlink(file);
    return new StderrCapture(handle);
  }

  get fd(): number {
    return this.#handle.fd;
  }

  /**
   * Empty it for the next command (synchronous: a local file, and once per chunk). Most commands
   * write nothing on stderr: a truncate is a journalled change of the file even at size 0, a
   * stat is not.
   */
  reset(): void {
    if (fstatSync(this.#handle.fd).size > 0) ftruncateSync(this.#handle.fd, 0);
  }

  /** Keep a chatty long-running command from filling the local disk. */
  async limitSize(): Promise<void> {
    const { size } = await this.#handle.stat();
    if (size > MAX_BYTES) await this.#handle.truncate(0);
  }

  /**
   * The last `bytes` written, as text. Synchronous too, as reset: it runs after every chunk, and a
   * stat of a local file costs less than the hop through libuv's threads that would wait for it.
   */
  tail(bytes: number): Promise<string> {
    return settled(() => {
      const size = fstatSync(this.#handle.fd).size;
      const length = Math.min(size, bytes);
      if (length === 0) return '';
      const buffer = Buffer.alloc(length);
      const bytesRead = readSync(this.#handle.fd, buffer, 0, length, size - length);
      return buffer.subarray(0, bytesRead).toString('utf8');
    });
  }

  close(): Promise<void> {
    return this.#handle.close();
  }
}
