import type { CommandModule } from 'yargs';
import type { VerifyReport } from '../../core/verify.js';
import { ExitStatus } from '../../core/errors.js';
import { formatDuration } from '../../core/units.js';
import { getContext } from '../context.js';
import { paint, plural, useColor } from '../report/format.js';
import { commandAfterDashes, positiveInt, positiveSeconds } from '../args.js';

interface VerifyArgs {
  job?: string;
  missing?: boolean;
  json?: boolean;
  check?: boolean;
  checkLanes?: number;
  requeue?: boolean;
  stale?: number;
}

const command: CommandModule<object, VerifyArgs> = {
  command: 'verify <job>',
  describe: 'Say whether a job is complete; list missing, failed, running and stale chunks',
  builder: (y) =>
    y
      .usage(`$0 verify <job> [options] [--check -- VALIDATOR ARGS…]\n\nSay whether a job is complete; list missing, failed, running and stale chunks`)
      .positional('job', { type: 'string', describe: 'The job folder', demandOption: true })
      .option('missing', { type: 'boolean', describe: 'Print the names of chunks without output on stdout, one per line' })
      .option('json', { type: 'boolean', describe: 'Print the full report as JSON on stdout' })
      .option('check', { type: 'boolean', describe: 'Run the validator after -- on every output ({out}, {name}, {in}; else the output is its stdin)' })
      .option('check-lanes', { type: 'number', describe: 'Validators run at once (default: the number of cores)' })
      .option('requeue', { type: 'boolean', describe: 'Remove bad outputs, stale claims, exhausted failure records and crash leftovers so workers redo them' })
      .option('stale', { type: 'number', describe: "Seconds after which a claim counts as stale (default: the job's)" })
      .example('$0 verify jobs/score && piecework merge jobs/score > out.tsv', 'merge only a complete job')
      .example('$0 verify jobs/score --missing | head', 'which chunks are left')
      .example('$0 verify jobs/x --check --requeue -- python3 -m json.tool {out}', 'validate every output, requeue the bad ones')
      .epilogue('Exit status: 0 complete (and valid with --check); 3 incomplete; 1 bad outputs found by --check; 127/126 the validator was not found / not executable (nothing judged, nothing removed).'),
  handler: async (argv) => {
    const context = getContext();
    // Loaded here, not at start-up: every command pays for what main.ts imports (see main.ts).
    const [{ verify }, { humanEvents }] = await Promise.all([import('../../core/verify.js'), import('../report/events.js')]);
    const reporter = humanEvents(context.stderr, context.env, { interactive: context.interactive });
    const report = await verify({
      job: argv.job!,
      check: argv.check ? commandAfterDashes(argv) : undefined,
      checkLanes: positiveInt(argv.checkLanes, '--check-lanes'),
      requeue: argv.requeue,
      staleSeconds: positiveSeconds(argv.stale, '--stale'),
      onEvent: reporter,
    });
    reporter.finish();
    if (argv.missing) for (const chunk of report.state.missing) context.stdout.write(chunk + '\n');
    if (argv.json) context.stdout.write(JSON.stringify(toJson(report)) + '\n');
    if (!argv.missing && !argv.json) context.stderr.write(render(report, useColor(context.stderr, context.env)));
    context.exitStatus = report.bad.length > 0 && !report.requeued ? ExitStatus.failure : report.complete ? ExitStatus.ok : ExitStatus.incomplete;
  },
};

function toJson(report: VerifyReport) {
  const s = report.state;
  return {
    job: s.job,
    jobId: s.manifest.id,
    complete: report.complete,
    splitComplete: s.manifest.complete,
    chunks: s.chunks.length,
    done: s.done.size,
    missing: s.missing,
    running: s.running,
    stale: s.stale,
    failed: s.failed,
    leftoverTemp: s.leftoverTemp,
    stray: s.stray,
    bad: report.bad,
    requeued: report.requeued,
    stopRequested: s.stopRequested,
  };
}

const LIST_LIMIT = 10;

function render(report: VerifyReport, colored: boolean): string {
  const c = paint(colored);
  const s = report.state;
  const lines: string[] = [];
  const done = s.chunks.length - s.missing.length;
  const headline = report.complete ? c.green('complete') : c.yellow('incomplete');
  lines.push(`${s.job}: ${headline} — ${done}/${s.chunks.length} chunks have output`);
  if (!s.manifest.complete) lines.push(c.yellow(`  the split has not finished (job.json says incomplete): if no split is running, re-run it with --force`));
  const failedFinal = s.failed.filter((f) => f.final);
  const retrying = s.failed.filter((f) => !f.final);
  const stuck = s.missing.length - s.running.length - s.stale.length - failedFinal.length;
  if (s.missing.length) lines.push(`  missing:  ${s.missing.length} (${[s.running.length && `${s.running.length} running`, s.stale.length && `${s.stale.length} stale claims`, failedFinal.length && `${failedFinal.length} failed for good`, stuck > 0 && `${stuck} not started or retrying`].filter(Boolean).join(', ')})`);
  for (const claim of s.stale.slice(0, LIST_LIMIT)) lines.push(`    stale    ${claim.chunk}  silent for ${formatDuration(claim.ageSeconds * 1000)}${claim.owner ? `, held by ${claim.owner.host} pid ${claim.owner.pid}` : ''}`);
  if (failedFinal.length) lines.push(c.red(`  failed for good: ${failedFinal.length}`));
  for (const reason of commonReasons(failedFinal)) lines.push(`    ${reason.count}× ${reason.reason} (e.g. chunk ${reason.example})`);
  for (const f of failedFinal.slice(0, 3)) if (f.stderrTail.trim()) lines.push(c.dim(`    ${f.chunk} stderr: ${f.stderrTail.trim().split('\n').slice(-2).join(' | ')}`));
  if (retrying.length) lines.push(`  failing, will be retried: ${retrying.length} (e.g. ${retrying[0]!.chunk}: ${retrying[0]!.reason})`);
  if (report.bad.length) {
    lines.push(c.red(`  bad outputs (--check): ${report.bad.length}`));
    for (const bad of report.bad.slice(0, LIST_LIMIT)) lines.push(`    ${bad.chunk}: ${bad.reason}`);
  }
  if (s.stray.length) {
    const shown = s.stray.slice(0, 3).map((name) => `out/${name}`).join(', ');
    lines.push(c.dim(`  ignored: ${plural(s.stray.length, 'file')} in out/ that ${s.stray.length === 1 ? 'is' : 'are'} no chunk's output (${shown}${s.stray.length > 3 ? ', …' : ''}) — merge never reads them`));
  }
  if (s.leftoverTemp.length) lines.push(`  leftover temp files of dead workers: ${s.leftoverTemp.length} (verify --requeue removes them)`);
  if (s.stopRequested) lines.push(c.yellow('  a STOP file is present: workers take no new chunk (piecework stop --clear)'));
  if (report.requeued) {
    const r = report.requeued;
    lines.push(`  requeued: removed ${plural(r.outputs, 'bad output')}, ${plural(r.claims, 'stale claim')}, ${plural(r.failures, 'exhausted failure record')}, ${plural(r.temp, 'leftover temp file')}`);
  } else if (!report.complete && (s.stale.length || failedFinal.length)) {
    lines.push(c.dim('  workers redo stale claims by themselves; `verify --requeue` also resets chunks that failed for good'));
  }
  return lines.join('\n') + '\n';
}

function commonReasons(failed: { reason: string; chunk: string }[]): { reason: string; count: number; example: string }[] {
  const byReason = new Map<string, { count: number; example: string }>();
  for (const f of failed) {
    const entry = byReason.get(f.reason);
    if (entry) entry.count++;
    else byReason.set(f.reason, { count: 1, example: f.chunk });
  }
  return [...byReason].map(([reason, e]) => ({ reason, ...e })).sort((a, b) => b.count - a.count).slice(0, 5);
}

export default command;
