// A loopback TCP proxy that holds every chunk for `delayMs` in each direction, in order: a stand-in
// for network latency, since tc netem is not available here. delayMs is ONE-WAY: a round trip
// gains 2 × delayMs (for a "10 ms round-trip" mount pass 5).
//
// In-process:  const p = await startDelayProxy({ targetPort, delayMs: 5 }); … p.close()
// Standalone:  node --import tsx test/helpers/delay-proxy.ts --target PORT --delay MS
//              [--target-host H] [--port P] [--listen-host H]
//              prints the listening port on stdout, runs until SIGTERM/SIGINT.
import { createServer, connect, type Socket } from 'node:net';
import { pathToFileURL } from 'node:url';

export interface DelayProxyOptions {
  targetPort: number;
  targetHost?: string;
  /** Added to each direction, so a round trip gains 2 × delayMs. */
  delayMs: number;
  /** Default 0: any free port. */
  listenPort?: number;
  listenHost?: string;
}

export interface DelayProxy {
  port: number;
  close(): Promise<void>;
}

export async function startDelayProxy(o: DelayProxyOptions): Promise<DelayProxy> {
  const sockets = new Set<Socket>();
  const server = createServer({ noDelay: true }, (client) => {
    const upstream = connect({ port: o.targetPort, host: o.targetHost ?? '127.0.0.1', noDelay: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    pipeDelayed(client, upstream, o.delayMs);
    pipeDelayed(upstream, client, o.delayMs);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.listenPort ?? 0, o.listenHost ?? '127.0.0.1', resolve);
  });
  const addr = server.address();
  if (typeof addr !== 'object' || addr === null) throw new Error('delay proxy has no address');
  return {
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Forward from → to, each chunk no earlier than delayMs after it arrived. One queue and one timer
 * per direction keep the order; the due time is checked against performance.now() because a
 * timer may fire up to a millisecond early (libuv's cached loop time), and the delay is a floor.
 */
function pipeDelayed(from: Socket, to: Socket, delayMs: number): void {
  const queue: { due: number; data: Buffer | null }[] = []; // null = end of stream
  let timer: NodeJS.Timeout | undefined;
  const flush = (): void => {
    timer = undefined;
    const now = performance.now();
    while (queue.length > 0 && queue[0]!.due <= now) {
      const { data } = queue.shift()!;
      if (data === null) to.end();
      else to.write(data);
    }
    if (queue.length > 0) timer = setTimeout(flush, Math.max(0, queue[0]!.due - now));
    // Backpressure: resume reading once the queue has drained and the receiver keeps up.
    if (from.isPaused() && queue.length === 0 && !to.writableNeedDrain) from.resume();
  };
  const push = (data: Buffer | null): void => {
    // No delay: skip the timer, whose ~1 ms granularity would itself add latency.
    if (delayMs <= 0 && queue.length === 0) {
      if (data === null) to.end();
      else to.write(data);
      return;
    }
    queue.push({ due: performance.now() + delayMs, data });
    timer ??= setTimeout(flush, delayMs);
  };
  from.on('data', (data: Buffer) => {
    push(data);
    if (queue.length > 1024 || to.writableNeedDrain) from.pause();
  });
  to.on('drain', () => {
    if (from.isPaused() && queue.length === 0) from.resume();
  });
  from.on('end', () => push(null));
  from.on('close', () => {
    // A reset (not a clean end) must reach the other side too, but only after queued data.
    if (!from.readableEnded) push(null);
  });
}

function parseArgs(argv: string[]): DelayProxyOptions {
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const targetPort = Number(get('target'));
  const delayMs = Number(get('delay'));
  if (!Number.isInteger(targetPort) || !(delayMs >= 0)) {
    throw new Error('usage: delay-proxy.ts --target PORT --delay MS [--target-host H] [--port P] [--listen-host H]');
  }
  return { targetPort, delayMs, targetHost: get('target-host'), listenPort: get('port') === undefined ? undefined : Number(get('port')), listenHost: get('listen-host') };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  let options: DelayProxyOptions;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  const proxy = await startDelayProxy(options);
  process.stdout.write(`${proxy.port}\n`);
  const stop = (): void => void proxy.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
