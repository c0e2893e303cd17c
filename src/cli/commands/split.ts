import type { CommandModule } from 'yargs';
import { UsageError } from '../../core/errors.js';
import { parseSize, formatBytes } from '../../core/units.js';
import type { SplitMode } from '../../core/manifest.js';
import type { SplitResult } from '../../core/split/split.js';
import { getContext } from '../context.js';
import { positiveInt, positiveSeconds, nonNegativeInt } from '../args.js';

interface SplitArgs {
  inputs?: string[];
  into?: string;
  lines?: number;
  bytes?: string;
  chunks?: number;
  files?: string[];
  perChunk?: number;
  group?: string;
  groupByFile?: boolean;
  ext?: string;
  force?: boolean;
  stale?: number;
  retries?: number;
  quiet?: boolean;
  json?: boolean;
}

const command: CommandModule<object, SplitArgs> = {
  command: 'split [inputs..]',
  describe: 'Cut input (files, globs, stdin) into numbered chunks of a new job (or a new group of a job)',
  builder: (y) =>
    y
      .positional('inputs', { type: 'string', array: true, describe: 'Input files or globs; - or nothing for stdin' })
      .option('into', { type: 'string', describe: 'The job folder to create (on the shared mount)', demandOption: 'give the job folder with --into DIR' })
      .option('lines', { alias: 'l', type: 'number', describe: 'Lines per chunk (default 1000)' })
      .option('bytes', { alias: 'b', type: 'string', describe: 'At most SIZE per chunk (64M, 1G…), never cutting a line' })
      .option('chunks', { alias: 'n', type: 'number', describe: 'Cut into K chunks of about equal size (files only)' })
      .option('files', { type: 'string', array: true, describe: 'Register existing files (or globs) as work items, without copying' })
      .option('per-chunk', { type: 'number', describe: 'With --files: files listed per chunk (default 1)' })
      .option('group', { type: 'string', describe: 'Put the chunks under chunks/NAME/ (letters, digits, _ and -); on an existing job whose chunks are in groups, add this group' })
      .option('group-by-file', { type: 'boolean', describe: 'Give each input file its own group folder (named after the file, made unique)' })
      .option('ext', { type: 'string', describe: 'Extension of every output, with or without its dot: out/000000.json' })
      .option('force', { type: 'boolean', describe: 'Replace an existing job at --into (deletes its chunks and outputs); refused while live workers work on it' })
      .option('stale', { type: 'number', describe: 'Seconds after which a claim not refreshed is taken over (default 60)' })
      .option('retries', { type: 'number', describe: 'Retries of a failing chunk before it fails for good (default 2)' })
      .option('quiet', { alias: 'q', type: 'boolean', describe: 'No summary on stderr' })
      .option('json', { type: 'boolean', describe: 'Print the result as JSON on stdout instead of the job path' })
      .conflicts('lines', ['bytes', 'chunks', 'files'])
      .conflicts('bytes', ['chunks', 'files'])
      .conflicts('chunks', 'files')
      .conflicts('group', 'group-by-file')
      .example('$0 split big.tsv --into /mnt/share/jobs/score --lines 200000', 'chunks of 200 000 lines')
      .example('zcat logs.gz | $0 split - --into jobs/logs --bytes 64M', 'from stdin, 64 MiB chunks cut at line ends')
      .example('$0 split layer*.tsv --into jobs/exp --group-by-file --chunks 8', 'one group folder per input file')
      .example('$0 split --files "scans/*.png" --per-chunk 50 --into jobs/ocr', '50 existing files per chunk, not copied')
      .example('$0 split b.tsv --into jobs/exp --group layerB', 'add a group to a job whose chunks are in groups')
      .example('piecework work "$($0 split data.txt --into jobs/x)" -- wc -l', 'the job path is printed on stdout; run again, the same split leaves the job as it is')
      .epilogue(
        'An existing job is refused, unless it was made by this same split (same inputs, unchanged since, same mode, size, grouping, --ext, --stale and --retries) and is complete: then it is left as it is, its path printed, exit 0. Several input files are one stream: a file that does not end with a newline gets one at its end, so lines of two files are never glued together.',
      ),
  handler: async (argv) => {
    const context = getContext();
    const { mode, size } = splitMode(argv);
    const inputs = mode === 'files' ? [...(argv.files ?? []), ...(argv.inputs ?? [])] : (argv.inputs ?? []);
    if (mode !== 'files' && inputs.length === 0 && (context.stdin as { isTTY?: boolean }).isTTY) {
      throw new UsageError('no input given and stdin is a terminal', 'name input files, or pipe data in: cat data | piecework split - --into JOB');
    }
    // Loaded here, not at start-up: every command pays for what main.ts imports (see main.ts).
    const [{ split }, { humanEvents }] = await Promise.all([import('../../core/split/split.js'), import('../report/events.js')]);
    const reporter = humanEvents(context.stderr, context.env, { interactive: context.interactive, quiet: argv.quiet });
    const result = await split({
      into: argv.into!,
      inputs,
      mode,
      size,
      group: argv.group,
      groupPerFile: argv.groupByFile,
      ext: argv.ext,
      force: argv.force,
      staleSeconds: positiveSeconds(argv.stale, '--stale'),
      retries: nonNegativeInt(argv.retries, '--retries'),
      stdin: context.stdin as unknown as import('node:stream').Readable,
      onEvent: reporter,
    });
    reporter.finish();
    if (argv.json) context.stdout.write(JSON.stringify(result) + '\n');
    else context.stdout.write(result.job + '\n');
    if (!argv.quiet) context.stderr.write(summary(result) + '\n');
  },
};

function summary(result: SplitResult): string {
  if (result.action === 'unchanged') return `split: ${result.job} already holds this split (${result.chunks} chunks); left as it is`;
  const written = `${result.written} chunks (${formatBytes(result.bytes)})`;
  if (result.action === 'add-group') return `split: group ${result.groups[result.groups.length - 1]}: ${written} added to ${result.job} (${result.chunks} chunks in all)`;
  return `split: ${written} in ${result.job}`;
}

function splitMode(argv: SplitArgs): { mode: SplitMode; size: number } {
  if (argv.files) return { mode: 'files', size: positiveInt(argv.perChunk, '--per-chunk') ?? 1 };
  if (argv.perChunk !== undefined) throw new UsageError('--per-chunk goes with --files');
  if (argv.bytes !== undefined) return { mode: 'bytes', size: parseSize(argv.bytes, '--bytes') };
  if (argv.chunks !== undefined) return { mode: 'chunks', size: positiveInt(argv.chunks, '--chunks')! };
  return { mode: 'lines', size: positiveInt(argv.lines, '--lines') ?? 1000 };
}

export default command;
