/**
 * The in-process pipeline the service is measured against: the same preprocessing (sharp decode,
 * resize, crop, normalise) and the same ONNX Runtime session options, batches of `batch`, the next
 * batch decoded while the current one runs, and nothing else (no HTTP, hashing, JSON, logging,
 * metrics or queueing). Service ÷ this is the service's overhead.
 *
 * With several stages and a cascade spec it is the cascade's ideal: the first stage on every photo
 * in batches, and each photo inside a band prepared again for, and run through, the next stage while
 * the following batch decodes — so the default (cascaded) model set has its own yardstick.
 */
import type { Classifier } from '../src/model/engine.js';
import { runCascade, type CascadeSpec } from '../src/policy/cascade.js';
import type { ClassifierScores } from '../src/policy/index.js';
import { prepareImage, tensorSpecOf, writeTensor } from '../src/preprocess/index.js';

function scoresOf(classifier: Classifier, probabilities: Float32Array): ClassifierScores {
  return { classifier: classifier.manifest.name, version: classifier.manifest.version, labels: classifier.manifest.labels, probabilities };
}

async function tensorFor(classifier: Classifier, photo: Buffer): Promise<Float32Array> {
  const spec = tensorSpecOf(classifier.manifest);
  const input = new Float32Array(classifier.inputLength);
  writeTensor((await prepareImage(photo, spec)).rgb, spec, input);
  return input;
}

export async function pipelineImagesPerSecond(
  stages: Classifier | readonly Classifier[],
  photos: readonly Buffer[],
  seconds: number,
  opts: { batch?: number; cascade?: CascadeSpec } = {},
): Promise<number> {
  const classifiers = Array.isArray(stages) ? stages as readonly Classifier[] : [stages as Classifier];
  const first = classifiers[0]!;
  const batch = opts.batch ?? 8;
  const spec = tensorSpecOf(first.manifest);
  let next = 0;
  const prepareBatch = async () => {
    const chosen = Array.from({ length: batch }, () => photos[next++ % photos.length]!);
    const input = new Float32Array(batch * first.inputLength);
    const prepared = await Promise.all(chosen.map((photo) => prepareImage(photo, spec)));
    prepared.forEach((p, i) => writeTensor(p.rgb, spec, input, i * first.inputLength));
    return { input, chosen };
  };
  const runBatch = async ({ input, chosen }: { input: Float32Array; chosen: Buffer[] }) => {
    const outputs = await first.classify(input, batch);
    if (!opts.cascade || classifiers.length < 2) return;
    for (let i = 0; i < chosen.length; i++) {
      await runCascade(opts.cascade, async (index) => {
        if (index === 0) return scoresOf(first, outputs[i]!.probabilities);
        const stage = classifiers[index]!;
        const [output] = await stage.classify(await tensorFor(stage, chosen[i]!), 1);
        return scoresOf(stage, output!.probabilities);
      });
    }
  };
  await runBatch(await prepareBatch()); // warm-up
  let images = 0;
  const started = performance.now();
  let pending = prepareBatch();
  while (performance.now() - started < seconds * 1000) {
    const prepared = await pending;
    pending = prepareBatch();
    await runBatch(prepared);
    images += batch;
  }
  await pending;
  return images / ((performance.now() - started) / 1000);
}
