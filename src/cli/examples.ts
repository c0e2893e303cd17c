/**
 * Examples in --help that can be copied: yargs lays them out as a two-column table whose command
 * column is at most half the width, so `piecework work JOB -- sh -c '…'` broke in the middle of
 * its arguments at 80 columns. Here each example becomes two full-width rows — the description as
 * a shell comment, then the command — and a command too long for the width is broken between
 * arguments with a ` \` continuation, so that what is on the screen still runs when pasted.
 */
import type { Argv } from 'yargs';

const INDENT = 2;
const CONTINUATION = '    ';

export function copyableExamples(parser: Argv, width: () => number): void {
  const example = parser.example.bind(parser) as (command: string, description?: string) => Argv;
  (parser as { example: unknown }).example = (command: string | [string, string?][], description?: string) => {
    const list = Array.isArray(command) ? command : [[command, description] as [string, string?]];
    for (const [cmd, desc] of list) {
      if (desc) example(`# ${desc}`, '');
      example(breakLines(cmd, width() - INDENT * 2), '');
    }
    return parser;
  };
}

/** Break a command line between words (never inside quotes) so that no line is wider than `max`. */
export function breakLines(command: string, max: number): string {
  // `$0` becomes "piecework" (9 characters) when yargs prints it.
  const visible = (text: string) => text.replaceAll('$0', 'piecework').length;
  if (visible(command) <= max) return command;
  const words = command.match(/(?:[^\s'"]+|'[^']*'|"(?:[^"\\]|\\.)*")+/g) ?? [command];
  const lines: string[] = [];
  let line = '';
  for (const word of words) {
    const candidate = line ? `${line} ${word}` : word;
    const limit = (lines.length ? max - CONTINUATION.length : max) - 2; // room for " \"
    if (line && visible(candidate) > limit) {
      lines.push(line);
      line = word;
    } else {
      line = candidate;
    }
  }
  lines.push(line);
  return lines.map((l, i) => (i ? CONTINUATION : '') + l).join(' \\\n');
}
