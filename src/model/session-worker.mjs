// One ONNX Runtime session in a worker thread (src/model/worker-session.ts is the other side).
// onnxruntime-node runs inference synchronously on the calling thread; here that thread is this
// worker, so the service's event loop keeps parsing requests and starting decodes meanwhile.
// Plain JavaScript: worker threads do not inherit the tsx loader the rest of the service runs under.
import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';

const port = parentPort;
const { path, options } = workerData;

try {
  const session = await ort.InferenceSession.create(path, options);
  port.postMessage({ type: 'ready', inputNames: session.inputNames, outputNames: session.outputNames });
  port.on('message', (message) => {
    if (message.type === 'release') {
      void session.release().finally(() => port.close());
      return;
    }
    session.run({ [message.inputName]: new ort.Tensor('float32', message.input, message.dims) }).then((result) => {
      const outputs = {};
      const transfer = [];
      for (const [name, tensor] of Object.entries(result)) {
        const data = tensor.data.slice();
        outputs[name] = { data, dims: tensor.dims };
        transfer.push(data.buffer);
      }
      port.postMessage({ type: 'result', id: message.id, outputs }, transfer);
    }, (error) => port.postMessage({ type: 'result', id: message.id, error: error.message }));
  });
} catch (error) {
  port.postMessage({ type: 'failed', error: error.message });
  port.close();
}
