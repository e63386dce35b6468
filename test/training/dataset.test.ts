import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isAppError } from '../../src/errors.js';
import { parseCsv, readDataset } from '../../src/training/dataset.js';

describe('datasets on the Node side', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wildlife-dataset-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  test('CSV fields may hold quoted commas, quotes and newlines, as in wildlife-v1 licence notes', () => {
    const rows = parseCsv('path,class,licence_note\r\na.jpg,ivory,"Repo MIT; images ""web-scraped"", unclear"\nb.jpg,pet,"two\nlines"\n');
    assert.deepEqual(rows, [
      ['path', 'class', 'licence_note'],
      ['a.jpg', 'ivory', 'Repo MIT; images "web-scraped", unclear'],
      ['b.jpg', 'pet', 'two\nlines'],
    ]);
  });

  test('a labels CSV gives the split asked for, all classes, and trade relevance per class', async () => {
    await writeFile(path.join(tmp, 'labels.csv'), 'path,class,trade_relevant,split\nimages/a.jpg,ivory,yes,train\nimages/b.jpg,pet,no,val\nimages/c.jpg,ivory,yes,val\n');
    const ds = await readDataset({ root: tmp, labels: 'labels.csv', split: 'val' });
    assert.deepEqual(ds.samples.map((s) => [path.basename(s.path), s.label]), [['b.jpg', 'pet'], ['c.jpg', 'ivory']]);
    assert.deepEqual(ds.classes, ['ivory', 'pet']);
    assert.deepEqual([...ds.tradeRelevant], [['ivory', true], ['pet', false]]);
  });

  test('an image folder root/<class>/<image> is a dataset too; non-images are ignored', async () => {
    const root = path.join(tmp, 'folder');
    for (const [cls, file] of [['ivory', 'x.jpg'], ['ivory', 'notes.txt'], ['pet', 'y.PNG']]) {
      await mkdir(path.join(root, cls!), { recursive: true });
      await writeFile(path.join(root, cls!, file!), 'x');
    }
    const ds = await readDataset({ root });
    assert.deepEqual(ds.classes, ['ivory', 'pet']);
    assert.deepEqual(ds.samples.map((s) => `${s.label}/${path.basename(s.path)}`), ['ivory/x.jpg', 'pet/y.PNG']);
  });

  test('a CSV without path or class columns, or a missing root, is DATASET_INVALID', async () => {
    await writeFile(path.join(tmp, 'bad.csv'), 'file,label\na.jpg,ivory\n');
    await assert.rejects(readDataset({ root: tmp, labels: 'bad.csv' }), (e: unknown) => isAppError(e, 'DATASET_INVALID'));
    await assert.rejects(readDataset({ root: path.join(tmp, 'nope') }), (e: unknown) => isAppError(e, 'DATASET_INVALID'));
  });
});
