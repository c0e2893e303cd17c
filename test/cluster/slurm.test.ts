// `launch --provider slurm` against a real one-node Slurm cluster (munged, slurmctld, slurmd on
// this machine, see helpers/slurm.ts): the workers go in as one sbatch array whose tasks run
// `piecework work` on the job folder (the "cluster file system" is this machine's disk), and
// `--delete` cancels them. Skipped, with the reason, where Slurm cannot run.
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { isAlive, listProcesses, runCleanups } from '../helpers/cleanup.js';
import { repoRoot, runPiecework } from '../helpers/cli.js';
import { cleanHostState, makeSharedJob } from '../helpers/remote-job.js';
import { slurmOutputs, slurmUnavailable, startSlurm, type SlurmCluster } from '../helpers/slurm.js';
import { startSshd, waitUntil } from '../helpers/sshd.js';
import { makeTempDir } from '../helpers/tmp.js';

const unavailable = slurmUnavailable();

/** Live `piecework work JOB` processes on this machine. */
function workersOf(job: string): number[] {
  return listProcesses()
    .filter((p) => {
      if (!isAlive(p.pid)) return false;
      try {
        const argv = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').split('\0');
        return argv[2] === 'work' && argv[3] === job;
      } catch {
        return false;
      }
    })
    .map((p) => p.pid);
}

void describe('launch --provider slurm', { skip: unavailable ? `Slurm cannot run here: ${unavailable}` : false }, () => {
  let slurm: SlurmCluster;
  after(() => runCleanups());

  void test('a one-node cluster comes up', async (t) => {
    const started = Date.now();
    slurm = await startSlurm();
    cleanHostState();
    t.diagnostic(`munged + slurmctld + slurmd up in ${((Date.now() - started) / 1000).toFixed(1)} s (${slurm.cpus} CPUs, node ${slurm.nodeName})`);
  });

  void test('--count 2 submits an sbatch array whose tasks run the workers; --wait sees the job complete', async (t) => {
    assert.ok(slurm, 'the cluster came up');
    const { job, expected } = makeSharedJob(makeTempDir('slurm-share'), 'slurm', 40);
    const started = Date.now();
    const launch = await runPiecework(['launch', job, '--provider', 'slurm', '--count', '2', '-j', '1', '--wait', '--', 'sh', '-c', 'sleep 0.2; tr a-z A-Z'], { env: slurm.env });
    t.diagnostic(`launch --provider slurm --wait: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    assert.equal(launch.code, 0, `${launch.stderr}\n${slurm.logs()}`);
    const arrayId = launch.stdout.trim();
    assert.match(arrayId, /^\d+$/, 'sbatch --parsable prints the array job id');
    assert.match(launch.stderr, /launch: running sbatch --array=1-2 --job-name=pw-[0-9a-f]{16} /);
    assert.match(launch.stderr, /launch: job complete: 40 chunks done/);

    // --wait returns when the job is complete; the tasks end (and write their last lines) just after.
    await waitUntil(async () => (await slurm.queue()).length === 0, 15_000, 'the array to leave the queue');
    assert.equal((await runPiecework(['verify', job])).code, 0);
    assert.equal((await runPiecework(['merge', job])).stdout, expected, 'merge equals the serial run');

    // Two array tasks, each one worker, each with its own Slurm output in the job's logs/.
    const outputs = slurmOutputs(join(job, 'logs')).sort();
    assert.deepEqual(outputs, [`slurm-${arrayId}_1.log`, `slurm-${arrayId}_2.log`]);
    for (const [i, name] of outputs.entries()) {
      const text = readFileSync(join(job, 'logs', name), 'utf8');
      assert.match(text, new RegExp(`piecework-slurm: task ${i + 1} of array job ${arrayId} on \\S+, 1 lanes`));
      assert.match(text, /piecework-worker: exit=0/);
    }
    const beats = readdirSync(join(job, 'workers')).filter((n) => n.endsWith('.json'));
    assert.equal(beats.length, 2, 'one worker per task');
    const done = beats.map((n) => (JSON.parse(readFileSync(join(job, 'workers', n), 'utf8')) as { done: number }).done);
    t.diagnostic(`chunks per task: ${done.join(', ')}`);
    assert.equal(done.reduce((a, b) => a + b, 0), 40);
  });

  void test('--warm and --max-chunks-per-process reach the tasks\' workers: each lane\'s process takes chunk after chunk, and is replaced after N', async (t) => {
    assert.ok(slurm, 'the cluster came up');
    const { job, expected } = makeSharedJob(makeTempDir('slurm-share'), 'slurm-warm', 24);
    // The shipped helper next to a script that upper-cases each chunk and notes which process did it.
    const tools = makeTempDir('slurm-warm-tools');
    copyFileSync(join(repoRoot, 'templates', 'piecework_warm.py'), join(tools, 'piecework_warm.py'));
    const served = join(tools, 'served.log');
    writeFileSync(join(tools, 'upper.py'), [
      'import os',
      'from piecework_warm import serve',
      'def process(in_path, out_path):',
      '    with open(in_path) as src, open(out_path, "w") as dst:',
      '        dst.write(src.read().upper())',
      `    with open(${JSON.stringify(served)}, "a") as log:`,
      '        log.write(f"{os.getpid()}\\n")',
      'serve(process)',
      '',
    ].join('\n'));
    const launch = await runPiecework(['launch', job, '--provider', 'slurm', '--count', '1', '-j', '2', '--cwd', tools, '--warm', '--max-chunks-per-process', '5', '--wait', '--', '/usr/bin/python3', 'upper.py'], { env: slurm.env });
    assert.equal(launch.code, 0, `${launch.stderr}\n${slurm.logs()}`);
    assert.match(launch.stderr, /launch: job complete: 24 chunks done/);
    await waitUntil(async () => (await slurm.queue()).length === 0, 15_000, 'the array to leave the queue');
    assert.equal((await runPiecework(['merge', job])).stdout, expected, 'merge equals the serial run');

    // 24 chunks over 2 lanes, a fresh process every 5: at least 5 processes, none with more than 5
    // chunks — not one per chunk (no --warm) and not one per lane (no --max-chunks-per-process).
    const perProcess = new Map<string, number>();
    for (const pid of readFileSync(served, 'utf8').trim().split('\n')) perProcess.set(pid, (perProcess.get(pid) ?? 0) + 1);
    t.diagnostic(`chunks per warm process: ${[...perProcess.values()].join(', ')}`);
    assert.equal([...perProcess.values()].reduce((a, b) => a + b, 0), 24);
    assert.ok(perProcess.size >= 5 && perProcess.size <= 8, `${perProcess.size} processes`);
    assert.ok([...perProcess.values()].every((n) => n <= 5), 'no process past --max-chunks-per-process');
  });

  void test('--via sftp: the tasks run `work sftp://…` against a head that only has sshd, fetch the CLI from there, and complete the job; their output goes to the state folder', async (t) => {
    assert.ok(slurm, 'the cluster came up');
    // The head: a real sshd on this machine; the job in the folder it serves. The tasks get a home
    // of their own (sbatch passes HOME on), so the CLI is not there until they fetch it.
    const head = await startSshd();
    const { job, expected } = makeSharedJob(head.root, 'slurm-sftp', 20);
    const home = makeTempDir('slurm-home');
    const started = Date.now();
    const launch = await runPiecework([
      'launch', job, '--provider', 'slurm', '--count', '2', '-j', '1', '--via', 'sftp', '--head', `root@127.0.0.1:${head.port}`,
      '--head-identity', head.clientKeyPath, '--identity', head.clientKeyPath, '--known-hosts', head.knownHostsPath, '--wait', '--', 'sh', '-c', 'sleep 0.2; tr a-z A-Z',
    ], { env: { ...slurm.env, HOME: home, SSH_AUTH_SOCK: '' } });
    t.diagnostic(`launch --provider slurm --via sftp --wait: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    assert.equal(launch.code, 0, `${launch.stderr}\n${slurm.logs()}`);
    const arrayId = launch.stdout.trim();
    assert.match(launch.stderr, /launch: job complete: 20 chunks done/);
    await waitUntil(async () => (await slurm.queue()).length === 0, 15_000, 'the array to leave the queue');
    assert.equal((await runPiecework(['merge', job])).stdout, expected, 'merge equals the serial run');

    // Each task fetched the CLI into its home and worked over SFTP: the job has no Slurm output, the state folder has.
    assert.ok(existsSync(join(home, '.cache', 'piecework')), 'the CLI was fetched into the tasks\' home');
    assert.deepEqual(slurmOutputs(join(job, 'logs')), []);
    const logs = join(home, '.local', 'state', 'piecework', 'logs');
    const outputs = readdirSync(logs).filter((n) => n.includes(`-slurm-${arrayId}_`)).sort();
    assert.equal(outputs.length, 2, readdirSync(logs).join(' '));
    for (const name of outputs) {
      const text = readFileSync(join(logs, name), 'utf8');
      assert.match(text, /piecework-bootstrap: tool=fetched root@127\.0\.0\.1:\/.*\/\.piecework\/[^/]+\/piecework\.mjs/, text);
      assert.match(text, /piecework-worker: exit=0/, text);
    }
    const beats = readdirSync(join(job, 'workers')).filter((n) => n.endsWith('.json'));
    assert.equal(beats.length, 2, 'one worker per task');
  });

  void test('--wait: an array whose tasks all fail before a worker starts (a key the nodes do not have) ends the wait at once with exit 3, pointing at their output', { timeout: 180_000 }, async (t) => {
    assert.ok(slurm, 'the cluster came up');
    const head = await startSshd();
    const { job } = makeSharedJob(head.root, 'slurm-nokey', 10);
    const home = makeTempDir('slurm-home');
    const started = Date.now();
    const launch = await runPiecework([
      'launch', job, '--provider', 'slurm', '--count', '2', '-j', '1', '--via', 'sftp', '--head', `root@127.0.0.1:${head.port}`,
      '--head-identity', join(home, 'no-such-key'), '--identity', head.clientKeyPath, '--known-hosts', head.knownHostsPath, '--wait', '--', 'cat',
    ], { env: { ...slurm.env, HOME: home, SSH_AUTH_SOCK: '' } });
    const waited = (Date.now() - started) / 1000;
    t.diagnostic(`launch --wait gave up after ${waited.toFixed(1)} s`);
    assert.equal(launch.code, 3, launch.stderr);
    const arrayId = launch.stdout.trim();
    assert.match(launch.stderr, new RegExp(`launch: the Slurm array ${arrayId} left the queue with 10 chunks left and no worker alive`));
    const hint = /its tasks' output says why: (\S+)/.exec(launch.stderr)?.[1];
    assert.ok(hint, launch.stderr);
    assert.ok(waited < 120, 'not the 15 minutes allowed for a queue or a boot');
    const logs = join(home, '.local', 'state', 'piecework', 'logs');
    const outputs = readdirSync(logs).filter((n) => n.includes(`-slurm-${arrayId}_`));
    assert.equal(outputs.length, 2);
    assert.ok(outputs.every((n) => hint.endsWith('*.log') && join(logs, n).startsWith(hint.slice(0, -'*.log'.length))), `${hint} names ${outputs.join(' ')}`);
    for (const name of outputs) assert.match(readFileSync(join(logs, name), 'utf8'), /piecework-bootstrap: error: cannot fetch piecework from the head/);
  });

  void test('--delete cancels the array: its tasks and workers end', async (t) => {
    assert.ok(slurm, 'the cluster came up');
    const { job } = makeSharedJob(makeTempDir('slurm-share'), 'cancel', 20);
    const launch = await runPiecework(['launch', job, '--provider', 'slurm', '--count', '2', '-j', '1', '--', 'sh', '-c', 'sleep 120; cat'], { env: slurm.env });
    assert.equal(launch.code, 0, launch.stderr);
    await waitUntil(async () => (await slurm.queue()).filter((l) => / RUNNING$/.test(l)).length === 2 && workersOf(job).length === 2, 30_000, 'two running tasks with a worker each');
    const workers = workersOf(job);

    const t0 = Date.now();
    const cancel = await runPiecework(['launch', job, '--provider', 'slurm', '--delete'], { env: slurm.env });
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.match(cancel.stderr, /launch: running scancel --name=pw-[0-9a-f]{16} --user=root/);
    await waitUntil(async () => (await slurm.queue()).length === 0, 20_000, 'the cancelled array to leave the queue');
    await waitUntil(() => workers.every((pid) => !isAlive(pid)), 20_000, 'the workers to end');
    t.diagnostic(`cancelled: queue empty and workers gone ${((Date.now() - t0) / 1000).toFixed(1)} s after --delete`);
    assert.deepEqual(workersOf(job), []);
  });
});
