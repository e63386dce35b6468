import assert from 'node:assert/strict';
import { test } from 'node:test';
import { perClassTable } from '../../src/training/report.js';

test('the per-class table lists label, n, precision, recall and F1 in aligned columns, in the given order', () => {
  const table = perClassTable({
    ivory: { support: 60, precision: 0.8615, recall: 0.9333, f1: 0.896 },
    other_protected_wildlife: { support: 1, precision: 0, recall: 0, f1: 0 },
    pet: { support: 78, precision: 1, recall: 0.98718, f1: 0.99355 },
  });
  assert.equal(table, [
    'label                      n  precision  recall     F1',
    'ivory                     60      0.862   0.933  0.896',
    'other_protected_wildlife   1      0.000   0.000  0.000',
    'pet                       78      1.000   0.987  0.994',
    '',
  ].join('\n'));
});

test('the per-class table of no classes is its header alone', () => {
  assert.equal(perClassTable({}), 'label  n  precision  recall  F1\n');
});
