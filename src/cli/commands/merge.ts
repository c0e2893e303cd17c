import type { CommandModule } from 'yargs';
import { UsageError } from '../../core/errors.js';
import { formatBytes } from '../../core/units.js';
import { getContext } from '../context.js';
import { commandAfterDashes } from '../args.js';

interface MergeArgs {
  job?: string;
  output?: string;
  partial?: boolean;
  group?: string;
  reduce?: boolean;
  follow?: boolean;
  quiet?: boolean;
  intoDir?: string;
}

const command: CommandModule<object, MergeArgs> = {
  command: 'merge <job>',
  describe: 'Write the outputs in chunk order to stdout or a file',
  builder: (y) =>
    y
      .usage(`$0 merge <job> [options] [--reduce -- COMMAND ARGS…]\n\nWrite the outputs in chunk order to stdout or a file`)
      .positional('job', { type: 'string', describe: 'The job folder', demandOption: true })
      .option('output', { alias: 'o', type: 'string', describe: 'Write to FILE (atomically: a temp file renamed over it; a device or named pipe is written into) instead of stdout' })
      .option('partial', { type: 'boolean', describe: 'Merge the outputs that exist even if the job is incomplete' })
      .option('group', { type: 'string', describe: 'Merge only the chunks of this group folder' })
      .option('reduce', { type: 'boolean', describe: 'Hand the ordered output paths to the command after -- ({list}: a file listing them)' })
      .option('follow', { type: 'boolean', describe: 'Emit outputs in order as they are committed, until the job is complete' })
      .option('quiet', { alias: 'q', type: 'boolean', describe: 'No summary on stderr' })
      .option('into-dir', { type: 'string', describe: 'A --files job: each output into DIR, named after its input (scans/a.png → DIR/a.json); hard links where possible' })
      .example('$0 merge jobs/score > scores.tsv', 'everything, in chunk order')
      .example('$0 merge jobs/exp --group layer03 -o layer03.tsv', 'one group')
      .example('$0 merge jobs/sorted --reduce -- sort -m', 'a custom reducer: sort -m over the sorted outputs')
      .example('$0 merge jobs/live --follow | gzip > all.gz', 'stream results while workers run')
      .example('$0 merge jobs/ocr --into-dir results/', 'a --files job: results/a.json for scans/a.png, …')
      .epilogue('Exit status: 0 merged; 3 job incomplete (nothing written; use --partial).'),
  handler: async (argv) => {
    const context = getContext();
    const reduce = commandAfterDashes(argv);
    if (argv.reduce && reduce.length === 0) throw new UsageError('--reduce needs a command after --', 'e.g. piecework merge JOB --reduce -- sort -m');
    if (!argv.reduce && reduce.length > 0) throw new UsageError('a command after -- needs --reduce', 'e.g. piecework merge JOB --reduce -- sort -m');
    if (argv.intoDir !== undefined) {
      const clash = argv.output !== undefined ? '-o' : argv.reduce ? '--reduce' : argv.follow ? '--follow' : undefined;
      if (clash) throw new UsageError(`--into-dir and ${clash} cannot be used together`, '--into-dir writes one file per output into a folder');
      if (argv.intoDir === '') throw new UsageError('--into-dir needs a folder', 'e.g. piecework merge JOB --into-dir results/');
      const { mergeIntoDir } = await import('../../core/merge-into-dir.js');
      const placed = await mergeIntoDir({ job: argv.job!, dir: argv.intoDir, partial: argv.partial, group: argv.group });
      if (!argv.quiet) context.stderr.write(`merge: ${placed.outputs} outputs → ${placed.target}/ (${placed.linked} hard-linked, ${placed.outputs - placed.linked} copied)${placed.missing ? `, ${placed.missing} missing (skipped)` : ''}\n`);
      return;
    }
    const { signal } = argv.follow ? context.signals() : { signal: undefined };
    // Loaded here, not at start-up: every command pays for what main.ts imports (see main.ts).
    const [{ merge }, { humanEvents }] = await Promise.all([import('../../core/merge.js'), import('../report/events.js')]);
    const reporter = humanEvents(context.stderr, context.env, { interactive: context.interactive && Boolean(argv.output), quiet: argv.quiet });
    const result = await merge({
      job: argv.job!,
      output: argv.output,
      stdout: context.stdout,
      partial: argv.partial,
      group: argv.group,
      reduce: argv.reduce ? reduce : undefined,
      follow: argv.follow,
      signal,
      onEvent: reporter,
    });
    reporter.finish();
    if (!argv.quiet && (argv.output || result.missing > 0)) {
      context.stderr.write(`merge: ${result.outputs} outputs${result.bytes ? ` (${formatBytes(result.bytes)})` : ''}${result.missing ? `, ${result.missing} missing (skipped)` : ''} → ${result.target}\n`);
    }
  },
};

export default command;
