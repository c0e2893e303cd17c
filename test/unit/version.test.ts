import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { PACKAGE_VERSION } from '../../src/core/version.js';

test('the version constant (readable from the bundle) equals package.json', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  assert.equal(PACKAGE_VERSION, pkg.version);
});
