/** A labels.csv over the repository's eight fixture photos (Met ivory and look-alikes, ImageNet clothing), all in split val. */
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { REPO_ROOT } from '../../src/config.js';

/** Writes `<dir>/labels.csv` (absolute paths: any --data root works) and returns its path. */
export async function writeFixtureLabels(dir: string): Promise<string> {
  const rows = ['path,class,trade_relevant,split'];
  for (const fixtures of ['test/fixtures/met', 'test/fixtures/imagenet']) {
    for (const file of (await readdir(path.join(REPO_ROOT, fixtures))).filter((f) => f.endsWith('.jpg')).sort()) {
      const cls = file.startsWith('ivory_') ? 'ivory,yes' : file.startsWith('non_ivory') ? 'ceramic_lookalike,no' : 'everyday_object,no';
      rows.push(`${path.join(REPO_ROOT, fixtures, file)},${cls},val`);
    }
  }
  const labels = path.join(dir, 'labels.csv');
  await writeFile(labels, `${rows.join('\n')}\n`);
  return labels;
}
