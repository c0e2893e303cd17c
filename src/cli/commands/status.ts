import type { CommandModule } from 'yargs';
import type { JobStatus } from '../../core/status.js';
import { ExitStatus } from '../../core/errors.js';
import { getContext } from '../context.js';
import { positiveSeconds } from '../args.js';
import { useColor } from '../report/format.js';
import { renderStatus } from '../report/status.js';
import { reportScreen } from '../report/screen.js';
import { repeatEvery } from '../report/repeat.js';

interface StatusArgs {
  job?: string;
  watch?: boolean;
  interval?: number;
  json?: boolean;
  stale?: number;
}

const command: CommandModule<object, StatusArgs> = {
  command: 'status <job>',
  describe: 'Show progress, rate, ETA, per-host throughput and failures of a job',
  builder: (y) =>
    y
      .positional('job', { type: 'string', describe: 'The job folder', demandOption: true })
      .option('watch', { alias: 'w', type: 'boolean', describe: 'Report again every --interval until nothing is left to do, or Ctrl-C (in place on a terminal)' })
      .option('interval', { type: 'number', describe: 'Seconds between reports with --watch (default 2; a slow scan waits longer)' })
      .option('json', { type: 'boolean', describe: 'Print the report as JSON on stdout (one line per report with --watch)' })
      .option('stale', { type: 'number', describe: "Seconds after which a silent claim counts as stale (default: the job's)" })
      .example('$0 status /mnt/share/jobs/score', 'one report: counts, rate, ETA, hosts, failures')
      .example('$0 status jobs/score --watch', 'a live view that redraws in place until the job is complete')
      .example("$0 status jobs/score --json | jq '.counts.done, .etaSeconds'", 'numbers for a script')
      .example('$0 status jobs/score --watch --interval 60 >> progress.log', 'not a terminal: a fresh report every minute')
      .epilogue(
        [
          'The report is read from the job folder only (heartbeats in workers/, claims, outputs, failure records), so it works from any host that mounts the job.',
          'Exit status: 0 (whatever the progress; Ctrl-C ends a watch with 0); 4 no job at that path.',
          'A --watch ends by itself when nothing is left to do, with what verify would say: 0 complete; 1 every chunk is done or failed for good (nothing runs, nothing is left to retry); 3 stopped by a STOP file with no worker left.',
        ].join('\n'),
      ),
  handler: async (argv) => {
    const context = getContext();
    // Loaded here, not at start-up: every command pays for what main.ts imports (see main.ts).
    const [{ jobStatus }, { mountClockFor }, { openJobStore }] = await Promise.all([import('../../core/status.js'), import('../../core/inspect.js'), import('../../core/store/open-store.js')]);
    const store = await openJobStore(argv.job!);
    // Closed at the end: an sftp:// store's connection would keep the process alive.
    try {
    const options = { staleSeconds: positiveSeconds(argv.stale, '--stale'), clock: await mountClockFor(store), failureCache: new Map() };
    const intervalMs = (positiveSeconds(argv.interval, '--interval') ?? 2) * 1000;
    const screen = reportScreen(context.stdout, { inPlace: Boolean(argv.watch) });
    const colored = useColor(context.stdout, context.env);
    const signal = argv.watch ? context.signals().signal : undefined;
    await repeatEvery(intervalMs, signal, async () => {
      const status = await jobStatus(store, options);
      if (argv.json) context.stdout.write(JSON.stringify(status) + '\n');
      else screen.show(renderStatus(status, colored));
      if (!argv.watch) return false;
      const ended = watchEndsWith(status);
      if (ended !== undefined) context.exitStatus = ended;
      return ended === undefined;
    });
    } finally {
      await store.close();
    }
  },
};

/**
 * The exit status a watch ends with once nothing is left to do, or undefined to keep watching.
 * Chunks still pending or retrying keep it going even with no live worker: one may be started.
 */
export function watchEndsWith(status: JobStatus): number | undefined {
  const n = status.counts;
  if (status.complete) return ExitStatus.ok;
  const idle = n.running === 0 && n.stale === 0;
  if (status.splitComplete && idle && n.pending === 0 && n.failed > 0) return ExitStatus.failure;
  if (status.stopRequested && idle && status.workers.alive === 0) return ExitStatus.incomplete;
  return undefined;
}

export default command;
