/**
 * POSIX shell quoting. Every command string sent to a remote shell (over SSH, in a cloud startup
 * script, in an sbatch script) is built only with these helpers: a value is wrapped in single
 * quotes, and a single quote inside it becomes `'\''` (close, escaped quote, reopen). Inside single
 * quotes a POSIX shell expands nothing — no `$`, no backquote, no backslash — so any byte string
 * except NUL stays data. Words made only of safe characters are left bare for readability.
 */

/** Characters that never need quoting in a POSIX shell word (as zx and shell-quote treat them). */
const safeWord = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quote one value as a single shell word. The empty string becomes `''`. */
export function quote(value: string | number): string {
  const text = String(value);
  if (text.includes('\0')) {
    // A shell word cannot hold NUL; failing loudly beats silently truncating an argument.
    throw new TypeError('cannot pass a NUL byte through a shell command');
  }
  if (text !== '' && safeWord.test(text)) return text;
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

/** Quote an argv list into one command line: each element becomes exactly one word. */
export function quoteArgv(argv: readonly (string | number)[]): string {
  return argv.map(quote).join(' ');
}

/** A shell assignment `NAME='value'`; the name must be a valid shell identifier. */
export function quoteAssignment(name: string, value: string | number): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new TypeError(`not a shell variable name: ${name}`);
  return `${name}=${quote(value)}`;
}
