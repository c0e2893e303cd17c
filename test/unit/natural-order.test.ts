import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareNatural, sortNatural } from '../../src/core/natural-order.js';

test('numbers in names sort by value, folder by folder', () => {
  assert.deepEqual(sortNatural(['10', '9', '000100', '000011', '1000000', '999999']), ['9', '10', '000011', '000100', '999999', '1000000']);
  assert.deepEqual(sortNatural(['layer10/000001', 'layer2/000010', 'layer2/000002']), ['layer2/000002', 'layer2/000010', 'layer10/000001']);
});

test('the order is total: same number with different padding is not equal', () => {
  assert.notEqual(compareNatural('01', '1'), 0);
  assert.equal(Math.sign(compareNatural('01', '1')), -Math.sign(compareNatural('1', '01')));
});

test('a group folder sorts before a longer path under it', () => {
  assert.ok(compareNatural('a/000001', 'a/000001/x') < 0);
  assert.ok(compareNatural('a_1/000000', 'a_2/000000') < 0);
});
