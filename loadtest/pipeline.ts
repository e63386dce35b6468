/**
 * The in-process pipeline the service is measured against: the same preprocessing (sharp decode,
 * resize, crop, normalise) and the same ONNX Runtime session, batches of `batch`, the next batch
 * decoded while the current one runs, and nothing else (no HTTP, hashing, JSON, logging, metrics or
 * queueing). Service ÷ this is the service's overhead.
 */
import type { Classifier } from '../src/model/engine.js';
import { prepareImage, tensorSpecOf, writeTensor } from '../src/preprocess/index.js';

export async function pipelineImagesPerSecond(classifier: Classifier, photos: readonly Buffer[], seconds: number, batch = 8): Promise<number> {
  const spec = tensorSpecOf(classifier.manifest);
  let next = 0;
  const prepareBatch = async () => {
    const input = new Float32Array(batch * classifier.inputLength);
    const prepared = await Promise.all(Array.from({ length: batch }, () => prepareImage(photos[next++ % photos.length]!, spec)));
    prepared.forEach((p, i) => writeTensor(p.rgb, spec, input, i * classifier.inputLength));
    return input;
  };
  await classifier.classify(await prepareBatch(), batch); // warm-up
  let images = 0;
  const started = performance.now();
  let pending = prepareBatch();
  while (performance.now() - started < seconds * 1000) {
    const input = await pending;
    pending = prepareBatch();
    await classifier.classify(input, batch);
    images += batch;
  }
  await pending;
  return images / ((performance.now() - started) / 1000);
}
