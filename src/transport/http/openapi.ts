/** OpenAPI 3.1 description of the HTTP API; a test checks every route is here and responses validate. */
import { ERROR_CATALOGUE } from '../../errors.js';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const errorResponse = (description: string) => ({ description, content: { 'application/json': { schema: ref('Error') } } });
const json = (schema: object, description = 'OK') => ({ description, content: { 'application/json': { schema } } });
const security = [{ bearer: [] }, { apiKey: [] }];
const errors = {
  '400': errorResponse('Bad request (see error.code)'),
  '401': errorResponse('Missing or wrong API key (when API_KEYS is set)'),
  '403': errorResponse('URL refused by the SSRF guard'),
  '413': errorResponse('Body, image or batch too large'),
  '415': errorResponse('Unsupported content type or image format'),
  '422': errorResponse('Image undecodable, too small or too many pixels'),
  '502': errorResponse('Remote image could not be fetched'),
  '503': errorResponse('Queue full (Retry-After) or shutting down'),
  '504': errorResponse('Deadline exceeded or remote fetch timed out'),
};

export const OPENAPI_DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'Wildlife-trade image screening API',
    version: '1.0.0',
    description: 'Classifies photos with ResNet_vd models fine-tuned on endangered species and wildlife products and says whether a listing should go to human review.',
  },
  components: {
    securitySchemes: {
      bearer: { type: 'http', scheme: 'bearer' },
      apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
    },
    schemas: {
      Error: {
        type: 'object', additionalProperties: false, required: ['error'],
        properties: {
          error: {
            type: 'object', additionalProperties: false, required: ['code', 'message', 'requestId'],
            properties: {
              code: { enum: Object.keys(ERROR_CATALOGUE) }, message: { type: 'string' }, requestId: { type: 'string' },
              cause: { enum: Object.keys(ERROR_CATALOGUE), description: 'for RELOAD_FAILED and SHADOW_LOAD_FAILED: the code of the underlying failure, e.g. MODEL_CHECKSUM_MISMATCH' },
            },
          },
        },
      },
      Reason: {
        type: 'object', additionalProperties: false, required: ['classifier', 'label', 'score', 'threshold'],
        properties: { classifier: { type: 'string' }, label: { type: 'string' }, score: { type: 'number' }, threshold: { type: 'number' } },
      },
      LabelScore: {
        type: 'object', additionalProperties: false, required: ['label', 'score', 'trade_relevant'],
        properties: { label: { type: 'string' }, score: { type: 'number', minimum: 0, maximum: 1 }, trade_relevant: { type: 'boolean' } },
      },
      ScreenResult: {
        type: 'object', additionalProperties: false,
        required: ['requestId', 'sha256', 'flagged', 'reasons', 'classifiers', 'image', 'cached', 'timings'],
        properties: {
          requestId: { type: 'string' },
          sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
          flagged: { type: 'boolean', description: 'true when any trade-relevant label reached its threshold: send to human review' },
          reasons: { type: 'array', items: ref('Reason') },
          classifiers: {
            type: 'array',
            items: {
              type: 'object', additionalProperties: false, required: ['name', 'version', 'top'],
              properties: { name: { type: 'string' }, version: { type: 'string' }, top: { type: 'array', items: ref('LabelScore') } },
            },
          },
          image: {
            type: 'object', additionalProperties: false, required: ['format', 'width', 'height', 'bytes'],
            properties: { format: { type: 'string' }, width: { type: 'integer' }, height: { type: 'integer' }, bytes: { type: 'integer' }, url: { type: 'string' } },
          },
          cached: { type: 'boolean', description: 'served from the dedupe cache (same bytes, same model versions)' },
          timings: {
            type: 'object', additionalProperties: false, required: ['fetchMs', 'preprocessMs', 'queueMs', 'inferenceMs', 'totalMs'],
            properties: { fetchMs: { type: 'number' }, preprocessMs: { type: 'number' }, queueMs: { type: 'number' }, inferenceMs: { type: 'number' }, totalMs: { type: 'number' } },
          },
        },
      },
      ScreenJson: {
        type: 'object', additionalProperties: false,
        oneOf: [{ required: ['url'] }, { required: ['imageBase64'] }],
        properties: { url: { type: 'string', format: 'uri', maxLength: 4096 }, imageBase64: { type: 'string', contentEncoding: 'base64' } },
      },
      BatchResult: {
        type: 'object', additionalProperties: false, required: ['requestId', 'flagged', 'results'],
        properties: {
          requestId: { type: 'string' },
          flagged: { type: 'boolean' },
          results: {
            type: 'array',
            items: {
              type: 'object', additionalProperties: false, required: ['index', 'ok'],
              properties: {
                index: { type: 'integer' }, ok: { type: 'boolean' }, result: ref('ScreenResult'),
                error: { type: 'object', additionalProperties: false, required: ['code', 'message', 'retriable'], properties: { code: { type: 'string' }, message: { type: 'string' }, retriable: { type: 'boolean' } } },
              },
            },
          },
        },
      },
      Model: {
        type: 'object', additionalProperties: false, required: ['name', 'version', 'architecture', 'precision', 'inputSize', 'labels', 'sha256', 'generation'],
        properties: {
          name: { type: 'string' }, version: { type: 'string' }, architecture: { type: 'string' }, precision: { type: 'string' },
          inputSize: { type: 'integer' }, sha256: { type: 'string' }, generation: { type: 'integer' },
          labels: {
            type: 'array',
            items: {
              type: 'object', additionalProperties: false, required: ['name', 'trade_relevant', 'threshold'],
              properties: { name: { type: 'string' }, trade_relevant: { type: 'boolean' }, threshold: { type: ['number', 'null'] } },
            },
          },
        },
      },
      Models: { type: 'object', additionalProperties: false, required: ['models'], properties: { models: { type: 'array', items: ref('Model') } } },
      ShadowStatus: {
        type: 'object', additionalProperties: false,
        required: ['candidate', 'sampleRate', 'maxInFlight', 'inFlight', 'compared', 'flag', 'flagAgreementRate', 'top1AgreementRate', 'dropped', 'failed', 'skipped', 'lastError'],
        properties: {
          candidate: {
            description: 'the model in shadow, or null',
            oneOf: [{ type: 'null' }, {
              type: 'object', additionalProperties: false, required: ['name', 'version', 'sha256', 'directory', 'activatedAt'],
              properties: { name: { type: 'string' }, version: { type: 'string' }, sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' }, directory: { type: 'string' }, activatedAt: { type: 'string', format: 'date-time' } },
            }],
          },
          sampleRate: { type: 'number', minimum: 0, maximum: 1, description: 'share of fresh (non-cached) decisions the candidate also sees' },
          maxInFlight: { type: 'integer' },
          inFlight: { type: 'integer', minimum: 0 },
          compared: { type: 'integer', minimum: 0, description: 'counts from here on are since the candidate was activated' },
          flag: {
            type: 'object', additionalProperties: false, required: ['both', 'primary_only', 'candidate_only', 'neither'],
            properties: { both: { type: 'integer' }, primary_only: { type: 'integer' }, candidate_only: { type: 'integer' }, neither: { type: 'integer' } },
          },
          flagAgreementRate: { type: ['number', 'null'], minimum: 0, maximum: 1, description: '(both + neither) / compared; null before the first comparison' },
          top1AgreementRate: { type: ['number', 'null'], minimum: 0, maximum: 1 },
          dropped: { type: 'integer', minimum: 0, description: 'sampled while shadow.maxInFlight candidate runs were busy' },
          failed: { type: 'integer', minimum: 0 },
          skipped: { type: 'integer', minimum: 0, description: 'not sampled' },
          lastError: {
            oneOf: [{ type: 'null' }, {
              type: 'object', additionalProperties: false, required: ['code', 'message', 'at'],
              properties: { code: { type: 'string' }, message: { type: 'string' }, at: { type: 'string', format: 'date-time' } },
            }],
          },
        },
      },
      ShadowRequest: {
        type: 'object', additionalProperties: false, required: ['modelDir'],
        properties: {
          modelDir: { type: 'string', minLength: 1, maxLength: 4096, description: 'a model directory (model.onnx + model.json) under the models root or shadow.allowedRoots' },
          sampleRate: { type: 'number', minimum: 0, maximum: 1 },
        },
      },
    },
  },
  paths: {
    '/v1/screen': {
      post: {
        summary: 'Screen one photo',
        security,
        requestBody: {
          required: true,
          content: {
            'multipart/form-data': { schema: { type: 'object', required: ['image'], properties: { image: { type: 'string', contentMediaType: 'application/octet-stream' } } } },
            'image/*': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } },
            'application/json': { schema: ref('ScreenJson') },
          },
        },
        responses: { '200': json(ref('ScreenResult'), 'The decision'), ...errors },
      },
    },
    '/v1/screen/batch': {
      post: {
        summary: 'Screen several photos; each item succeeds or fails on its own',
        security,
        requestBody: {
          required: true,
          content: {
            'multipart/form-data': { schema: { type: 'object', required: ['images'], properties: { images: { type: 'array', items: { type: 'string', contentMediaType: 'application/octet-stream' } } } } },
            'application/json': { schema: { type: 'object', additionalProperties: false, required: ['items'], properties: { items: { type: 'array', items: ref('ScreenJson') } } } },
          },
        },
        responses: { '200': json(ref('BatchResult'), 'One result or error per item'), ...errors },
      },
    },
    '/v1/models': { get: { summary: 'Models being served', security, responses: { '200': json(ref('Models')), '401': errors['401'] } } },
    '/admin/reload': {
      post: {
        summary: 'Reload every model directory, then the shadow candidate; the new models warm up before taking traffic (also on SIGHUP)',
        security,
        responses: { '200': json(ref('Models')), '401': errors['401'], '500': errorResponse('Reload failed; the previous models keep serving') },
      },
    },
    '/admin/shadow': {
      get: {
        summary: 'The shadow candidate and its agreement with the primary model since activation',
        security,
        responses: { '200': json(ref('ShadowStatus')), '401': errors['401'] },
      },
      put: {
        summary: 'Load a candidate into shadow (replacing the current one, which is disposed); it never affects decisions',
        security,
        requestBody: { required: true, content: { 'application/json': { schema: ref('ShadowRequest') } } },
        responses: {
          '200': json(ref('ShadowStatus'), 'The new candidate is warmed up and sees traffic'),
          '400': errorResponse('SHADOW_DIR_FORBIDDEN (outside the models root and shadow.allowedRoots) or REQUEST_INVALID_JSON'),
          '401': errors['401'],
          '415': errorResponse('Not application/json'),
          '422': errorResponse('SHADOW_LOAD_FAILED; error.cause has the engine\'s code (MODEL_CHECKSUM_MISMATCH, MODEL_FILE_MISSING, …). The previous candidate stays'),
          '503': errorResponse('Shutting down'),
        },
      },
      delete: {
        summary: 'Stop shadowing and dispose the candidate',
        security,
        responses: { '200': json(ref('ShadowStatus')), '401': errors['401'] },
      },
    },
    '/healthz': { get: { summary: 'Liveness', responses: { '200': json({ type: 'object', required: ['status'], properties: { status: { const: 'ok' } } }) } } },
    '/readyz': {
      get: {
        summary: 'Readiness: models loaded and warmed up',
        responses: {
          '200': json({ type: 'object', required: ['status', 'models'], properties: { status: { const: 'ready' }, models: { type: 'array', items: { type: 'string' } }, components: { type: 'object', additionalProperties: { type: 'string' }, description: 'e.g. {"kafka": "running"} when Kafka is on' } } }),
          '503': json({ type: 'object', required: ['status'], properties: { status: { const: 'not-ready' }, models: { type: 'array', items: { type: 'string' } }, components: { type: 'object', additionalProperties: { type: 'string' } } } }, 'Not ready (models loading, or the Kafka consumer not running)'),
        },
      },
    },
    '/metrics': { get: { summary: 'Prometheus metrics', responses: { '200': { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } } } } },
    '/openapi.json': { get: { summary: 'This document', responses: { '200': json({ type: 'object' }) } } },
  },
} as const;
