import type { CommandModule } from 'yargs';
import type { WorkReport } from '../../core/work/worker.js';
import { checkWorkOptions, type WorkOptions } from '../../core/work/work-options.js';
import { ExitStatus, InterruptedError, JobMissingError } from '../../core/errors.js';
import type { EventSink } from '../../core/events.js';
import { getContext } from '../context.js';
import { commandAfterDashes, exitStatusList, nonNegativeInt, positiveInt, positiveSeconds } from '../args.js';
import { plural } from '../report/format.js';

interface WorkArgs {
  job?: string;
  lanes?: number;
  stale?: number;
  retries?: number;
  timeout?: number;
  ext?: string;
  follow?: boolean;
  fsync?: boolean;
  printOutputs?: boolean;
  events?: boolean;
  json?: boolean;
  quiet?: boolean;
  warm?: boolean;
  maxChunksPerProcess?: number;
  successExit?: string;
  haltAfter?: number;
}

const command: CommandModule<object, WorkArgs> = {
  command: 'work <job>',
  describe: 'Run a command on every chunk of a job, with N lanes on this host',
  builder: (y) =>
    y
      .usage(`$0 work <job> [options] -- COMMAND ARGS…\n\nRun a command on every chunk of a job, with N lanes on this host`)
      .positional('job', { type: 'string', describe: 'The job folder', demandOption: true })
      .option('lanes', { alias: 'j', type: 'number', describe: 'Chunks run at once (default: the number of cores)' })
      .option('stale', { type: 'number', describe: "Seconds before a silent claim is taken over (default: the job's, 60)" })
      .option('retries', { type: 'number', describe: "Retries per failing chunk (default: the job's, 2)" })
      .option('timeout', { type: 'number', describe: "Kill a chunk's command (its whole process tree) after SECONDS" })
      .option('ext', { type: 'string', describe: 'Extension of output files (out/000123.json)' })
      .option('follow', { type: 'boolean', describe: 'Keep waiting for chunks while the split is still streaming' })
      .option('fsync', { type: 'boolean', describe: 'fsync each output before committing it (survives a file-server crash)' })
      .option('print-outputs', { type: 'boolean', describe: 'Print each committed output path on stdout' })
      .option('events', { type: 'boolean', describe: 'Print every event as a JSON line on stdout' })
      .option('json', { type: 'boolean', describe: 'Print the final report as JSON on stdout' })
      .option('quiet', { alias: 'q', type: 'boolean', describe: 'Print only errors' })
      .option('warm', { type: 'boolean', describe: 'Start the command once per lane and send it the chunks as request lines on stdin (see below)' })
      .option('max-chunks-per-process', { type: 'number', describe: 'With --warm: replace a lane\'s process after N chunks (for programs that leak)' })
      .option('success-exit', { type: 'string', describe: 'Exit statuses that mean success, e.g. 0,1 for grep ("no match" is not a failure); default 0' })
      .option('halt-after', { type: 'number', describe: 'After N chunks failed for good, write STOP (every worker drains and exits) and exit 1' })
      .example('$0 work jobs/score -j 8 -- python3 score.py', 'chunk on stdin, stdout is the output')
      .example('$0 work jobs/ocr -- tesseract {file} {out}', '{file}: the input file of a --files job; {out}: write here')
      .example("$0 work jobs/x --timeout 600 --retries 1 -- sh -c 'sort {in} | uniq -c'", 'a shell only when you ask for one')
      .example('$0 work jobs/score -j 4 --warm -- python3 score.py', 'load the model once per lane, then one request per chunk')
      .example('$0 work jobs/logs --success-exit 0,1 -- grep ERROR', 'grep exits 1 when nothing matched: an empty output, not a failure')
      .example('$0 work jobs/x --halt-after 10 -- ./run.sh', 'stop the whole job once 10 chunks failed for good')
      .epilogue(
        [
          'Placeholders: {in} chunk file, {out} output path, {name} chunk name, {file}/{files} input files of a --files job, {base}/{stem} the input file\'s name without folders / also without its extension (scans/a.png: a.png / a), {job}, {attempt}; also as PIECEWORK_IN, PIECEWORK_OUT, … in the environment.',
          '',
          'With --warm each lane starts the command once (PIECEWORK_WARM=1, PIECEWORK_LANE, PIECEWORK_JOB set) and writes one JSON line per chunk on its stdin:',
          '  {"v":1,"in":"<chunk file>","out":"<write the output here>","name":"000007","files":[…] or null,"attempt":1,"job":"<job folder>"}',
          'It answers each request with one line on stdout: exactly `ok` once the output is written to "out" (piecework commits it), or `fail <message>`. Any other stdout line is not an answer: it goes to the log and the stderr tail. Flush each answer (PYTHONUNBUFFERED=1 is set for Python): a program found waiting for its next request without having answered is killed. The program exits when stdin closes.',
          'A process that dies fails its chunk\'s attempt and is started again; --timeout kills it and starts a fresh one (a process\'s first request waits for its start-up too); one that dies, or times out, before its first answer 3 times in a row stops the worker with its stderr. Helper: templates/piecework_warm.py.',
        ].join('\n'),
      ),
  handler: async (argv) => {
    const context = getContext();
    const { signal, received } = context.signals();
    const options: WorkOptions = {
      job: argv.job!,
      command: commandAfterDashes(argv),
      lanes: positiveInt(argv.lanes, '-j'),
      staleSeconds: positiveSeconds(argv.stale, '--stale'),
      retries: nonNegativeInt(argv.retries, '--retries'),
      timeoutSeconds: positiveSeconds(argv.timeout, '--timeout'),
      ext: argv.ext,
      follow: argv.follow,
      fsync: argv.fsync,
      warm: argv.warm,
      maxChunksPerProcess: positiveInt(argv.maxChunksPerProcess, '--max-chunks-per-process'),
      successExitCodes: exitStatusList(argv.successExit),
      haltAfter: positiveInt(argv.haltAfter, '--halt-after'),
      signal,
    };
    checkWorkOptions(options); // usage errors before anything connects
    // A network job's connection (some ten round trips) is made while the worker's code loads.
    // Loaded here, not at start-up: every command pays for what main.ts imports (see main.ts).
    const { isRemoteAddress, openJobStore } = await import('../../core/store/open-store.js');
    const opening = isRemoteAddress(options.job) ? openJobStore(options.job) : undefined;
    opening?.catch(() => {}); // awaited by the worker
    const [{ work }, { humanEvents, jsonEvents }] = await Promise.all([import('../../core/work/worker.js'), import('../report/events.js')]);
    const human = humanEvents(context.stderr, context.env, { interactive: context.interactive, quiet: argv.quiet });
    const sinks: EventSink[] = [human];
    if (argv.events) sinks.push(jsonEvents(context.stdout));
    if (argv.printOutputs) sinks.push((e) => e.type === 'chunk:done' && context.stdout.write(e.output + '\n'));
    let report: WorkReport;
    try {
      report = await work({ ...options, ...(opening ? { store: opening } : {}), onEvent: (event) => sinks.forEach((sink) => sink(event)) });
    } catch (error) {
      // Stopped by a signal, then the job went out of reach while letting go (a silent network
      // link): the signal is why the worker ended; the link is worth a line.
      const sig = received();
      if (!sig || !(error instanceof JobMissingError)) throw error;
      context.stderr.write(`piecework: while stopping: ${error.message}\n`);
      throw new InterruptedError(sig);
    } finally {
      human.finish();
      await opening?.then((store) => store.close(), () => {});
    }
    if (argv.json) context.stdout.write(JSON.stringify(report) + '\n');
    const sig = received();
    if (sig) throw new InterruptedError(sig);
    context.exitStatus = exitStatusOf(report);
    if (!argv.quiet) context.stderr.write(summary(report) + '\n');
  },
};

function exitStatusOf(report: WorkReport): number {
  if (report.complete) return ExitStatus.ok;
  if (report.failedForGood.length > 0) return ExitStatus.failure;
  return ExitStatus.incomplete;
}

function summary(report: WorkReport): string {
  const mine = `this worker: ${plural(report.done, 'output')} committed${report.failedAttempts ? `, ${plural(report.failedAttempts, 'failed attempt')}` : ''}`;
  if (report.complete) return `work: job complete (${plural(report.chunks, 'chunk')}); ${mine}`;
  const parts = [];
  if (report.failedForGood.length) parts.push(`${plural(report.failedForGood.length, 'chunk')} failed for good (first: ${report.failedForGood.slice(0, 3).join(', ')}) — see \`piecework verify ${report.job}\``);
  if (report.stoppedBy === 'halt') parts.push('halted by --halt-after, and wrote STOP so that every worker stops: fix the cause, `piecework verify --requeue` then `piecework stop --clear`');
  if (report.stoppedBy === 'stop-file') parts.push('stopped by the STOP file (`piecework stop --clear` to resume)');
  if (report.stoppedBy === 'split-incomplete') parts.push('the split has not finished: run with --follow to wait for more chunks');
  if (report.remaining) parts.push(`${plural(report.remaining, 'chunk')} without output`);
  return `work: job incomplete: ${parts.join('; ')}; ${mine}`;
}

export default command;
