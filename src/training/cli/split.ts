/**
 * npm run ssld:split -- --data ROOT --labeled 0.5 --out DIR
 *   Hides the labels of part of the train split (the SSLD experiment's unlabeled pool); see ssld/split.ts.
 * npm run ssld:split -- --data ROOT --holdout 0.15 --out runs/<name>/labels.csv
 *   Relabels a stratified share of the train split "calib", for calibrating thresholds off val; see holdout.ts.
 */
import { hideLabels } from '../ssld/split.js';
import { holdOutSplit } from '../holdout.js';
import { AppError } from '../../errors.js';
import { parseFlags, runCli } from './args.js';

const USAGE = 'usage: npm run ssld:split -- --data ROOT (--labeled 0.5 --out DIR | --holdout 0.15 --out FILE.csv)';

runCli(async () => {
  const flags = parseFlags(process.argv.slice(2), {
    data: { type: 'string', required: true, help: 'dataset root holding labels.csv' },
    labels: { type: 'string', help: 'labels CSV relative to the root (default labels.csv)' },
    split: { type: 'string', help: 'the split to thin out (default train)' },
    labeled: { type: 'string', help: 'share of each class that keeps its label, e.g. 0.5' },
    holdout: { type: 'string', help: 'share of each class moved to a held-out split, e.g. 0.15 (writes one labels CSV at --out)' },
    'holdout-split': { type: 'string', help: 'name of the held-out split (default calib)' },
    out: { type: 'string', required: true, help: 'directory for labeled.csv, pool.txt, hidden.csv; with --holdout, the CSV to write' },
  }, USAGE);
  if ((flags.labeled === undefined) === (flags.holdout === undefined)) throw new AppError('CLI_USAGE', `give exactly one of --labeled and --holdout\n${USAGE}`);
  const common = { root: String(flags.data), labels: flags.labels as string | undefined, split: flags.split as string | undefined, out: String(flags.out) };
  const result = flags.holdout !== undefined
    ? await holdOutSplit({ ...common, fraction: Number(flags.holdout), heldOutSplit: flags['holdout-split'] as string | undefined })
    : await hideLabels({ ...common, labeledFraction: Number(flags.labeled) });
  process.stdout.write(`${JSON.stringify(result)}\n`);
});
