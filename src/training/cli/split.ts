/**
 * npm run ssld:split -- --data ROOT --labeled 0.5 --out DIR
 * Hides the labels of part of the train split (the SSLD experiment's unlabeled pool); see ssld/split.ts.
 */
import { hideLabels } from '../ssld/split.js';
import { parseFlags, runCli } from './args.js';

runCli(async () => {
  const flags = parseFlags(process.argv.slice(2), {
    data: { type: 'string', required: true, help: 'dataset root holding labels.csv' },
    labels: { type: 'string', help: 'labels CSV relative to the root (default labels.csv)' },
    split: { type: 'string', help: 'the split to thin out (default train)' },
    labeled: { type: 'string', required: true, help: 'share of each class that keeps its label, e.g. 0.5' },
    out: { type: 'string', required: true, help: 'directory for labeled.csv, pool.txt, hidden.csv' },
  }, 'usage: npm run ssld:split -- --data ROOT --labeled 0.5 --out DIR');
  const result = await hideLabels({ root: String(flags.data), labels: flags.labels as string | undefined, split: flags.split as string | undefined, labeledFraction: Number(flags.labeled), out: String(flags.out) });
  process.stdout.write(`${JSON.stringify(result)}\n`);
});
