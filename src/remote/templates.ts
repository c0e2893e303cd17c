/**
 * Finding and rendering templates/*.sh.
 *
 * How values get in (the one way, for every template): as shell assignments `PW_NAME='value'`,
 * each value quoted by quote.ts, inserted as a block right after the template's leading comment
 * block (the shebang, `#SBATCH` directives and header comments — sbatch reads directives only
 * before the first command, so the block must come after them). The script body reads
 * `${PW_NAME:?}` / `${PW_NAME:-default}` and never sees a user value as code. Nothing is spliced
 * into the body, so the template file itself is the script that shellcheck checks.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PieceworkError } from '../core/errors.js';
import { quoteAssignment } from './quote.js';

export type TemplateName = 'bootstrap.sh' | 'gcloud-startup.sh' | 'aws-user-data.sh' | 'slurm-array.sh' | 'stop-workers.sh' | 'authorized-keys.sh' | 'job-key-on-host.sh';

export type TemplateValues = Record<string, string | number | undefined>;

let cachedRoot: string | undefined;

/**
 * The package root: the nearest folder above this module holding a package.json named
 * "piecework" and a templates/ folder. Works from src/remote (tsx), dist/remote (tsc) and
 * dist/piecework.mjs (the single bundled file), since all of them sit inside the package.
 */
export function packageRoot(from: string = fileURLToPath(import.meta.url)): string {
  if (cachedRoot !== undefined && from === fileURLToPath(import.meta.url)) return cachedRoot;
  let dir = dirname(from);
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && existsSync(join(dir, 'templates'))) {
      try {
        const { name } = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown };
        if (name === 'piecework') {
          if (from === fileURLToPath(import.meta.url)) cachedRoot = dir;
          return dir;
        }
      } catch {
        // not a readable package.json: keep walking up
      }
    }
    const parent = dirname(dir);
    if (parent === dir) {
      throw new PieceworkError(`cannot find piecework's templates/ folder above ${from}`, {
        hint: 'run piecework from its package (or a copy of dist/ beside templates/ and package.json)',
      });
    }
    dir = parent;
  }
}

export function templatePath(name: TemplateName): string {
  return join(packageRoot(), 'templates', name);
}

/** Names the template reads (`PW_*`), and those it requires (`${PW_NAME:?}`). */
export function templateVariables(text: string): { all: Set<string>; required: Set<string> } {
  const all = new Set<string>();
  const required = new Set<string>();
  for (const match of text.matchAll(/\$\{?(PW_[A-Z0-9_]+)(:\?)?/g)) {
    all.add(match[1] as string);
    if (match[2]) required.add(match[1] as string);
  }
  return { all, required };
}

/**
 * Render template text with values. Undefined values are left out (the script's defaults
 * apply). A name the template never reads is an error (a typo would otherwise be silently
 * ignored), and so is a missing required one.
 */
export function renderTemplateText(text: string, values: TemplateValues, name = 'template'): string {
  const { all, required } = templateVariables(text);
  const assignments: string[] = [];
  for (const [key, value] of Object.entries(values)) {
    if (!all.has(key)) throw new Error(`${name} does not use ${key}`);
    if (value !== undefined) assignments.push(quoteAssignment(key, value));
  }
  for (const key of required) {
    if (values[key] === undefined) throw new Error(`${name} needs a value for ${key}`);
  }
  const lines = text.split('\n');
  let insertAt = 0;
  while (insertAt < lines.length && /^\s*(#.*)?$/.test(lines[insertAt] as string)) insertAt++;
  // The directive (before the first command, so it covers the script) silences shellcheck's
  // "expressions don't expand in single quotes": here that is the point. The template itself is
  // checked without it.
  const block = ['# Values rendered by piecework (single-quoted: data, never code).', '# shellcheck disable=SC1003,SC2016', ...assignments, ''];
  return [...lines.slice(0, insertAt), ...block, ...lines.slice(insertAt)].join('\n');
}

export async function renderTemplate(name: TemplateName, values: TemplateValues, options: { compact?: boolean } = {}): Promise<string> {
  const text = await readFile(templatePath(name), 'utf8');
  return renderTemplateText(options.compact ? compactScript(text) : text, values, name);
}

/**
 * The script without its comment lines and blank lines (the shebang kept): for a copy embedded in
 * another script, where size counts (EC2 user data: 16 KB). Done on the template, before any value
 * is inserted, so a user's value is never touched. Our templates have no heredocs, and no quoted
 * string in them has a line that starts with `#`.
 */
export function compactScript(text: string): string {
  return text
    .split('\n')
    .filter((line, i) => (i === 0 && line.startsWith('#!')) || !/^\s*(#.*)?$/.test(line))
    .join('\n') + '\n';
}
