import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { quote, quoteArgv, quoteAssignment } from '../../src/remote/quote.js';

const tricky = ['plain', '', 'two words', "it's", '$(touch /tmp/pwned)', '`id`', '$HOME', 'a\\b', 'new\nline', '*', '~', '-n', "'", "''", '"', '!event', 'tab\there', 'é ü'];

test('quoted words come back from sh exactly, one argument each', () => {
  const script = `printf '%s\\0' ${quoteArgv(tricky)}`;
  const output = execFileSync('sh', ['-c', script], { encoding: 'utf8' });
  assert.deepEqual(output.split('\0').slice(0, -1), tricky);
});

test('safe words stay bare, everything else is single-quoted', () => {
  assert.equal(quote('lab1.example.org:/srv/x'), 'lab1.example.org:/srv/x');
  assert.equal(quote(8), '8');
  assert.equal(quote(''), "''");
  assert.equal(quote("it's"), "'it'\\''s'");
  assert.equal(quote('~'), "'~'");
});

test('NUL cannot be passed and bad variable names are refused', () => {
  assert.throws(() => quote('a\0b'), /NUL/);
  assert.throws(() => quoteAssignment('1X', 'v'), /not a shell variable name/);
  assert.equal(quoteAssignment('PW_JOB', '/a b'), "PW_JOB='/a b'");
});
