import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { BootstrapExit, bootstrapErrorMessage, parseBootstrapOutput, renderBootstrap, type BootstrapSettings } from '../../src/remote/bootstrap.js';
import { renderCloudStartup } from '../../src/remote/providers/common.js';
import { packageRoot, renderTemplate, renderTemplateText, templateVariables } from '../../src/remote/templates.js';

const root = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
const dir = join(tmpdir(), `pw${process.pid}-templates-test`);
const bundleDir = join(root, `.test-bundle-pw${process.pid}`);
const pids: number[] = [];

/** A value that would run code if any template spliced it into the script unquoted. */
const hostile = `it's "quoted" $(touch ${dir}/pwned) \`touch ${dir}/pwned2\` $HOME; rm -rf /nonexistent & | > <`;

before(() => mkdirSync(join(dir, 'job', 'logs'), { recursive: true }));
after(() => {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
  rmSync(bundleDir, { recursive: true, force: true });
});

function shellcheck(script: string, name: string): void {
  const result = spawnSync('shellcheck', ['-s', 'sh', '-'], { input: script, encoding: 'utf8' });
  assert.equal(result.status, 0, `shellcheck ${name}:\n${result.stdout}${result.stderr}`);
}

test('the package root is found from src, dist and a single bundled file, and nowhere else', async () => {
  assert.equal(packageRoot(), root);
  assert.equal(packageRoot(join(root, 'dist', 'remote', 'templates.js')), root);
  assert.equal(packageRoot(join(root, 'dist', 'piecework.mjs')), root);
  assert.throws(() => packageRoot(join(tmpdir(), 'x', 'piecework.mjs')), /cannot find piecework's templates\/ folder/);

  // A real esbuild bundle (as `make build` makes dist/piecework.mjs) finds it through import.meta.url.
  const outfile = join(bundleDir, 'piecework.mjs');
  await build({ entryPoints: [join(root, 'src/remote/templates.ts')], bundle: true, platform: 'node', format: 'esm', outfile, logLevel: 'silent' });
  const found = execFileSync(process.execPath, ['--input-type=module', '-e', `import(${JSON.stringify(outfile)}).then((m) => process.stdout.write(m.packageRoot()))`], { encoding: 'utf8' });
  assert.equal(found, root);
});

test('rendering inserts quoted assignments after the leading comments and checks the names', () => {
  const text = '#!/bin/sh\n#SBATCH --requeue\n# about\n\nset -eu\necho "${PW_A:?}" "${PW_B:-}"\n';
  assert.deepEqual(templateVariables(text), { all: new Set(['PW_A', 'PW_B']), required: new Set(['PW_A']) });
  const out = renderTemplateText(text, { PW_A: "a 'b'", PW_B: undefined });
  assert.equal(out, `#!/bin/sh\n#SBATCH --requeue\n# about\n\n# Values rendered by piecework (single-quoted: data, never code).\n# shellcheck disable=SC1003,SC2016\nPW_A='a '\\''b'\\'''\n\nset -eu\necho "\${PW_A:?}" "\${PW_B:-}"\n`);
  assert.throws(() => renderTemplateText(text, { PW_A: 'x', PW_TYPO: 'y' }), /does not use PW_TYPO/);
  assert.throws(() => renderTemplateText(text, { PW_B: 'x' }), /needs a value for PW_A/);
});

const settings = (extra: Partial<BootstrapSettings> = {}): BootstrapSettings => ({
  action: 'start',
  job: join(dir, 'job'),
  tool: join(dir, 'tool.mjs'),
  command: ['printf', '%s\n', hostile, '--', ''],
  lanes: 3,
  graceSeconds: 1,
  ...extra,
});

test('every template renders to a shellcheck-clean script, with hostile values as plain data', async () => {
  const mount = { source: `me@head:/srv/${hostile}`, at: `/mnt/${hostile}`, port: 2222, identity: '/k', knownHostsLines: ['[head]:2222 ssh-ed25519 AAAA'], strict: 'yes' as const };
  const bootstrap = await renderBootstrap(settings({ mount, cwd: `/mnt/${hostile}`, env: [['HOSTILE', hostile]], workOptions: ['--warm'], whenDone: 'delete-gce' }));
  shellcheck(bootstrap, 'bootstrap.sh');
  // The copy embedded in cloud startup scripts, without comments, is a script just the same.
  shellcheck(await renderBootstrap(settings({ mount, env: [['HOSTILE', hostile]] }), { compact: true }), 'bootstrap.sh (compact)');
  const cloud = { job: join(dir, 'job'), jobId: 'abc123', command: [hostile], count: 2, tool: '/mnt/x/pw.mjs', mount, mountKeyText: '-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----' };
  for (const name of ['gcloud-startup.sh', 'aws-user-data.sh'] as const) shellcheck(await renderCloudStartup(name, cloud), name);
  const slurm = await renderTemplate('slurm-array.sh', { PW_BOOTSTRAP: await renderBootstrap(settings({ action: 'run' })) });
  shellcheck(slurm, 'slurm-array.sh');
  assert.match(slurm, /^#!\/bin\/sh\n#SBATCH --requeue\n#SBATCH --open-mode=append\n/);
  // sbatch reads #SBATCH lines only before the first command: the values come after them.
  assert.ok(slurm.indexOf('PW_BOOTSTRAP=') > slurm.lastIndexOf('#SBATCH'));

  // The shell sees each value as one string, equal to what we gave.
  const echo = spawnSync('sh', ['-c', `${bootstrap.split('\nset -eu\n')[0]}\nprintf '%s\\0' "$PW_MOUNT_SOURCE" "$PW_MOUNT_AT" "$PW_COMMAND"`], { encoding: 'utf8' });
  const [source, at, words] = echo.stdout.split('\0');
  assert.equal(source, mount.source);
  assert.equal(at, mount.at);
  const argv = spawnSync('sh', ['-c', `eval "set -- $1"; printf '%s\\0' "$@"`, 'sh', words as string], { encoding: 'utf8' }).stdout.split('\0').slice(0, -1);
  assert.deepEqual(argv, ['printf', '%s\n', hostile, '--', '']);
  assert.equal(existsSync(join(dir, 'pwned')) || existsSync(join(dir, 'pwned2')), false);
});

/** A stand-in for dist/piecework.mjs that records its argv, cwd and env in the job folder, then idles. */
function writeStandInTool(behaviour: 'idle' | 'exit'): void {
  writeFileSync(
    join(dir, 'tool.mjs'),
    `import { writeFileSync } from 'node:fs';
const args = process.argv.slice(2);
writeFileSync(args[1] + '/argv-' + process.pid + '.json', JSON.stringify(args));
writeFileSync(args[1] + '/place-' + process.pid + '.json', JSON.stringify({ cwd: process.cwd(), env: process.env }));
${behaviour === 'exit' ? "console.error('no chunks here'); process.exit(1);" : 'setTimeout(() => {}, 60_000);'}
`,
  );
}

function runBootstrap(script: string, env: Record<string, string> = {}) {
  // The bootstrap keeps a copy of each worker's log in the user's state folder: the test's, not root's.
  const places = { XDG_STATE_HOME: join(dir, 'state'), XDG_CACHE_HOME: join(dir, 'cache') };
  return spawnSync('sh', ['-s'], { input: script, encoding: 'utf8', env: { ...process.env, ...places, ...env }, timeout: 30_000 });
}

test('bootstrap starts a detached worker that gets the command argv exactly, and says where', async () => {
  writeFileSync(join(dir, 'job', 'job.json'), '{}');
  writeStandInTool('idle');
  const result = runBootstrap(await renderBootstrap(settings({ node: process.execPath })));
  assert.equal(result.status, 0, result.stderr);
  const out = parseBootstrapOutput(result.stdout);
  const pid = Number(out['pid']);
  pids.push(pid);
  assert.equal(out['lanes'], '3');
  assert.equal(out['node'], process.execPath);
  assert.match(out['log'] ?? '', new RegExp(`^${dir}/job/logs/launch-.+-\\d+\\.log$`));
  const argv = JSON.parse(readFileSync(join(dir, 'job', `argv-${pid}.json`), 'utf8')) as string[];
  assert.deepEqual(argv, ['work', join(dir, 'job'), '-j', '3', '--', 'printf', '%s\n', hostile, '--', '']);
  // Detached: its own session, stdin from /dev/null, not a child of anything we hold.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  assert.equal(Number(stat[3]), pid, 'the worker leads its own session (setsid)');
  assert.equal(readFileSync(`/proc/${pid}/fd/0`, { encoding: 'utf8', flag: 'r' }), '');
});

test('bootstrap runs the worker in the working directory, with the environment and work options given', async () => {
  writeFileSync(join(dir, 'job', 'job.json'), '{}');
  writeStandInTool('idle');
  const cwd = join(dir, `tools ${hostile}`.replace(/\//g, '_'));
  mkdirSync(cwd, { recursive: true });
  const result = runBootstrap(await renderBootstrap(settings({ node: process.execPath, cwd, env: [['HOSTILE', hostile], ['EMPTY', '']], workOptions: ['--warm', '--max-chunks-per-process', '7'] })));
  assert.equal(result.status, 0, result.stderr);
  const pid = Number(parseBootstrapOutput(result.stdout)['pid']);
  pids.push(pid);
  assert.equal(parseBootstrapOutput(result.stdout)['cwd'], cwd);
  const argv = JSON.parse(readFileSync(join(dir, 'job', `argv-${pid}.json`), 'utf8')) as string[];
  assert.deepEqual(argv, ['work', join(dir, 'job'), '-j', '3', '--warm', '--max-chunks-per-process', '7', '--', 'printf', '%s\n', hostile, '--', '']);
  const place = JSON.parse(readFileSync(join(dir, 'job', `place-${pid}.json`), 'utf8')) as { cwd: string; env: Record<string, string> };
  assert.equal(place.cwd, cwd);
  assert.equal(place.env['HOSTILE'], hostile);
  assert.equal(place.env['EMPTY'], '');
  assert.equal(existsSync(join(dir, 'pwned')) || existsSync(join(dir, 'pwned2')), false);

  // A working directory the host does not have: its own status, before any worker starts.
  const noCwd = runBootstrap(await renderBootstrap(settings({ action: 'check', cwd: join(dir, 'no-such-folder') })));
  assert.equal(noCwd.status, BootstrapExit.noWorkingDirectory);
  assert.match(bootstrapErrorMessage(noCwd.stderr) ?? '', /the working directory .*no-such-folder does not exist on .* \(give launch --cwd DIR/);
});

test('bootstrap failures have distinct statuses and clear messages', async () => {
  writeFileSync(join(dir, 'job', 'job.json'), '{}');
  writeStandInTool('exit');
  const died = runBootstrap(await renderBootstrap(settings({ node: process.execPath })));
  assert.equal(died.status, BootstrapExit.workerDied);
  assert.match(died.stderr, /no chunks here/);
  assert.match(bootstrapErrorMessage(died.stderr) ?? '', /the worker exited at once \(log: /);

  const noTool = runBootstrap(await renderBootstrap(settings({ tool: join(dir, 'missing.mjs') })));
  assert.equal(noTool.status, BootstrapExit.toolMissing);
  assert.match(bootstrapErrorMessage(noTool.stderr) ?? '', /piecework CLI is missing at .*missing\.mjs/);

  const noJob = runBootstrap(await renderBootstrap(settings({ job: join(dir, 'not-a-job') })));
  assert.equal(noJob.status, BootstrapExit.noJob);
  assert.match(bootstrapErrorMessage(noJob.stderr) ?? '', /no piecework job at .*not-a-job \(.*job\.json is missing/);

  // A node too old for piecework (the minimum raised past this one) is named with its version.
  const script = (await renderBootstrap(settings({ action: 'check' }))).replace('\nPW_NODE_MIN=20.19\n', '\nPW_NODE_MIN=99.1\n');
  const old = runBootstrap(script);
  assert.equal(old.status, BootstrapExit.noNode, old.stderr);
  assert.match(bootstrapErrorMessage(old.stderr) ?? '', new RegExp(`node >= 99\\.1 is needed; found only: .*\\(v${process.versions.node.replaceAll('.', '\\.')}\\)`));

  const check = runBootstrap(await renderBootstrap(settings({ action: 'check' })));
  assert.equal(check.status, 0, check.stderr);
  assert.equal(parseBootstrapOutput(check.stdout)['job'], join(dir, 'job'));
});
