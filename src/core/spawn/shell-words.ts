/**
 * Words for the fork server's request line (see fork-server-script.ts). Every word is single-quoted,
 * so the server's `eval` sees data only: no expansion, no splitting, no globbing. The request must
 * stay on one line for `read`, so a newline inside a word is written as `'"$nl"'` — a quoted
 * expansion of the server's own newline variable, which eval joins back into the word.
 */

/** One request line for `eval "run $line"`; undefined when a word holds NUL (no argv can). */
export function requestLine(words: readonly string[]): string | undefined {
  let line = '';
  for (const word of words) {
    if (word.includes('\0')) return undefined;
    line += (line ? " '" : "'") + word.replace(/'/g, "'\\''").replace(/\n/g, `'"$nl"'`) + "'";
  }
  return line + '\n';
}

/**
 * A request line as bash's fork server reads it: an 8-digit length, then the line. bash reads a
 * line from a pipe one byte per system call (it cannot give back what it read past the newline),
 * ~300 calls a request; `read -N COUNT` reads the counted bytes at once. -N counts characters of
 * the shell's locale, so the line is made ASCII: each run of other characters, which requestLine
 * only ever puts inside single quotes, leaves the quotes as bash's $'\xNN' bytes.
 */
export function countedRequest(line: string): string {
  const ascii = line.replace(/[^\x00-\x7f]+/g, (run) => `'$'${[...Buffer.from(run, 'utf8')].map((byte) => `\\x${byte.toString(16).padStart(2, '0')}`).join('')}''`);
  return String(ascii.length).padStart(8, '0') + ascii;
}

