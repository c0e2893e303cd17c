import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSize } from '../../src/core/units.js';
import { UsageError } from '../../src/core/errors.js';

test('sizes parse like coreutils split: binary multiples, optional B/iB', () => {
  const cases: [string, number][] = [
    ['100', 100],
    ['64M', 64 * 1024 ** 2],
    ['64MiB', 64 * 1024 ** 2],
    ['1g', 1024 ** 3],
    ['1.5K', 1536],
  ];
  for (const [text, bytes] of cases) assert.equal(parseSize(text, '--bytes'), bytes, text);
});

test('a bad size is a usage error that says what to write', () => {
  for (const bad of ['', 'abc', '-1', '1X', '0']) {
    assert.throws(() => parseSize(bad, '--bytes'), (error: unknown) => error instanceof UsageError && error.exitStatus === 2, bad);
  }
});
