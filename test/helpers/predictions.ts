/** A real model's predictions of the eight fixture photos (fixture-labels.ts), through the evaluator's predict(). */
import { loadClassifier } from '../../src/model/engine.js';
import { readDataset } from '../../src/training/dataset.js';
import { predict } from '../../src/training/evaluate.js';
import { writeFixtureLabels } from './fixture-labels.js';

/** `dir` receives the labels.csv. */
export async function fixturePredictions(modelDir: string, dir: string) {
  const dataset = await readDataset({ root: dir, labels: await writeFixtureLabels(dir), split: 'val' });
  const classifier = await loadClassifier(modelDir, { intraOpThreads: 2 });
  try {
    const { predictions } = await predict(classifier, dataset);
    return { dataset, manifest: classifier.manifest, predictions };
  } finally {
    await classifier.dispose();
  }
}
