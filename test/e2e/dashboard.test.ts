/// <reference lib="dom" />
// The functions given to page.waitForFunction run in the browser, where document exists.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { get } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { collect, killGroup, runPiecework, startPiecework } from '../helpers/cli.js';
import { colourCounts, decodePng } from '../helpers/png.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-dashboard-${process.pid}-`));
const job = path.join(root, 'job');
const CHUNKS = 60;
const children: ReturnType<typeof startPiecework>[] = [];
let workersDone: Promise<unknown> = Promise.resolve();
let browser: Browser | undefined;
let page: Page;
let url = '';
const requested: string[] = [];

// Slow enough to watch; chunk 000005 fails for good with a message on stderr.
const slowCopy = ['sh', '-c', 'if [ "$PIECEWORK_NAME" = 000005 ]; then echo "disk quota exceeded writing $PIECEWORK_NAME" >&2; exit 4; fi; sleep 0.5; cat'];

before(async () => {
  const input = path.join(root, 'in.txt');
  await fs.writeFile(input, Array.from({ length: CHUNKS }, (_, i) => `line ${i}`).join('\n') + '\n');
  assert.equal((await runPiecework(['split', input, '--into', job, '--lines', '1'])).code, 0);

  const dashboard = startPiecework(['dashboard', job, '--port', '0']);
  children.push(dashboard);
  url = await new Promise<string>((resolve, reject) => {
    let out = '';
    dashboard.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
    dashboard.on('exit', (code) => reject(new Error(`dashboard exited with ${code}`)));
  });
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);

  // Two workers, as two hosts would run them, processing the job while the page watches; the
  // second was given the script with a comment more: another command, as far as anyone can tell.
  const workers = [slowCopy, [...slowCopy.slice(0, 2), `${slowCopy[2]} # host b`]].map((command) => startPiecework(['work', job, '-j', '2', '--retries', '0', '--', ...command]));
  children.push(...workers);
  workersDone = Promise.all(workers.map(collect));

  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  page = await browser.newPage({ viewport: { width: 1200, height: 1300 }, deviceScaleFactor: 1 });
  page.on('request', (request) => requested.push(request.url()));
  await page.goto(url);
  await page.waitForFunction(() => Number(document.body.dataset.updates) >= 1);
});

after(async () => {
  await browser?.close();
  for (const child of children) killGroup(child);
  await fs.rm(root, { recursive: true, force: true });
});

const number = async (selector: string) => Number((await page.textContent(selector))!.replaceAll(',', ''));

test('the page shows the job, its counts and one grid cell per chunk', async () => {
  assert.equal(await page.textContent('#job'), job);
  assert.equal(await number('#chunks'), CHUNKS);
  assert.equal(await page.getAttribute('#grid', 'data-cells'), String(CHUNKS));
  const counts = await Promise.all(['#done', '#running', '#pending', '#failed'].map(number));
  assert.equal(counts.reduce((a, b) => a + b, 0), CHUNKS, `done/running/pending/failed: ${counts.join('/')}`);
});

test('the page updates by itself as workers complete chunks, and shows the failure with its stderr', async () => {
  const before = await number('#done');
  await page.waitForFunction((seen) => Number(document.getElementById('done')!.textContent.replaceAll(',', '')) > seen, before, { timeout: 20_000 });
  await page.waitForFunction(() => document.getElementById('failures')!.textContent.includes('disk quota exceeded writing 000005'), undefined, { timeout: 20_000 });
  assert.match((await page.textContent('#reasons'))!, /1× exit 4/);
  assert.match((await page.textContent('#hosts'))!, /alive/);
  assert.equal(await page.textContent('#state'), 'running');
});

test('a screenshot is not blank: the grid shows done and failed chunks in their colours', async () => {
  await page.waitForFunction(() => Number(document.getElementById('failed')!.textContent) >= 1, undefined, { timeout: 20_000 });
  const pixels = decodePng(await page.screenshot({ fullPage: true }));
  const colours = colourCounts(pixels);
  assert.ok(colours.size > 50, `only ${colours.size} distinct colours`);
  const share = (rgb: number) => (colours.get(rgb) ?? 0) / pixels.rgb.length;
  // No single colour covers the page; the state colours of the grid and bars are there.
  assert.ok(Math.max(...colours.values()) / pixels.rgb.length < 0.9, 'one colour covers 90% of the page');
  assert.ok(share(0x2da44e) > 0.001, 'done (green) is visible');
  assert.ok(share(0xcf222e) > 0.0001, 'failed (red) is visible');
});

test('the page loads nothing from anywhere else, and the server refuses other Host names', async () => {
  const origin = new URL(url).origin;
  assert.ok(requested.length >= 4);
  assert.deepEqual(requested.filter((r) => !r.startsWith(origin) && !r.startsWith('data:')), []);
  const statusWithHost = (host: string) =>
    new Promise<number | undefined>((resolve, reject) => {
      get(`${url}api/snapshot`, { headers: { host } }, (response) => {
        response.resume();
        resolve(response.statusCode);
      }).on('error', reject);
    });
  // DNS rebinding: a page from elsewhere reaching 127.0.0.1 under its own name is refused…
  assert.equal(await statusWithHost('attacker.example'), 403);
  // …while a tunnel's local port (ssh -L 9000:127.0.0.1:PORT) is fine.
  assert.equal(await statusWithHost('localhost:9000'), 200);
});

test('when the workers are done the page says so: 59 done, 1 failed, nobody running', async () => {
  await workersDone;
  await page.waitForFunction(() => document.getElementById('done')!.textContent === '59' && document.getElementById('state')!.textContent === 'idle', undefined, { timeout: 20_000 });
  assert.equal(await number('#failed'), 1);
  assert.equal(await number('#running'), 0);
});

test('two commands among the workers are pointed out under the hosts, each with what it did', async () => {
  await workersDone;
  await page.waitForFunction(() => document.getElementById('commands')!.textContent.includes('2 different commands'), undefined, { timeout: 20_000 });
  const text = (await page.textContent('#commands'))!;
  assert.match(text, /this job's workers ran 2 different commands — their outputs are merged together/);
  assert.match(text, /'if .*# host b' \(1 worker, \d+ done, on /);
});
