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
