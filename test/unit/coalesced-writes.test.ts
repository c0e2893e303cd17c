// The SFTP connection's socket sends what one turn of the event loop writes at once
// (store/coalesced-writes.ts): ssh2 writes a packet's length, ciphertext and tag separately.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { test } from 'node:test';
import { coalesceWrites } from '../../src/core/store/coalesced-writes.js';

/** A connected socket, its server end collecting bytes, and counters of the writes it hands down. */
async function connectedPair(): Promise<{ socket: net.Socket; received: () => Buffer; calls: { write: number; writev: number[] }; close: () => void }> {
  const chunks: Buffer[] = [];
  const server = net.createServer((peer) => peer.on('data', (data: Buffer) => chunks.push(data)));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const socket = net.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', noDelay: true });
  await once(socket, 'connect');
  const calls = { write: 0, writev: [] as number[] };
  const internals = socket as unknown as { _write: (...a: unknown[]) => unknown; _writev: (chunks: unknown[], cb: unknown) => unknown };
  const write = internals._write.bind(socket);
  const writev = internals._writev.bind(socket);
  internals._write = (...args) => (calls.write++, write(...args));
  internals._writev = (pieces, cb) => (calls.writev.push(pieces.length), writev(pieces, cb));
  return { socket, received: () => Buffer.concat(chunks), calls, close: () => (socket.destroy(), server.close()) };
}

test('pieces written in one tick leave in one writev, in order; later ticks are sent too', async () => {
  const pair = await connectedPair();
  try {
    coalesceWrites(pair.socket);
    pair.socket.write(Buffer.from('len:'));
    pair.socket.write('cipher-text;');
    pair.socket.write(Buffer.from('tag'));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(pair.calls, { write: 0, writev: [3] });
    pair.socket.write('next');
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(pair.received().toString(), 'len:cipher-text;tagnext');
  } finally {
    pair.close();
  }
});

test('without it, each piece is a write of its own (what the change is for)', async () => {
  const pair = await connectedPair();
  try {
    pair.socket.write(Buffer.from('len:'));
    pair.socket.write('cipher-text;');
    pair.socket.write(Buffer.from('tag'));
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(pair.calls.write >= 1 && pair.calls.write + pair.calls.writev.length >= 2, JSON.stringify(pair.calls));
  } finally {
    pair.close();
  }
});
