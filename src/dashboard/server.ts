/**
 * The dashboard's HTTP server: a page, its script and stylesheet, and one JSON endpoint computed
 * from the job folder. Nothing is fetched from outside (the page's Content-Security-Policy says
 * so), and it listens on 127.0.0.1 unless a host is given.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { gzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { errorCode, PieceworkError } from '../core/errors.js';
import { openJobStore } from '../core/store/open-store.js';
import { PAGE_CSS, PAGE_HTML } from './page.js';
import { PAGE_SCRIPT } from './page-script.js';
import { SnapshotSource } from './snapshot.js';

export interface DashboardOptions {
  job: string;
  /** 0 picks a free port. */
  port: number;
  host?: string;
  staleSeconds?: number;
  /** How long one folder scan serves every request (default 1500 ms). */
  cacheMs?: number;
}

export interface Dashboard {
  url: string;
  close(): Promise<void>;
}

const LOOPBACK = '127.0.0.1';
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'";

export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const source = new SnapshotSource(await openJobStore(options.job), { staleSeconds: options.staleSeconds, minAgeMs: options.cacheMs });
  await source.get(); // a missing job fails here, before anything listens
  const host = options.host ?? LOOPBACK;
  const files: Record<string, [string, string]> = {
    '/': ['text/html; charset=utf-8', PAGE_HTML],
    '/page.js': ['text/javascript; charset=utf-8', PAGE_SCRIPT],
    '/page.css': ['text/css; charset=utf-8', PAGE_CSS],
  };
  const server = createServer((request, response) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') return send(request, response, 405, 'text/plain', 'only GET\n');
    // Bound to loopback, refuse other Host names: a web page elsewhere cannot rebind a DNS name
    // to 127.0.0.1 and read the job's failure logs through the browser.
    if (!options.host && !isLoopbackHost(request.headers.host)) return send(request, response, 403, 'text/plain', 'wrong Host header\n');
    const url = new URL(request.url ?? '/', 'http://localhost');
    const file = files[url.pathname];
    if (file) return send(request, response, 200, file[0], file[1]);
    if (url.pathname !== '/api/snapshot') return send(request, response, 404, 'text/plain', 'not found\n');
    source.get().then(
      (snapshot) => send(request, response, 200, 'application/json', JSON.stringify(snapshot)),
      (error: unknown) => {
        const hint = error instanceof PieceworkError ? error.hint : undefined;
        send(request, response, 503, 'application/json', JSON.stringify({ error: error instanceof Error ? error.message : String(error), hint }));
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(listenError(error, host, options.port)));
    server.listen(options.port, host, resolve);
  });
  const port = (server.address() as AddressInfo).port;
  // Listening everywhere: show the name other machines would use.
  const shownHost = host === '0.0.0.0' || host === '::' ? hostname() : host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function send(request: IncomingMessage, response: ServerResponse, status: number, type: string, body: string): void {
  const gzip = body.length > 1024 && /\bgzip\b/.test(String(request.headers['accept-encoding'] ?? ''));
  const payload = gzip ? gzipSync(body) : Buffer.from(body);
  response.writeHead(status, {
    'content-type': type,
    'content-length': payload.length,
    'cache-control': 'no-store',
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
    ...(gzip ? { 'content-encoding': 'gzip' } : {}),
  });
  response.end(request.method === 'HEAD' ? undefined : payload);
}

/** Any port: behind `ssh -L 9000:127.0.0.1:8765` the browser says port 9000. */
function isLoopbackHost(header: string | undefined): boolean {
  const name = (header ?? '').replace(/:\d+$/, '');
  return name === '127.0.0.1' || name === 'localhost' || name === '[::1]';
}

function listenError(error: Error, host: string, port: number): Error {
  if (errorCode(error) === 'EADDRINUSE') return new PieceworkError(`port ${port} on ${host} is already in use`, { hint: 'pick another with --port, or --port 0 for any free one' });
  if (errorCode(error) === 'EADDRNOTAVAIL') return new PieceworkError(`cannot listen on ${host}: no such address on this host`, { hint: 'give one of this host\'s addresses with --host, or 0.0.0.0 for all' });
  return error;
}
