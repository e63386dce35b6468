/**
 * What the Python side hands back, checked against a schema before anything reads it: a result the
 * TypeScript side does not expect (an older wildtrain, a half-written training.json) is a clear
 * TRAIN_RESULT_INVALID listing every problem, not an `undefined` found three calls later.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import { describeSchemaError } from '../config.js';
import { AppError } from '../errors.js';

const num = { type: 'number' };
const str = { type: 'string' };
const rgb = { type: 'array', items: num, minItems: 3, maxItems: 3 };
const obj = (required: string[], properties: Record<string, unknown>) => ({ type: 'object', required, properties });

/** training.json (wildtrain/train.py): extra keys are allowed, so a newer Python can add some. */
export const TRAINING_SUMMARY_SCHEMA = obj(
  ['arch', 'classes', 'trade_relevant', 'image_size', 'resize_short', 'mean', 'std', 'epochs', 'history', 'skipped', 'train_images', 'eval_images', 'calibration'],
  {
    arch: str, classes: { type: 'array', items: str, minItems: 1 }, trade_relevant: { type: 'object' },
    image_size: { type: 'integer' }, resize_short: { type: 'integer' }, mean: rgb, std: rgb, pixel_scale: { enum: [1, 255] },
    epochs: { type: 'integer' }, cached_views: { type: ['integer', 'null'] }, processes: { type: 'integer' },
    history: { type: 'array', items: { type: 'object', additionalProperties: num } },
    skipped: { type: 'array', items: obj(['path', 'error'], { path: str, error: str }) },
    train_images: { type: 'integer' }, unlabeled_train_images: { type: 'integer' }, eval_images: { type: 'integer' },
    calibration: { type: 'array', items: str },
    online_teacher: obj(['arch', 'weights', 'class_num', 'image_size', 'crops_scored', 'eval_mode', 'trainable_parameters', 'state_sha256_before', 'state_sha256_after'], {
      arch: str, weights: str, class_num: { type: 'integer' }, image_size: { type: 'integer' }, crops_scored: { type: 'integer' },
      eval_mode: { type: 'boolean' }, trainable_parameters: { type: 'integer' }, state_sha256_before: str, state_sha256_after: str,
    }),
  },
);

/** `wildtrain export` (wildtrain/export.py). */
export const EXPORT_RESULT_SCHEMA = obj(['onnx', 'input', 'output', 'opset', 'load_report'], {
  onnx: str, input: str, output: str, opset: { type: 'integer' },
  load_report: obj(['head_reinitialised', 'loaded'], { head_reinitialised: { type: 'object' }, loaded: { type: 'integer' } }),
});

/** `wildtrain quantize` (wildtrain/quantize.py). */
export const QUANTIZE_RESULT_SCHEMA = obj(['method', 'detail'], {
  method: { enum: ['weights', 'static'] }, detail: str, calibration_images: { type: 'integer' },
});

/** `wildtrain locate` (wildtrain/packaged.py). */
export const LOCATE_RESULT_SCHEMA = obj(['path', 'sha256', 'package', 'version'], {
  path: str, sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' }, package: str, version: { type: ['string', 'null'] },
});

/** `wildtrain keys`: "name AxB" per state-dict entry. */
export const KEYS_RESULT_SCHEMA = { type: 'array', items: str };

const ajv = new Ajv({ allErrors: true, strict: false });
const compiled = new Map<object, ValidateFunction>();

/** `value` as T if it fits `schema`; otherwise TRAIN_RESULT_INVALID naming `what` and every problem. */
export function checkPythonResult<T>(schema: object, value: unknown, what: string): T {
  let validate = compiled.get(schema);
  if (!validate) compiled.set(schema, (validate = ajv.compile(schema)));
  if (validate(value)) return value as T;
  const problems = [...new Set((validate.errors ?? []).map(describeSchemaError))];
  throw new AppError('TRAIN_RESULT_INVALID', `${what}: ${problems.length} problem(s):\n  ${problems.join('\n  ')}`);
}
