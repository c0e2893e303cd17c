/**
 * The CLI: yargs set up once, every command registered, and the one place where errors become
 * exit statuses. `main(argv, context)` is what tests call; `runCli` is what the bin shim calls.
 *
 * Every command pays at start-up for what this file imports, so a command module keeps only its
 * yargs definition (and light helpers) at the top; its handler imports the core it runs. In the
 * bundles those imports become chunks (dist/local/) or lazily run modules (dist/piecework.mjs).
 */
import yargs from 'yargs';
import type { Argv } from 'yargs';
import { ExitStatus, PieceworkError, UsageError } from '../core/errors.js';
import { PACKAGE_VERSION } from '../core/version.js';
import { processContext, setContext, type CliContext } from './context.js';
import { copyableExamples } from './examples.js';
import splitCommand from './commands/split.js';
import workCommand from './commands/work.js';
import verifyCommand from './commands/verify.js';
import mergeCommand from './commands/merge.js';
import stopCommand from './commands/stop.js';
import statusCommand from './commands/status.js';
import dashboardCommand from './commands/dashboard.js';
import completionCommand from './commands/completion.js';
import launchCommand from './commands/launch.js';

const EPILOGUE = `Exit status: 0 success; 1 failure (chunks failed for good, a command failed); 2 usage error;
3 job incomplete; 4 no job at that path (or its mount is gone); 130/143 stopped by SIGINT/SIGTERM.
Docs and examples: the README, and \`piecework COMMAND --help\`.`;

/** The help's width: the terminal's (or $COLUMNS), at most 110. */
function helpWidth(): number {
  return Math.min(110, Number(process.env.COLUMNS) || process.stdout.columns || 100);
}

export function createParser(argv: string[]): Argv {
  const parser = yargs(argv);
  copyableExamples(parser, helpWidth);
  parser
    .scriptName('piecework')
    .usage('$0 COMMAND JOB [options] [-- COMMAND ARGS…]\n\nSpread a batch job over many machines that share a folder.')
    .command([splitCommand, workCommand, verifyCommand, mergeCommand, stopCommand, launchCommand, statusCommand, dashboardCommand, completionCommand])
    .demandCommand(1, 'give a command: split, work, launch, verify, merge, status or stop')
    .option('verbose', { type: 'boolean', description: 'Show stack traces and more detail', global: true })
    .parserConfiguration({ 'populate--': true, 'camel-case-expansion': true })
    .strict()
    .recommendCommands()
    .exitProcess(false)
    .fail((message, error) => {
      throw error ?? new UsageError(message, usageHint(message, argv));
    })
    .epilogue(EPILOGUE)
    .version(PACKAGE_VERSION)
    .help()
    .wrap(helpWidth());
  skipHelpCache(parser);
  return parser;
}

/** Commands whose own command comes after `--`. */
const TAKES_A_COMMAND = new Set(['work', 'launch', 'verify', 'merge']);

/**
 * `piecework work J wc -l` reads `wc` and `-l` as piecework's own (unknown) arguments: say where
 * the command goes.
 */
function usageHint(message: string, argv: string[]): string {
  const dashes = argv.indexOf('--');
  const before = dashes === -1 ? argv : argv.slice(0, dashes);
  const command = before.find((arg) => !arg.startsWith('-'));
  if (/^Unknown arguments?:/.test(message) && dashes === -1 && command && TAKES_A_COMMAND.has(command)) {
    return `the command to run goes after --, e.g. piecework ${command} JOB … -- wc -l`;
  }
  return 'see `piecework --help`';
}

/**
 * yargs lays out a command's whole help every time the command runs (usage.cacheHelpMessage, so
 * that a handler could still call showHelp() later); measuring the text loads string-width's
 * emoji tables and an Intl.Segmenter, ~40 ms of every start. No handler shows help, and --help
 * lays it out anew, so the cache is switched off. Internal API: if a yargs update renames it,
 * this does nothing and commands are only slower (test/cli/startup.test.ts notices).
 */
function skipHelpCache(parser: Argv): void {
  const internal = parser as unknown as { getInternalMethods?(): { getUsageInstance?(): { cacheHelpMessage?: () => void } } };
  const usage = internal.getInternalMethods?.().getUsageInstance?.();
  if (usage && typeof usage.cacheHelpMessage === 'function') usage.cacheHelpMessage = () => {};
}

export async function main(argv: string[], context: CliContext = processContext()): Promise<number> {
  setContext(context);
  const verbose = argv.includes('--verbose') || Boolean(context.env.DEBUG);
  try {
    await createParser(argv).parseAsync();
    return context.exitStatus;
  } catch (error) {
    return reportError(error, context, verbose);
  }
}

function reportError(error: unknown, context: CliContext, verbose: boolean): number {
  const write = (text: string) => context.stderr.write(text + '\n');
  if (error instanceof PieceworkError) {
    write(`piecework: ${error.message}`);
    if (error.hint) write(`  ${error.hint}`);
    if (verbose && error.stack) write(error.stack);
    return error.exitStatus;
  }
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EPIPE') return ExitStatus.ok; // `piecework merge JOB | head`: the reader had enough.
  if (code === 'ENOSPC') {
    write(`piecework: no space left on the device: ${(error as Error).message}`);
    write('  free some space and run the command again; nothing partial was committed');
    return ExitStatus.failure;
  }
  write(`piecework: unexpected error: ${error instanceof Error ? error.message : String(error)}`);
  write('  this is a bug in piecework — please report it with the output of the same command run with --verbose');
  if (verbose && error instanceof Error && error.stack) write(error.stack);
  return ExitStatus.failure;
}

export async function runCli(argv: string[]): Promise<void> {
  const status = await main(argv);
  process.exitCode = status;
}
