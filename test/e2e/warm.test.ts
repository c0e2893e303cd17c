// `work --warm`: one process per lane, fed chunks over the request/reply line protocol. The
// programs here are real Python scripts; each behaves by the content of the chunk it is given.
// Every process a test starts is ended by pid in `after`, even when an assertion failed first:
// warm processes lead process groups of their own, so killing the worker's group misses them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, promises as fs, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { collect, killGroup, runPiecework, startPiecework, type RunResult } from '../helpers/cli.js';
import { isAlive, killTree } from '../helpers/cleanup.js';
import { filesUnder, readJson } from '../helpers/job.js';
import { waitUntil } from '../helpers/wait.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-warm-${process.pid}-`));
// Debian's interpreter starts in ~20 ms; a pyenv shim takes ~0.5 s, which only slows the tests.
const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const startedPids = new Set<number>();

after(async () => {
  for (const pid of startedPids) if (isAlive(pid)) killTree(pid, 500);
  await fs.rm(root, { recursive: true, force: true });
});

/** A warm worker script: notes what it does in files under `dir`; behaviour by chunk content. */
const script = String.raw`
import json, os, subprocess, sys, time
here = os.environ["PW_TEST_DIR"]
def note(name, text):
    with open(os.path.join(here, name), "a") as f:
        f.write(text + "\n")
pid = os.getpid()
note("pids", str(pid))
if os.environ.get("PW_SLOW_START"):
    print("loading the model for a while", file=sys.stderr, flush=True)
    time.sleep(float(os.environ["PW_SLOW_START"]))
if os.environ.get("PW_BROKEN"):
    print("loading the model", flush=True)
    import no_such_module_pw
for line in sys.stdin:
    request = json.loads(line)
    note("requests", line.strip())
    note("chunks", "%d %s %d" % (pid, request["name"], request["attempt"]))
    data = open(request["in"]).read()
    word = data.strip()
    if word == "hang" and request["attempt"] == 1:
        note("hanging", str(pid))
        time.sleep(300)
    if word == "tree":
        note("grandchild", str(subprocess.Popen(["sleep", "301"]).pid))
        time.sleep(300)
    if word == "slow":
        note("slow", str(pid))
        time.sleep(1.5)
    if word == "stuck":
        note("stuck", str(pid))
        time.sleep(300)
    if word == "junk":
        for text in ["ok then", "okay", " ok", "fail-safe mode", "OK"]:
            print(text, flush=True)
        time.sleep(0.1)
    if word == "bad":
        print("ok-ish", flush=True)
        print("boom on stderr", file=sys.stderr, flush=True)
        print("fail cannot handle bad", flush=True)
        continue
    if word == "closeout":
        note("closeout", str(pid))
        os.close(1)
        time.sleep(300)
    if word == "flood":
        block = b"x" * (1 << 20)
        for _ in range(100):
            sys.stdout.buffer.write(block)
        sys.stdout.buffer.write(b"\n")
        sys.stdout.flush()
    if word == "buffered" or os.environ.get("PW_ALL_BUFFERED"):
        # An answer left in an output buffer that is never flushed: stuck both ways.
        with open(request["out"], "w") as f:
            f.write(data)
        if "held" not in globals():
            held = os.fdopen(os.dup(1), "w", buffering=65536)
        held.write("ok\n")
        continue
    if word == "noclose":
        # Forgot to close: the data is still in Python's buffer as it answers.
        kept = open(request["out"], "w")
        kept.write(data.upper())
        print("ok", flush=True)
        continue
    if word == "lateclose":
        # Closed 50 ms after its answer (as a Node write stream ends): committed whole.
        late = open(request["out"], "w")
        late.write(data.upper())
        print("ok", flush=True)
        time.sleep(0.05)
        late.close()
        continue
    if word == "bgwriter":
        # A helper process, left running, still writes the output.
        with open(request["out"], "w") as f:
            f.write(data.upper())
            helper = subprocess.Popen(["sleep", "3"], stdout=f)
        note("helper", str(helper.pid))
        print("ok", flush=True)
        continue
    if word == "shout" or os.environ.get("PW_ALL_SHOUT"):
        # A wrong answer, flushed: "OK" is not "ok".
        with open(request["out"], "w") as f:
            f.write(data)
        print("OK", flush=True)
        continue
    if word == "twice":
        with open(request["out"], "w") as f:
            f.write(data)
        print("ok\nok", flush=True)
        continue
    if word == "nowrite":
        with open(request["out"] + ".elsewhere", "w") as f:
            f.write(data)
        print("ok", flush=True)
        continue
    with open(request["out"], "w") as f:
        f.write(data.upper())
    print("ok", flush=not os.environ.get("PW_PLAIN_PRINT"))
    if os.environ.get("PW_ONE_SHOT"):
        break
note("eof", str(pid))
if os.environ.get("PW_SLOW_EXIT"):
    os.close(1)
    time.sleep(1.5)
    note("clean-exit", str(pid))
`;

interface Setup {
  job: string;
  dir: string;
  command: string[];
  env: NodeJS.ProcessEnv;
  /** Lines of a note file the script wrote ([] if none). */
  notes(name: string): string[];
}

async function setup(name: string, lines: string[], splitArgs: string[] = []): Promise<Setup> {
  const dir = path.join(root, name);
  await fs.mkdir(dir);
  const file = path.join(dir, 'worker.py');
  await fs.writeFile(file, script);
  const input = path.join(dir, 'input.txt');
  await fs.writeFile(input, lines.join('\n') + '\n');
  const split = await runPiecework(['split', input, '--lines', '1', ...splitArgs, '--into', path.join(dir, 'job')]);
  assert.equal(split.code, 0, split.stderr);
  const notes = (note: string) => {
    try {
      const text = readFileSync(path.join(dir, note), 'utf8').trim();
      return text ? text.split('\n') : [];
    } catch {
      return [];
    }
  };
  return { job: split.stdout.trim(), dir, command: [python, file], env: { PW_TEST_DIR: dir }, notes };
}

/** Remember every warm process the script noted, so `after` can end it whatever happened. */
function trackPids(s: Setup): number[] {
  const pids = s.notes('pids').map(Number);
  for (const pid of pids) startedPids.add(pid);
  return pids;
}

/**
 * `work --warm` on the setup's job, ended by a 30 s guard: a behaviour that would hang fails its
 * test instead of the suite. The processes its program noted are tracked for `after`.
 */
async function guardedWork(s: Setup, args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  const child = startPiecework(['work', s.job, ...args, '--warm', '--', ...s.command], { env: { ...s.env, ...env } });
  const deadline = setTimeout(() => killGroup(child), 30_000);
  try {
    return await collect(child);
  } finally {
    clearTimeout(deadline);
    trackPids(s);
  }
}

const words = (count: number) => Array.from({ length: count }, (_, i) => `word${i}`);

test('each lane starts its command once and sends one JSON request per chunk; the merge equals a serial run', async () => {
  const s = await setup('basic', words(40));
  const work = await runPiecework(['work', s.job, '-j', '2', '--warm', '--', ...s.command], { env: s.env });
  const pids = trackPids(s);
  assert.equal(work.code, 0, work.stderr);
  assert.ok(pids.length >= 1 && pids.length <= 2, `${pids.length} processes for 2 lanes`);
  assert.equal(s.notes('eof').length, pids.length, 'every process saw its stdin close and exited by itself');
  const merged = await runPiecework(['merge', s.job]);
  assert.equal(merged.stdout, words(40).map((w) => `${w.toUpperCase()}\n`).join(''), 'byte-identical to a serial run');

  const request = JSON.parse(s.notes('requests')[0]!) as Record<string, unknown>;
  assert.deepEqual(Object.keys(request), ['v', 'in', 'out', 'name', 'files', 'attempt', 'job']);
  assert.equal(request.v, 1);
  assert.equal(request.in, path.join(s.job, 'chunks', request.name as string));
  assert.ok((request.out as string).startsWith(path.join(s.job, '.tmp') + '/'), 'out is a temp file, committed by piecework');
  assert.equal(request.files, null);
  assert.equal(request.attempt, 1);
  assert.equal(request.job, s.job);
  assert.deepEqual(filesUnder(path.join(s.job, 'locks')), []);
  assert.deepEqual(filesUnder(path.join(s.job, '.tmp')), []);
});

test('a warm process killed mid-chunk fails that attempt with the signal; a fresh process runs the rest; the heartbeat shows its memory', async () => {
  const s = await setup('killed', ['a', 'b', 'hang', 'c', 'd'], ['--stale', '8']);
  const worker = startPiecework(['work', s.job, '-j', '1', '--warm', '--', ...s.command], { env: s.env });
  const result = collect(worker);
  try {
    await waitUntil(() => s.notes('hanging').length === 1, 20_000, 'the process to start on the chunk that hangs');
    trackPids(s);
    const victim = Number(s.notes('hanging')[0]);
    const heartbeatFile = path.join(s.job, 'workers', filesUnder(path.join(s.job, 'workers'))[0]!);
    type Beat = { warm?: { lane: number; pid: number; rssKb: number | null }[] };
    await waitUntil(async () => ((await readJson<Beat>(heartbeatFile).catch((): Beat => ({}))).warm?.[0]?.pid ?? 0) === victim, 15_000, 'a heartbeat naming the warm process');
    const beat = await readJson<Beat>(heartbeatFile);
    assert.ok((beat.warm![0]!.rssKb ?? 0) > 1000, `RSS of a Python process: ${beat.warm![0]!.rssKb} kB`);
    const status = await runPiecework(['status', s.job]);
    assert.match(status.stdout + status.stderr, /WARM RSS[\s\S]*\d+(\.\d+)? MiB in 1/, 'status shows the memory of the warm process');
    process.kill(victim, 'SIGKILL');
    const done = await result;
    trackPids(s);
    assert.equal(done.code, 0, done.stderr);
  } finally {
    killTree(worker.pid!, 500);
    killGroup(worker);
  }
  const record = await readJson<{ attempts: number; signal: string; reason: string }>(path.join(s.job, 'failed', '000002.json'));
  assert.equal(record.attempts, 1);
  assert.equal(record.signal, 'SIGKILL');
  assert.match(record.reason, /ended without answering: killed .*by SIGKILL/);
  const chunks = s.notes('chunks').map((line) => line.split(' '));
  const victim = Number(s.notes('hanging')[0]);
  const hung = chunks.findIndex(([pid, name]) => Number(pid) === victim && name === '000002');
  const after = chunks.slice(hung + 1);
  assert.ok(hung >= 0);
  assert.ok(after.length > 0 && after.every(([pid]) => Number(pid) !== victim), 'later chunks ran in a fresh process');
  assert.equal((await runPiecework(['merge', s.job])).stdout, 'A\nB\nHANG\nC\nD\n');
});

test('a command that dies before its first answer, again and again, stops the worker with its stderr, burning few attempts', async () => {
  const s = await setup('broken', words(20));
  const work = await runPiecework(['work', s.job, '-j', '2', '--warm', '--', ...s.command], { env: { ...s.env, PW_BROKEN: '1' } });
  trackPids(s);
  assert.equal(work.code, 1, work.stderr);
  assert.match(work.stderr, /died before answering its first request, 3 times in a row \(last: exit 1\)/);
  assert.match(work.stderr, /ModuleNotFoundError: No module named 'no_such_module_pw'/, 'the stderr tail is shown');
  assert.doesNotMatch(work.stderr, /\n\s+at /, 'no stack trace of ours');
  const failed = filesUnder(path.join(s.job, 'failed'));
  assert.ok(failed.length >= 1 && failed.length <= 4, `${failed.length} attempts burned (3 in a row, + 1 on the other lane at most)`);
  assert.ok(s.notes('pids').length <= 4, `${s.notes('pids').length} processes started`);
  assert.deepEqual(filesUnder(path.join(s.job, 'locks')), []);
  const record = await readJson<{ stderrTail: string }>(path.join(s.job, 'failed', failed[0]!));
  assert.match(record.stderrTail, /\[stdout\] loading the model/, 'stray stdout of the start-up is kept with the stderr');

  const missing = await runPiecework(['work', s.job, '--warm', '--', 'no-such-command-pw']);
  assert.equal(missing.code, 127, missing.stderr);
  assert.match(missing.stderr, /command not found: no-such-command-pw/);
});

test('--timeout kills the warm process and its whole group; the next chunk gets a fresh process', async () => {
  const s = await setup('timeout', ['a', 'tree', 'b', 'c']);
  const work = await runPiecework(['work', s.job, '-j', '1', '--timeout', '1', '--retries', '0', '--warm', '--', ...s.command], { env: s.env });
  const pids = trackPids(s);
  assert.equal(work.code, 1, work.stderr);
  const record = await readJson<{ timedOut: boolean; reason: string }>(path.join(s.job, 'failed', '000001.json'));
  assert.equal(record.timedOut, true);
  assert.match(record.reason, /timed out after 1\.0s/);
  assert.deepEqual(filesUnder(path.join(s.job, 'out')), ['000000', '000002', '000003']);
  // Chunks come in shuffled order: whichever followed the timed-out one ran in a fresh process.
  const chunks = s.notes('chunks').map((line) => line.split(' '));
  const timedOutAt = chunks.findIndex(([, name]) => name === '000001');
  const timedOutPid = chunks[timedOutAt]![0];
  assert.ok(chunks.slice(timedOutAt + 1).every(([pid]) => pid !== timedOutPid), 'no request went to the killed process');
  assert.equal(new Set(pids).size, timedOutAt === chunks.length - 1 ? 1 : 2);
  const grandchild = Number(s.notes('grandchild')[0]);
  startedPids.add(grandchild);
  await waitUntil(() => !isAlive(grandchild), 5000, 'the grandchild of the timed-out process to be gone');
});

test('a start-up longer than --timeout stops the worker after 3 processes, saying that the first request waits for it — not every chunk\'s retries burnt', async () => {
  const s = await setup('slow-start', ['a', 'b', 'c', 'd']);
  const work = await guardedWork(s, ['-j', '1', '--timeout', '1'], { PW_SLOW_START: '3' });
  const pids = trackPids(s);
  assert.equal(work.code, 1, work.stderr);
  assert.match(work.stderr, /the command never answered its first request within --timeout 1\.0s, 3 times in a row: with --warm, each process's first request waits for the program's start-up as well; its stderr ended with:\n\s+loading the model for a while/);
  assert.match(work.stderr, /give --timeout the program's start-up plus one chunk's time/);
  assert.equal(pids.length, 3);
  assert.ok(pids.every((pid) => !isAlive(pid)), 'every process it started is gone');
  // Three attempts recorded, none for good: before, every chunk timed out until its retries ran out.
  const records = await Promise.all(filesUnder(path.join(s.job, 'failed')).map((name) => readJson<{ attempts: number; maxAttempts: number; reason: string }>(path.join(s.job, 'failed', name))));
  assert.equal(records.reduce((sum, r) => sum + r.attempts, 0), 3);
  assert.ok(records.every((r) => r.attempts < r.maxAttempts && /^timed out after 1\.0s/.test(r.reason)), JSON.stringify(records));

  // With a --timeout above start-up plus a chunk, the same command completes the job.
  const again = await guardedWork(s, ['-j', '1', '--timeout', '10'], { PW_SLOW_START: '3' });
  assert.equal(again.code, 0, again.stderr);
  assert.equal((await runPiecework(['merge', s.job])).stdout, 'A\nB\nC\nD\n');
});

test('SIGTERM: no new request, the chunk under way finishes and is committed, stdin is closed, exit 143', async () => {
  const s = await setup('drain', ['slow', 'slow', 'slow', 'slow', 'slow']);
  const worker = startPiecework(['work', s.job, '-j', '1', '--warm', '--', ...s.command], { env: s.env });
  const result = collect(worker);
  try {
    await waitUntil(() => s.notes('slow').length === 1, 20_000, 'the first chunk to start');
    trackPids(s);
    process.kill(worker.pid!, 'SIGTERM');
    const done = await result;
    assert.equal(done.code, 143, done.stderr);
  } finally {
    killTree(worker.pid!, 500);
    killGroup(worker);
  }
  assert.equal(filesUnder(path.join(s.job, 'out')).length, 1, 'the chunk under way was committed');
  assert.equal(s.notes('slow').length, 1, 'no new request after the signal');
  assert.equal(s.notes('eof').length, 1, 'the program saw its stdin close');
  assert.deepEqual(filesUnder(path.join(s.job, 'failed')), []);
  assert.deepEqual(filesUnder(path.join(s.job, 'locks')), []);
  assert.deepEqual(filesUnder(path.join(s.job, '.tmp')), []);
});

test('SIGTERM: a chunk that does not finish within the grace period is killed, and is not counted as failed', async () => {
  const s = await setup('drain-kill', ['stuck', 'a']);
  const worker = startPiecework(['work', s.job, '-j', '1', '--warm', '--', ...s.command], { env: s.env });
  const result = collect(worker);
  try {
    await waitUntil(() => s.notes('stuck').length === 1, 20_000, 'the stuck chunk to start');
    const pid = Number(s.notes('stuck')[0]);
    trackPids(s);
    const signalled = Date.now();
    process.kill(worker.pid!, 'SIGTERM');
    const done = await result;
    assert.equal(done.code, 143, done.stderr);
    const waited = Date.now() - signalled;
    assert.ok(waited >= 4000 && waited < 15_000, `waited ${waited} ms: the grace period, then the kill`);
    assert.equal(isAlive(pid), false, 'the warm process is gone');
  } finally {
    killTree(worker.pid!, 500);
    killGroup(worker);
  }
  assert.ok(!filesUnder(path.join(s.job, 'out')).includes('000000'), 'the killed chunk has no output');
  assert.deepEqual(filesUnder(path.join(s.job, 'failed')), [], 'an interruption is not a failure');
  assert.deepEqual(filesUnder(path.join(s.job, 'locks')), []);
});

test('stdout lines that are not replies go to the log and the stderr tail; they are never taken as answers', async () => {
  const s = await setup('junk', ['junk', 'bad', 'z']);
  const work = await runPiecework(['work', s.job, '-j', '1', '--retries', '0', '--warm', '--', ...s.command], { env: s.env });
  trackPids(s);
  assert.equal(work.code, 1, work.stderr);
  // "ok then" taken as an answer would have committed before the output was written: a failure.
  assert.deepEqual(filesUnder(path.join(s.job, 'out')), ['000000', '000002']);
  assert.equal(readFileSync(path.join(s.job, 'out', '000000'), 'utf8'), 'JUNK\n');
  const record = await readJson<{ reason: string; stderrTail: string }>(path.join(s.job, 'failed', '000001.json'));
  assert.equal(record.reason, 'failed: cannot handle bad');
  assert.match(record.stderrTail, /\[stdout\] ok-ish/);
  assert.match(record.stderrTail, /boom on stderr/);
  assert.doesNotMatch(record.stderrTail, /ok then/, "the tail holds this chunk's lines only");
  const log = readFileSync(path.join(s.job, 'logs', filesUnder(path.join(s.job, 'logs'))[0]!), 'utf8');
  for (const stray of ['ok then', 'okay', 'fail-safe mode', 'OK']) assert.match(log, new RegExp(`chunk=000000 stdout ${stray}\\n`));
  assert.equal(new Set(s.notes('pids')).size, 1, 'a fail answer does not cost the process');
});

test('an ok with no output written at "out" fails the attempt with the reason, counts against retries, and is not taken for a lost claim', async () => {
  const s = await setup('nowrite', ['nowrite', 'y']);
  // Before: taken for a claim lost to a requeue, the chunk was tried again without end.
  const work = await guardedWork(s, ['-j', '1', '--retries', '1']);
  assert.equal(work.code, 1, work.stderr);
  assert.deepEqual(filesUnder(path.join(s.job, 'out')), ['000001']);
  const record = await readJson<{ reason: string; attempts: number }>(path.join(s.job, 'failed', '000000.json'));
  assert.equal(record.reason, 'the program answered ok but wrote no output to the request\'s "out" path');
  assert.equal(record.attempts, 2);
  assert.equal(s.notes('chunks').filter((line) => line.endsWith(' 000000 1') || line.endsWith(' 000000 2')).length, 2);
  assert.doesNotMatch(work.stderr, /claim lost/);
});

test('100 MB printed on stdout without a newline is cut to its first 4096 characters: the chunk completes and the worker stays small', async () => {
  const s = await setup('flood', ['flood', 'y']);
  // Before: each piece was joined to the whole line so far and split again, for minutes and
  // hundreds of MB; the 30 s guard ends such a worker and fails this test.
  const work = await guardedWork(s, ['-j', '1']);
  assert.equal(work.code, 0, work.stderr);
  assert.deepEqual(filesUnder(path.join(s.job, 'out')), ['000000', '000001']);
  assert.equal(readFileSync(path.join(s.job, 'out', '000000'), 'utf8'), 'FLOOD\n');
  const log = (await fs.readdir(path.join(s.job, 'logs'))).filter((name) => name.endsWith('.log')).map((name) => readFileSync(path.join(s.job, 'logs', name), 'utf8')).join('');
  const stray = log.split('\n').find((line) => / chunk=000000 stdout x/.test(line));
  assert.ok(stray, log);
  assert.ok(stray.length < 5000, `the logged line is ${stray.length} characters`);
  assert.match(stray, /\(the line had 104857600 characters/);
});

test('an answer stuck in an output buffer: the process, found waiting for its next request, is killed and that attempt fails with the reason', async () => {
  const s = await setup('buffered', ['buffered', 'y', 'z']);
  // Before: the program waited for a request, the lane for its answer — for ever.
  const work = await guardedWork(s, ['-j', '1', '--retries', '0']);
  assert.equal(work.code, 1, work.stderr);
  assert.deepEqual(filesUnder(path.join(s.job, 'out')), ['000001', '000002']);
  const record = await readJson<{ reason: string }>(path.join(s.job, 'failed', '000000.json'));
  assert.match(record.reason, /^the program waited for its next request without answering this one, and was killed: its answer is probably stuck in its output buffer/);
});

test('a program whose every answer is stuck stops the worker after 3 processes, saying to flush stdout', async () => {
  const s = await setup('all-buffered', ['a', 'b', 'c', 'd']);
  const work = await guardedWork(s, ['-j', '1'], { PW_ALL_BUFFERED: '1' });
  assert.equal(work.code, 1, work.stderr);
  assert.match(work.stderr, /never answered its first request, 3 times in a row: the program waited for its next request/);
  assert.match(work.stderr, /flush stdout after each answer — Python: print\("ok", flush=True\)/);
  assert.doesNotMatch(work.stderr, /\n\s+at /);
});

test('a wrong answer ("OK") is named in the failure, not taken for a buffering problem; every answer wrong stops the worker saying what an answer is', async () => {
  const s = await setup('shout', ['shout', 'b', 'c']);
  const work = await guardedWork(s, ['-j', '1', '--retries', '0']);
  assert.equal(work.code, 1, work.stderr);
  assert.deepEqual(filesUnder(path.join(s.job, 'out')), ['000001', '000002']);
  const record = await readJson<{ reason: string; stderrTail: string }>(path.join(s.job, 'failed', '000000.json'));
  assert.match(record.reason, /^the program waited for its next request without answering this one, and was killed; its last stdout line, "OK", is not an answer \(exactly `ok` or `fail <message>`\)/);
  assert.match(record.stderrTail, /\[stdout\] OK/);

  const all = await setup('all-shout', ['a', 'b', 'c', 'd']);
  const stopped = await guardedWork(all, ['-j', '1'], { PW_ALL_SHOUT: '1' });
  assert.equal(stopped.code, 1, stopped.stderr);
  assert.match(stopped.stderr, /never answered its first request, 3 times in a row: the program waited for its next request without answering this one, and was killed; its last stdout line, "OK", is not an answer/);
  assert.match(stopped.stderr, /answer each request with one line, exactly `ok` \(lower case\) or `fail <message>`/);
  assert.doesNotMatch(stopped.stderr, /Python: print\("ok", flush=True\)/, 'not the buffering hint');
});

test('an ok while the output is still open for writing (a file not closed, a helper still writing) fails the attempt: nothing half-written is committed; a close just after the answer is waited for', async () => {
  const s = await setup('still-open', ['noclose', 'bgwriter', 'lateclose']);
  const work = await guardedWork(s, ['-j', '1', '--retries', '0']);
  assert.equal(work.code, 1, work.stderr);
  assert.deepEqual(filesUnder(path.join(s.job, 'out')), ['000002']);
  assert.equal(readFileSync(path.join(s.job, 'out', '000002'), 'utf8'), 'LATECLOSE\n', 'closed within the grace: committed whole');
  const noclose = await readJson<{ reason: string }>(path.join(s.job, 'failed', '000000.json'));
  assert.match(noclose.reason, /^the program answered ok while it still had the output open for writing: what it has not flushed yet would be missing — close the file before answering/);
  const [helper] = s.notes('helper');
  const bg = await readJson<{ reason: string }>(path.join(s.job, 'failed', '000001.json'));
  assert.match(bg.reason, new RegExp(`^the program answered ok while its process ${helper} still had the output open for writing`));
});

test('print("ok") without flush works: Python runs unbuffered unless PYTHONUNBUFFERED was set', async () => {
  const s = await setup('plain-print', words(6));
  const work = await guardedWork(s, ['-j', '2'], { PW_PLAIN_PRINT: '1', PYTHONUNBUFFERED: undefined });
  assert.equal(work.code, 0, work.stderr);
  assert.equal(filesUnder(path.join(s.job, 'out')).length, 6);
});

test('a second answer to one request is a warning, and a fresh process takes the next chunk: answers stay with their chunks', async () => {
  const s = await setup('twice', ['twice', 'b', 'c', 'd']);
  // Shuffled order: "twice" may come at any point; whatever follows it goes to a new process.
  const work = await runPiecework(['work', s.job, '-j', '1', '--warm', '--', ...s.command], { env: s.env });
  const pids = trackPids(s);
  assert.equal(work.code, 0, work.stderr);
  assert.match(work.stderr, /warning: lane 0, chunk 000000: the warm process \(pid \d+\) answered this chunk's request twice \("ok" after its answer\)/);
  const [twicePid] = s.notes('chunks').filter((line) => line.split(' ')[1] === '000000').map((line) => line.split(' ')[0]);
  const after = s.notes('chunks').slice(s.notes('chunks').findIndex((line) => line.split(' ')[1] === '000000') + 1);
  assert.ok(after.every((line) => line.split(' ')[0] !== twicePid), `chunks after the double answer went to another process: ${s.notes('chunks').join(' | ')}`);
  assert.equal(pids.length, after.length > 0 ? 2 : 1);
  assert.equal((await runPiecework(['merge', s.job])).stdout, 'twice\nB\nC\nD\n');
});

test('a process that closes its stdout and lives on is killed, its chunk fails with the reason; a fresh process runs the rest', async () => {
  const s = await setup('closeout', ['closeout', 'y', 'z']);
  // Before: no answer could come and none was given up on; the worker waited for ever.
  const work = await guardedWork(s, ['-j', '1', '--retries', '0']);
  assert.equal(work.code, 1, work.stderr);
  assert.deepEqual(filesUnder(path.join(s.job, 'out')), ['000001', '000002']);
  const record = await readJson<{ reason: string; signal: string }>(path.join(s.job, 'failed', '000000.json'));
  assert.match(record.reason, /^the warm process closed its stdout, so it could not answer, and was killed/);
  assert.equal(record.signal, 'SIGTERM');
  const [closer] = s.notes('closeout').map(Number);
  assert.ok(closer !== undefined && !isAlive(closer), 'the process that closed its stdout is gone');
});

test('a process asked to exit (stdin closed) may close its stdout and take its time to shut down: it is not killed for it', async () => {
  const s = await setup('slow-exit', ['a', 'b']);
  const work = await runPiecework(['work', s.job, '-j', '1', '--warm', '--', ...s.command], { env: { ...s.env, PW_SLOW_EXIT: '1' } });
  const pids = trackPids(s);
  assert.equal(work.code, 0, work.stderr);
  assert.deepEqual(s.notes('clean-exit'), pids.map(String), 'its shutdown ran to the end');
});

test('a long-lived warm process keeps the worker small: 12 000 chunks in a 48 MB heap', async () => {
  const dir = path.join(root, 'long-lived');
  await fs.mkdir(dir);
  const copy = path.join(dir, 'copy.py');
  await fs.writeFile(copy, 'import json, shutil, sys\nfor line in sys.stdin:\n    r = json.loads(line)\n    shutil.copyfile(r["in"], r["out"])\n    print("ok", flush=True)\n');
  const input = path.join(dir, 'input.txt');
  await fs.writeFile(input, words(12_000).join('\n') + '\n');
  const job = (await runPiecework(['split', input, '--lines', '1', '--into', path.join(dir, 'job'), '-q'])).stdout.trim();
  // Before: each request left a reaction on the process's "ended" promise, holding its chunk's
  // state until the process ended — ~5 KB a chunk; this heap ran out after ~8 400 chunks.
  const work = await runPiecework(['work', job, '-j', '2', '--warm', '-q', '--', python, copy], { env: { NODE_OPTIONS: '--max-old-space-size=48' } });
  assert.equal(work.code, 0, work.stderr.slice(-2000));
  assert.equal(readdirSync(path.join(job, 'out')).length, 12_000);
});

test('a program that exits after one request is warned about, and the requests sent to it as it exited are not counted against the chunks', async () => {
  const s = await setup('one-shot', words(12));
  // --retries 0: before, a request that went to the process as it exited was a failed attempt.
  const work = await guardedWork(s, ['-j', '1', '--retries', '0'], { PW_ONE_SHOT: '1' });
  assert.equal(work.code, 0, work.stderr);
  assert.equal(filesUnder(path.join(s.job, 'out')).length, 12);
  assert.deepEqual(filesUnder(path.join(s.job, 'failed')), []);
  assert.equal(work.stderr.match(/exited \(status 0\) after answering one request/g)?.length, 1, work.stderr);
});

test('--max-chunks-per-process N replaces the process every N chunks', async () => {
  const s = await setup('recycle', words(10));
  const work = await runPiecework(['work', s.job, '-j', '1', '--warm', '--max-chunks-per-process', '3', '--', ...s.command], { env: s.env });
  trackPids(s);
  assert.equal(work.code, 0, work.stderr);
  const byPid = new Map<string, number>();
  for (const [pid] of s.notes('chunks').map((line) => line.split(' '))) byPid.set(pid!, (byPid.get(pid!) ?? 0) + 1);
  assert.deepEqual([...byPid.values()], [3, 3, 3, 1]);
  assert.equal(s.notes('eof').length, 4, 'each process was let go by closing its stdin');
});

test('--warm refuses per-chunk placeholders, and --max-chunks-per-process needs --warm', async () => {
  const s = await setup('usage', ['a']);
  const placeholders = await runPiecework(['work', s.job, '--warm', '--', 'cat', '{in}']);
  assert.equal(placeholders.code, 2);
  assert.match(placeholders.stderr, /--warm: \{in\} cannot be used/);
  const alone = await runPiecework(['work', s.job, '--max-chunks-per-process', '3', '--', 'cat']);
  assert.equal(alone.code, 2);
  assert.match(alone.stderr, /--max-chunks-per-process needs --warm/);
  const zero = await runPiecework(['work', s.job, '--warm', '--max-chunks-per-process', '0', '--', 'cat']);
  assert.equal(zero.code, 2);
  assert.doesNotMatch(placeholders.stderr + alone.stderr + zero.stderr, /\n\s+at /);
});
