/**
 * One write per turn of the event loop on the SFTP connection's socket, not one per piece.
 *
 * ssh2 writes each SSH packet in pieces, each with its own socket.write (with AES-GCM: the length,
 * the ciphertext, the tag). With Nagle's algorithm off (sftp-store.ts says why) every piece is a
 * syscall and a TCP segment of its own: 4315 writes for a worker's 100 one-line chunks, most of
 * them 4 or 16 bytes, each read one by one at the other end. Corked until the current tick ends,
 * the pieces — and the several requests a worker pipelines at once — leave in one writev.
 */
import type { Socket } from 'node:net';

export function coalesceWrites(socket: Socket): void {
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  socket.write = (...args: unknown[]) => {
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(uncork);
    }
    return write(...args);
  };
}
