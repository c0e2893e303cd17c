// Checks that Markdown renders as written: every code fence is closed, and every relative link
// points at a file of the repository. `node scripts/check-readme.mjs [FILE.md…]` (default: the
// README and docs/*.md); exit 1 with one line per problem. Run by `make test`.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const files = process.argv.slice(2).length
  ? process.argv.slice(2)
  : ['README.md', ...readdirSync(path.join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)].map((f) => path.join(root, f));

const problems = [];
for (const file of files) problems.push(...checkMarkdown(file, readFileSync(file, 'utf8')));
for (const problem of problems) console.error(problem);
if (problems.length) {
  console.error(`check-readme: ${problems.length} problem${problems.length === 1 ? '' : 's'}`);
  process.exit(1);
}

function checkMarkdown(file, text) {
  const found = [];
  const name = path.relative(process.cwd(), file) || file;
  // A fence opens with 3+ backticks or tildes and closes with at least as many of the same char
  // (CommonMark); an unclosed one swallows the rest of the page.
  let open;
  text.split('\n').forEach((line, index) => {
    const fence = /^ {0,3}(`{3,}|~{3,})(.*)$/.exec(line);
    if (open) {
      if (fence && fence[1][0] === open.char && fence[1].length >= open.length && fence[2].trim() === '') open = undefined;
      return;
    }
    if (fence) {
      open = { char: fence[1][0], length: fence[1].length, line: index + 1 };
      return;
    }
    // Links outside code: [text](target) and <a href="target">, relative ones only.
    const prose = line.replace(/`[^`]*`/g, '');
    for (const match of prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)|href="([^"]+)"/g)) {
      const target = match[1] ?? match[2];
      if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('#') || target.startsWith('//')) continue;
      const relative = decodeURIComponent(target.split('#')[0]);
      if (!existsSync(path.resolve(path.dirname(file), relative))) found.push(`${name}:${index + 1}: link to a missing file: ${target}`);
    }
  });
  if (open) found.push(`${name}:${open.line}: code fence never closed`);
  return found;
}
