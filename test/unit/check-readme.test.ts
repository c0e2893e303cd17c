import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot } from '../helpers/cli.js';

const root = await fs.mkdtemp(path.join(os.tmpdir(), `pw-readme-${process.pid}-`));
after(() => fs.rm(root, { recursive: true, force: true }));
const script = path.join(repoRoot, 'scripts/check-readme.mjs');
const check = (...files: string[]) => spawnSync(process.execPath, [script, ...files], { encoding: 'utf8' });

test("the repository's README and docs pass the check (make test runs it)", async () => {
  const result = check();
  assert.equal(result.status, 0, result.stderr);
  assert.match(await fs.readFile(path.join(repoRoot, 'Makefile'), 'utf8'), /node scripts\/check-readme\.mjs/);
});

test('an unclosed fence and a relative link to a missing file fail, each named with its line', async () => {
  await fs.writeFile(path.join(root, 'here.md'), '');
  const page = path.join(root, 'page.md');
  await fs.writeFile(page, ['# t', '[ok](here.md) [web](https://x.org/y) [anchor](#t) `[code](nope.md)`', '[bad](missing/file.md#part)', '```sh', 'echo', '~~~', '``` sh', 'still code', ''].join('\n'));
  const result = check(page);
  assert.equal(result.status, 1);
  assert.match(result.stderr, /page\.md:3: link to a missing file: missing\/file\.md#part/);
  assert.match(result.stderr, /page\.md:4: code fence never closed/);
  assert.doesNotMatch(result.stderr, /here\.md|x\.org|nope\.md|#t\b/);
  const fine = path.join(root, 'fine.md');
  await fs.writeFile(fine, '```\n[x](nope.md)\n```\n[ok](here.md)\n');
  assert.equal(check(fine).status, 0, check(fine).stderr);
});
