/**
 * One lane's warm process (`work --warm`): the user's command started once and fed chunks one at
 * a time over the line protocol of warm-protocol.ts, for programs whose start-up (imports, a model
 * to load) costs far more than a chunk.
 *
 * What the per-chunk mode promises holds here, one request at a time. The lane's StderrCapture is
 * emptied before each request, so a failure record carries the stderr of that chunk. A timeout
 * kills the whole process group and the next request starts a fresh process. A process that dies
 * mid-chunk fails that attempt with its exit status or signal; the next one starts after a
 * back-off that grows while processes keep dying without answering. A worker that is stopping
 * sends no new request and gives the chunk under way DRAIN_GRACE_MS to finish.
 *
 * It returns the ChunkRunResult runChunk returns, so commit and failure records stay the worker's.
 */
import { writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { CommandUnavailableError, describeExit } from '../errors.js';
import { settlesWithin } from './lane-pace.js';
import { spawnReason, type ChunkInvocation, type ChunkRunResult } from './run-chunk.js';
import type { StartupWatch } from './startup-watch.js';
import type { StopSignal } from './stop-signal.js';
import { WarmChild } from './warm-child.js';
import { outputWriter } from './output-writer.js';
import { waitingForInput } from './waiting-for-input.js';
import { encodeRequest, parseReply, type WarmReply } from './warm-protocol.js';

/** How long the chunk under way may take to finish once the worker stops (SIGTERM, STOP). */
export const DRAIN_GRACE_MS = 5000;
const STDERR_TAIL_BYTES = 4096;
/** How often a chunk under way is looked at: its stderr's size, and whether its program waits for input. */
const CHECK_MS = 1000;
const STDERR_CHECK_EVERY = 5;
/** Looks in a row that find the program waiting for its next request before it is judged stuck. */
const WAITING_LOOKS = 2;
/** Stray stdout lines written to the worker log per chunk; all of them go to the stderr tail. */
const STRAY_LINES_LOGGED = 20;
const STUCK_REASON = 'the program waited for its next request without answering this one, and was killed: its answer is probably stuck in its output buffer';
const ANSWER_HINT = 'answer each request with one line, exactly `ok` (lower case) or `fail <message>`, and flush it (see `piecework work --help`, --warm)';
const STUCK_HINT = 'flush stdout after each answer — Python: print("ok", flush=True); Perl: $| = 1; awk: fflush(); C: fflush(stdout) — then start the worker again';
/** How long a request waits for the process before it to end, for a program that ends after each answer. */
const ONE_SHOT_EXIT_MS = 2000;
const BACKOFF_FIRST_MS = 100;
const BACKOFF_MAX_MS = 5000;

export interface WarmLaneSettings {
  /** What to execute (resolved once) and its argv, {job} filled in. */
  file: string;
  argv: string[];
  env: NodeJS.ProcessEnv;
  /** Replace the process after this many answers (a program that leaks). */
  maxChunksPerProcess: number | undefined;
  startup: StartupWatch;
  /** Warnings already given by a lane of this worker: each is given once, not once per lane. */
  warned: Set<string>;
  log(entry: { chunk?: string; event: string; detail?: string }): void;
}

interface Answer {
  reply: WarmReply | undefined;
  timedOut: boolean;
  aborted: boolean;
  /** It waited for its next request without answering this one, and was killed. */
  stuck: boolean;
  /** The last stdout line during this request that was not an answer ("OK", "done"…), if any. */
  lastStray: string | undefined;
}

export class WarmProcess {
  readonly #settings: WarmLaneSettings;
  #child: WarmChild | undefined;
  /** Processes in a row that ended without answering: the back-off grows with them. */
  #diedInARow = 0;
  readonly #retiring = new Set<Promise<void>>();
  /** Chunks whose request went to a process that had just exited by itself: not counted, once each. */
  readonly #sentToExited = new Set<string>();
  /** Its processes end after one answer each (a program that does not loop): see #endedAfterAnswering. */
  #oneShot = false;

  constructor(settings: WarmLaneSettings) {
    this.#settings = settings;
  }

  /** The running process: pid and answers so far (for the heartbeat). */
  get current(): { pid: number; answered: number } | undefined {
    return this.#child && !this.#child.exit ? { pid: this.#child.pid, answered: this.#child.answered } : undefined;
  }

  /**
   * One chunk. `abandon` says whether an abort means the chunk is lost anyway (claim taken over):
   * then the process is killed at once instead of being given time to finish.
   */
  async run(run: ChunkInvocation, abandon: () => boolean): Promise<ChunkRunResult> {
    if (run.stop.stopped) return interrupted();
    // A program seen to end after each answer: this one is let end before a request goes out.
    if (this.#oneShot && this.#child && this.#child.answered > 0) await settlesWithin(this.#child.ended, ONE_SHOT_EXIT_MS);
    // It ended between two chunks (after its last answer): no chunk's attempt is charged for that.
    // An exit 0 is the program's choice, not a crash: no back-off for it.
    const ended = this.#child?.exit ? this.#child : undefined;
    if (ended) {
      this.#child = undefined;
      if (ended.exit!.code === 0) this.#endedAfterAnswering(ended, run.chunk);
      else this.#diedInARow++;
    }
    if (!this.#child) {
      await pause(backoffMs(this.#diedInARow), run.stop);
      if (run.stop.stopped) return interrupted();
      const started = await WarmChild.start({ file: this.#settings.file, argv: this.#settings.argv, env: this.#settings.env, stderrFd: run.stderr.fd });
      if (!(started instanceof WarmChild)) {
        const reason = spawnReason(this.#settings.argv[0]!, started.spawnError);
        return { ok: false, exitCode: null, signal: null, timedOut: false, aborted: false, spawnError: started.spawnError, stderrTail: '', reason };
      }
      this.#child = started;
      this.#settings.log({ event: 'warm-start', detail: `pid=${started.pid}` });
      void started.ended.then(() => this.#settings.log({ event: 'warm-exit', detail: `pid=${started.pid} ${describeExit(started.exit?.code ?? null, started.exit?.signal ?? null)} after ${started.answered} chunks` }));
    }
    const child = this.#child;
    run.stderr.reset();
    const answer = await this.#ask(child, run, abandon);
    return answer.reply ? this.#answered(child, answer.reply, run) : this.#ended(child, answer, run);
  }

  /** Close every process's stdin, wait up to `graceMs` for it to exit, then kill its group. */
  async close(graceMs = DRAIN_GRACE_MS): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    await Promise.all([child?.stop(graceMs), ...this.#retiring]);
  }

  #ask(child: WarmChild, run: ChunkInvocation, abandon: () => boolean): Promise<Answer> {
    return new Promise((resolve) => {
      let timedOut = false;
      let aborted = false;
      let stuck = false;
      let settled = false;
      let stray = 0;
      let lastStray: string | undefined;
      const timers: NodeJS.Timeout[] = [];
      const finish = (reply: WarmReply | undefined) => {
        if (settled) return;
        settled = true;
        for (const timer of timers) clearTimeout(timer);
        forgetStop();
        child.onEnded = () => {};
        let between = 0;
        child.onLine = (line) => {
          if (reply && this.#child === child && parseReply(line) !== undefined) this.#answeredTwice(child, run.chunk, line);
          this.#stray(run.stderr.fd, undefined, line, ++between);
        };
        resolve({ reply, timedOut, aborted, stuck, lastStray });
      };
      child.onLine = (line) => {
        const reply = parseReply(line);
        if (reply === undefined) {
          lastStray = line;
          this.#stray(run.stderr.fd, run.chunk, line, ++stray);
        }
        // Once it is being killed, a late answer no longer counts: its output may be half-written.
        else if (!timedOut && !aborted && !stuck) finish(reply);
      };
      child.onEnded = () => finish(undefined);
      const onAbort = () => {
        if (abandon()) {
          aborted = true;
          child.terminate();
          return;
        }
        const grace = setTimeout(() => {
          aborted = true;
          child.terminate();
        }, DRAIN_GRACE_MS);
        grace.unref();
        timers.push(grace);
      };
      // A stop during the process's start counts too: it is looked at as it is added.
      const forgetStop = run.stop.onStop(onAbort);
      if (run.timeoutMs !== undefined) {
        const timer = setTimeout(() => {
          timedOut = true;
          child.terminate();
        }, run.timeoutMs);
        timer.unref();
        timers.push(timer);
      }
      // An answer stuck in the program's output buffer (a print not flushed) leaves it waiting for
      // the next request while the lane waits for the answer: judged on two looks in a row.
      let looks = 0;
      let waitingLooks = 0;
      const check = setInterval(() => {
        if (++looks % STDERR_CHECK_EVERY === 0) void run.stderr.limitSize().catch(() => {});
        if (settled || timedOut || aborted || stuck) return;
        waitingLooks = waitingForInput(child.pid, child.requestPipe) ? waitingLooks + 1 : 0;
        if (waitingLooks < WAITING_LOOKS) return;
        stuck = true;
        child.terminate();
      }, CHECK_MS);
      check.unref();
      timers.push(check);
      if (aborted) return; // stopped and lost while its process started: being killed, not asked
      child.send(encodeRequest({ in: run.chunkPath, out: run.tempOutput, name: run.chunk, files: run.files ?? null, attempt: run.attempt, job: run.job }));
    });
  }

  async #answered(child: WarmChild, reply: WarmReply, run: ChunkInvocation): Promise<ChunkRunResult> {
    child.answered++;
    this.#diedInARow = 0;
    this.#sentToExited.delete(run.chunk);
    if (child.answered > 1) this.#oneShot = false;
    this.#settings.startup.answered();
    const max = this.#settings.maxChunksPerProcess;
    if (max !== undefined && child.answered >= max) this.#retire(child);
    const writer = reply.ok ? await stillWriting(child, run.tempOutput) : undefined;
    if (reply.ok && writer === undefined) return { ok: true, exitCode: null, signal: null, timedOut: false, aborted: false, stderrTail: '', reason: 'ok' };
    const stderrTail = await run.stderr.tail(STDERR_TAIL_BYTES).catch(() => '');
    const reason =
      writer !== undefined ? `the program answered ok while ${writer === child.pid ? 'it' : `its process ${writer}`} still had the output open for writing: what it has not flushed yet would be missing — close the file before answering`
      : !reply.ok && reply.message ? `failed: ${reply.message}`
      : 'failed (the command answered fail)';
    return { ok: false, exitCode: null, signal: null, timedOut: false, aborted: false, stderrTail, reason };
  }

  async #ended(child: WarmChild, answer: Answer, run: ChunkInvocation): Promise<ChunkRunResult> {
    this.#child = undefined;
    const { code, signal } = child.exit ?? { code: null, signal: null };
    const stderrTail = await run.stderr.tail(STDERR_TAIL_BYTES).catch(() => '');
    const base = { ok: false, exitCode: code, signal, timedOut: answer.timedOut, aborted: answer.aborted, stderrTail };
    if (answer.timedOut) {
      const timeout = `${((run.timeoutMs ?? 0) / 1000).toFixed(1)}s`;
      const reason = `timed out after ${timeout} (${describeExit(code, signal)})`;
      // A process's first request waits for its start-up too: one whose start-up alone outlasts
      // --timeout is killed before every first answer, and would burn the retries of every chunk.
      if (child.answered > 0 || !this.#settings.startup.diedBeforeFirstReply()) return { ...base, reason };
      const stopWorker = new CommandUnavailableError(`the command never answered its first request within --timeout ${timeout}, ${this.#settings.startup.limit} times in a row: with --warm, each process's first request waits for the program's start-up as well${stderrTail.trim() ? `; its stderr ended with:\n${indentTail(stderrTail)}` : ''}`, {
        hint: "give --timeout the program's start-up plus one chunk's time (time it by hand with one request on stdin: see `piecework work --help`, --warm); the chunks given to it were recorded as failed attempts",
      });
      return { ...base, reason, stopWorker };
    }
    if (answer.aborted) return { ...base, reason: `stopped (${describeExit(code, signal)})` };
    const why = answer.stuck ? stuckReason(answer.lastStray) : child.closedStdout ? 'the warm process closed its stdout, so it could not answer, and was killed' : undefined;
    // It had answered, then exited by itself (status 0) as this request went out: a program that
    // ends after some requests, whose exit was not seen yet. The request was most likely never
    // read: not counted, once per chunk — a chunk that makes every process exit 0 counts next time.
    if (!why && code === 0 && child.answered > 0 && !this.#sentToExited.has(run.chunk)) {
      this.#sentToExited.add(run.chunk);
      this.#endedAfterAnswering(child, run.chunk);
      return { ...base, aborted: true, reason: 'the warm process had exited (status 0) after its last answer; this request was not counted' };
    }
    this.#diedInARow++;
    const reason = why ? `${why} (${describeExit(code, signal)})` : `the warm process ended without answering: ${describeExit(code, signal)}`;
    if (child.answered > 0 || !this.#settings.startup.diedBeforeFirstReply()) return { ...base, reason };
    const limit = this.#settings.startup.limit;
    const what = why ? `the command never answered its first request, ${limit} times in a row: ${why}` : `the command died before answering its first request, ${limit} times in a row (last: ${describeExit(code, signal)})`;
    const stopWorker = new CommandUnavailableError(`${what}${stderrTail.trim() ? `; its stderr ended with:\n${indentTail(stderrTail)}` : ''}`, {
      hint: answer.stuck ? (answer.lastStray === undefined ? STUCK_HINT : ANSWER_HINT) : 'run it by hand on this host with a request on stdin (see `piecework work --help`, --warm); the chunks given to it were recorded as failed attempts',
    });
    return { ...base, reason, stopWorker };
  }

  /**
   * A process ended by itself (status 0) after answering. After exactly one answer, the program
   * ends after each request: from then on each request waits for the process before it to end,
   * instead of going to a process about to exit. Said once, as --warm gains nothing for it.
   */
  #endedAfterAnswering(child: WarmChild, chunk: string): void {
    if (child.answered !== 1 || this.#oneShot) return;
    this.#oneShot = true;
    if (this.#settings.warned.has('one-shot')) return;
    this.#settings.warned.add('one-shot');
    this.#settings.log({
      chunk,
      event: 'warning',
      detail: `the warm process (pid ${child.pid}) exited (status 0) after answering one request: with --warm a program should loop over its stdin, one request a line, and exit when stdin closes. Each request now waits for the process before it to end — or run without --warm`,
    });
  }

  /** Enough chunks for this process: let it exit (stdin closed) while the next one starts. */
  #retire(child: WarmChild): void {
    if (this.#child === child) this.#child = undefined;
    const stopping = child.stop(DRAIN_GRACE_MS);
    this.#retiring.add(stopping);
    void stopping.finally(() => this.#retiring.delete(stopping));
  }

  /**
   * A second answer to one request. Had it come after the next request was sent, it would have
   * been taken for that chunk's answer — committing an output still being written — so this
   * process is no longer trusted to stay in step: it is let go, and a fresh one takes the next chunk.
   */
  #answeredTwice(child: WarmChild, chunk: string, line: string): void {
    this.#settings.log({
      chunk,
      event: 'warning',
      detail: `the warm process (pid ${child.pid}) answered this chunk's request twice ("${line.slice(0, 80)}" after its answer); a program must answer each request once — a later extra answer would be taken for the next chunk's. A fresh process takes the next chunk`,
    });
    this.#retire(child);
  }

  /** A stdout line that is not a reply: kept with the chunk's stderr, and logged (a few per chunk). */
  #stray(stderrFd: number, chunk: string | undefined, line: string, count: number): void {
    try {
      writeSync(stderrFd, `[stdout] ${line}\n`);
    } catch {
      // Losing a stray line must never fail a chunk.
    }
    if (count <= STRAY_LINES_LOGGED) this.#settings.log({ chunk, event: 'stdout', detail: line });
    else if (count === STRAY_LINES_LOGGED + 1) this.#settings.log({ chunk, event: 'stdout', detail: '(more stdout lines: only in the stderr tail)' });
  }
}

/**
 * Why a program found waiting for its next request was killed. When it printed a line during the
 * request that is not an answer ("OK", "done", "ok." …), that line is the likelier cause — a
 * buffer that holds the answer would most often hold that line too — and the one to show.
 */
function stuckReason(lastStray: string | undefined): string {
  if (lastStray === undefined) return STUCK_REASON;
  const shown = JSON.stringify(lastStray.length > 80 ? `${lastStray.slice(0, 80)}…` : lastStray);
  return `the program waited for its next request without answering this one, and was killed; its last stdout line, ${shown}, is not an answer (exactly \`ok\` or \`fail <message>\`) — or the answer is stuck in its output buffer`;
}

/** Answers of a process whose output is always looked at; after them, one in OUTPUT_CHECK_EVERY. */
const OUTPUT_CHECKS_FIRST = 16;
const OUTPUT_CHECK_EVERY = 16;
/** How long an output found open may take to be closed after the answer (an asynchronous close). */
const OUTPUT_CLOSE_GRACE_MS = 250;
const OUTPUT_CLOSE_POLL_MS = 10;

/**
 * The process (of the program's tree) that still has the output open for writing as the program
 * answers ok: the end of the output may still be in its buffer. Forgetting to close a file is
 * a habit of the code, seen at once: each process is looked at on every answer until it has
 * closed its output 16 times, then on one answer in 16. Looking every time (~60 µs of /proc
 * reads) made 5000 trivial chunks a fifth slower; this way the difference is within the noise.
 */
async function stillWriting(child: WarmChild, output: string): Promise<number | undefined> {
  const clean = child.closedOutputs;
  if (clean >= OUTPUT_CHECKS_FIRST && clean % OUTPUT_CHECK_EVERY !== 0) {
    child.closedOutputs++;
    return undefined;
  }
  let writer = outputWriter(child.pid, output);
  // A close may trail the answer by a few ms (a Node write stream ends asynchronously): the
  // program reads no request before it has its answer's result, so it can only be finishing.
  for (const deadline = Date.now() + OUTPUT_CLOSE_GRACE_MS; writer !== undefined && Date.now() < deadline; writer = outputWriter(child.pid, output)) {
    await sleep(OUTPUT_CLOSE_POLL_MS);
  }
  if (writer === undefined) child.closedOutputs++;
  return writer;
}

function interrupted(): ChunkRunResult {
  return { ok: false, exitCode: null, signal: null, timedOut: false, aborted: true, stderrTail: '', reason: 'stopped before it started' };
}

function backoffMs(diedInARow: number): number {
  return diedInARow === 0 ? 0 : Math.min(BACKOFF_FIRST_MS * 2 ** (diedInARow - 1), BACKOFF_MAX_MS);
}

/** Sleep `ms`, or less if `stop` stops. */
function pause(ms: number, stop: StopSignal): Promise<void> {
  if (ms <= 0 || stop.stopped) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      forgetStop();
      resolve();
    };
    const timer = setTimeout(done, ms);
    const forgetStop = stop.onStop(done);
  });
}

function indentTail(text: string): string {
  return text.trimEnd().split('\n').slice(-12).map((line) => `    ${line}`).join('\n');
}
