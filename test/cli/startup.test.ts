/**
 * Start-up: a command loads only the layers it uses, running a command does not lay out its help,
 * and the one-file bundle that launch copies to hosts runs on its own.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, promises as fs, readdirSync, readFileSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Argv } from 'yargs';
import { createParser } from '../../src/cli/main.js';
import { processContext, setContext } from '../../src/cli/context.js';
import { collect, killGroup, repoRoot, runPiecework, startPiecework } from '../helpers/cli.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-startup-${process.pid}-`));
after(() => fs.rm(root, { recursive: true, force: true }));

const input = path.join(root, 'input.txt');
await fs.writeFile(input, Array.from({ length: 200 }, (_, i) => `line ${i}`).join('\n') + '\n');

async function makeJob(name: string): Promise<string> {
  const result = await runPiecework(['split', input, '--into', path.join(root, name), '--lines', '50', '-q']);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.trim();
}

// Runs main(argv) from the sources in a fresh node and lists every module it resolved: packages
// by name, our files by path (src/core/merge.ts).
const probe = path.join(root, 'probe.mjs');
await fs.writeFile(
  probe,
  `import { register } from 'node:module';
import { MessageChannel } from 'node:worker_threads';
const { port1, port2 } = new MessageChannel();
const loaded = new Set();
port1.on('message', (url) => loaded.add(url));
register('data:text/javascript,' + encodeURIComponent(\`
  let port;
  export function initialize(data) { port = data.port; }
  export async function resolve(specifier, context, next) {
    const result = await next(specifier, context);
    port.postMessage(result.url);
    return result;
  }\`), { data: { port: port2 }, transferList: [port2] });
const { main } = await import(${JSON.stringify(pathToFileURL(path.join(repoRoot, 'src/cli/main.ts')).href)});
const quiet = { write: () => true };
const status = await main(JSON.parse(process.argv[2]), {
  stdout: quiet, stderr: quiet, stdin: process.stdin, env: {}, interactive: false, exitStatus: 0,
  signals: () => ({ signal: new AbortController().signal, received: () => undefined }),
});
await new Promise((resolve) => setTimeout(resolve, 100)); // the hooks' last messages
port1.close();
process.stdout.write(JSON.stringify({ status, loaded: [...loaded] }));
`,
);

function modulesLoadedBy(argv: string[]): Set<string> {
  const output = execFileSync(process.execPath, ['--import', 'tsx', probe, JSON.stringify(argv)], { cwd: repoRoot, encoding: 'utf8' });
  const { status, loaded } = JSON.parse(output.slice(output.indexOf('{"status"'))) as { status: number; loaded: string[] };
  assert.equal(status, 0, `piecework ${argv.join(' ')} succeeds`);
  const srcRoot = pathToFileURL(repoRoot).href + '/';
  return new Set(
    loaded.filter((url) => url.startsWith('file:')).map((url) => {
      const inPackage = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
      return inPackage ? inPackage[1]! : url.replace(srcRoot, '');
    }),
  );
}

const heavy = ['node-ssh', 'execa', 'fast-glob', 'proper-lockfile', 'chokidar', 'cli-progress'];
const commandCores = ['src/core/split.ts', 'src/core/work/worker.ts', 'src/core/verify.ts', 'src/core/merge.ts', 'src/core/status.ts', 'src/core/stop.ts', 'src/remote/launch.ts', 'src/dashboard/server.ts'];
const none = (loaded: Set<string>, names: string[]) => assert.deepEqual(names.filter((n) => loaded.has(n)), [], 'loaded, but not needed');

test('--version loads no command layer and no heavy package', () => {
  const loaded = modulesLoadedBy(['--version']);
  assert.ok(loaded.has('yargs') && loaded.has('src/cli/commands/merge.ts'), 'the probe sees what loads');
  none(loaded, [...heavy, ...commandCores]);
});

test('merge loads its core but not execa (only a reducer needs it), SSH, globbing or claims', async () => {
  const job = await makeJob('merge');
  await runPiecework(['work', job, '-q', '--', 'cat']);
  const loaded = modulesLoadedBy(['merge', job, '-o', path.join(root, 'merged.txt'), '-q']);
  assert.ok(loaded.has('src/core/merge.ts'));
  none(loaded, ['node-ssh', 'execa', 'fast-glob', 'proper-lockfile', ...commandCores.filter((c) => c !== 'src/core/merge.ts')]);
});

test('a worker loads its core but not SSH, execa, globbing or the other commands', async () => {
  const job = await makeJob('work');
  const loaded = modulesLoadedBy(['work', job, '-j', '1', '-q', '--', 'cat']);
  assert.ok(loaded.has('src/core/work/worker.ts'));
  none(loaded, ['node-ssh', 'execa', 'fast-glob', ...commandCores.filter((c) => c !== 'src/core/work/worker.ts')]);
});

test('running a command does not lay out its help text (yargs help cache off); --help still prints it', async () => {
  const printed: string[] = [];
  setContext({ ...processContext(), stdout: { write: (text: string) => printed.push(text) } as never });
  const parser = createParser(['completion', 'bash']);
  await parser.parseAsync();
  assert.match(printed.join(''), /_piecework_completions/);
  const usage = (parser as Argv & { getInternalMethods(): { getUsageInstance(): { hasCachedHelpMessage(): boolean } } }).getInternalMethods().getUsageInstance();
  assert.equal(usage.hasCachedHelpMessage(), false);
  const help = await runPiecework(['completion', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^piecework completion \[shell\]/);
});

test('the one-file bundle imports nothing but Node built-ins', () => {
  const bundle = readFileSync(path.join(repoRoot, 'dist/piecework.mjs'), 'utf8');
  const specifiers = [...bundle.matchAll(/^import\b[^;]*?\bfrom\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/gm)].map((m) => m[1] ?? m[2]!);
  assert.ok(specifiers.length > 0);
  assert.deepEqual(specifiers.filter((s) => !isBuiltin(s)), []);
});

test("the package's bundle finds ssh2's native cipher binding by package name; without it ssh2 runs its JS ciphers", (t) => {
  const local = path.join(repoRoot, 'dist/local');
  const specifiers = readdirSync(local)
    .filter((name) => name.endsWith('.mjs'))
    .flatMap((name) => [...readFileSync(path.join(local, name), 'utf8').matchAll(/require\("([^"]*sshcrypto\.node)"\)/g)].map((m) => m[1]!));
  // A path relative to the bundle (ssh2's own) names a file that is not there: JS ciphers always.
  assert.deepEqual(specifiers, ['ssh2/lib/protocol/crypto/build/Release/sshcrypto.node']);
  const built = existsSync(path.join(repoRoot, 'node_modules', specifiers[0]!));
  if (!built) return t.skip("ssh2's install script built no binding here (no compiler): the bundle uses ssh2's JS ciphers");
  const binding = createRequire(path.join(local, 'piecework.mjs'))(specifiers[0]!) as { AESGCMCipher?: unknown };
  assert.equal(typeof binding.AESGCMCipher, 'function', 'the binding loads as the bundle requires it');
});

test('the one-file bundle runs on its own: split, work, merge from a copy; launch renders from the package', async () => {
  const alone = path.join(root, 'alone');
  mkdirSync(alone);
  const tool = path.join(alone, 'piecework.mjs');
  copyFileSync(path.join(repoRoot, 'dist/piecework.mjs'), tool);
  const run = (...args: string[]) => execFileSync(process.execPath, [tool, ...args], { cwd: alone, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const job = run('split', input, '--into', path.join(root, 'alone-job'), '--lines', '30', '-q').trim();
  run('work', job, '-j', '2', '-q', '--', 'cat');
  const merged = path.join(root, 'alone-merged.txt');
  run('merge', job, '-o', merged, '-q');
  assert.equal(await fs.readFile(merged, 'utf8'), await fs.readFile(input, 'utf8'));
  assert.match(run('launch', '--help'), /Start workers on other machines/);
  // launch loads the SSH layer even for a dry run: bundled CommonJS that reads __dirname.
  const dry = execFileSync(process.execPath, [path.join(repoRoot, 'dist/piecework.mjs'), 'launch', job, '--hosts', 'a,b', '--dry-run', '--', 'cat'], { encoding: 'utf8' });
  assert.match(dry, /^# ---- a: sh -s with this script on stdin ----$/m);
});

test("a worker's file calls get a thread pool sized for a mount (16 threads, not libuv's 4), unless the user sized it", async () => {
  const threadsOf = async (name: string, env: Record<string, string>): Promise<number> => {
    const job = await makeJob(name);
    const worker = startPiecework(['work', job, '-j', '1', '-q', '--', 'sh', '-c', 'cat; sleep 30'], { env });
    const result = collect(worker);
    try {
      // The pool starts at the first file call: by the time the lane's folder exists, it has.
      const until = Date.now() + 20_000;
      while (!(await fs.readdir(path.join(job, '.tmp')).then((dirs) => dirs.length > 0))) {
        assert.ok(Date.now() < until, 'the worker started its first chunk');
        await new Promise((r) => setTimeout(r, 50));
      }
      const status = readFileSync(`/proc/${worker.pid}/status`, 'utf8');
      return Number(/^Threads:\s+(\d+)/m.exec(status)![1]);
    } finally {
      // SIGTERM: the worker ends its command too (which leads a process group of its own).
      killGroup(worker, 'SIGTERM');
      await result;
    }
  };
  const sized = await threadsOf('pool-default', {});
  assert.ok(sized >= 16 + 4, `${sized} threads`);
  const userSized = await threadsOf('pool-user', { UV_THREADPOOL_SIZE: '2' });
  assert.ok(userSized < 16, `${userSized} threads with UV_THREADPOOL_SIZE=2`);
});
