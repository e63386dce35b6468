/**
 * OpenAPI 3.1 description of the HTTP API, built from the config so it states what this instance
 * enforces: batch sizes, byte limits, and security only when API keys are set. Tests check every
 * route is here, every status a route answers is documented for it, and responses validate.
 */
import type { AppConfig } from '../../config.js';
import { ERROR_CATALOGUE } from '../../errors.js';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: object, description = 'OK') => ({ description, content: { 'application/json': { schema } } });
const header = (description: string, schema: object = { type: 'string' }) => ({ description, required: true, schema });
const errorResponse = (description: string, headers?: Record<string, object>) => ({
  description, ...(headers ? { headers } : {}), content: { 'application/json': { schema: ref('Error') } },
});
const RESPONSES = {
  '400': errorResponse('Bad request (see error.code)'),
  '401': errorResponse('Missing or wrong API key', { 'WWW-Authenticate': header('Always `Bearer realm="wildlife-screening"`') }),
  '403': errorResponse('URL refused by the SSRF guard'),
  '413': errorResponse('Content-Length over server.bodyLimitBytes (checked before the body is read), or an image or batch too large'),
  '415': errorResponse('Unsupported content type or image format'),
  '422': errorResponse('Image undecodable, too small or too many pixels'),
  '500': errorResponse('Internal error or inference failure (retriable)'),
  '502': errorResponse('Remote image could not be fetched'),
  '503': errorResponse('QUEUE_FULL (the in-flight upload budget or the screening queue is full) or SHUTTING_DOWN; retry after Retry-After seconds', { 'Retry-After': header('Seconds to wait', { type: 'string', pattern: '^[0-9]+$' }) }),
  '504': errorResponse('Deadline exceeded or remote fetch timed out'),
} as const;
type Status = keyof typeof RESPONSES;
const pick = (statuses: Status[], overrides: Partial<Record<Status, object>> = {}) => Object.fromEntries(statuses.map((s) => [s, overrides[s] ?? RESPONSES[s]]));

/** The statuses each operation can answer besides 200 (and 401 when API keys are set), from the code paths in app.ts. */
export const OPERATION_ERRORS: Record<string, Status[]> = {
  'post /v1/screen': ['400', '403', '413', '415', '422', '500', '502', '503', '504'],
  // Per-item failures (403, 422, 502, 504) are inside a 200; only the request as a whole fails here.
  'post /v1/screen/batch': ['400', '413', '415', '500', '503'],
  'get /v1/models': [],
  'post /admin/reload': ['500'],
  'get /admin/shadow': [],
  'put /admin/shadow': ['400', '413', '415', '422', '503'],
  'delete /admin/shadow': [],
};

export function openApiDocument(config: Readonly<Pick<AppConfig, 'server' | 'images' | 'auth'>>) {
  const keys = config.auth.apiKeys.length > 0;
  const security = keys ? { security: [{ bearer: [] }, { apiKey: [] }] } : {};
  const errors = (operation: string, overrides: Partial<Record<Status, object>> = {}) => pick([...(keys ? ['401' as const] : []), ...OPERATION_ERRORS[operation]!], overrides);
  const batchItems = { minItems: 1, maxItems: config.server.batchLimit };
  const imageBytes = Math.min(config.images.maxBytes, config.server.bodyLimitBytes);
  const base64 = '^[A-Za-z0-9+/\\s]*(=\\s*){0,2}$';
  const binary = { type: 'string', format: 'binary', contentMediaType: 'application/octet-stream', minLength: 1, maxLength: imageBytes };
  return {
    openapi: '3.1.0',
    info: {
      title: 'Wildlife-trade image screening API',
      version: '1.0.0',
      description: 'Classifies photos with ResNet_vd models fine-tuned on endangered species and wildlife products and says whether a listing should go to human review. '
        + 'Any method a path does not list answers 405 METHOD_NOT_ALLOWED with an Allow header; unknown paths answer 404 NOT_FOUND.',
    },
    components: {
      ...(keys ? {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer' },
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
        },
      } : {}),
      responses: {
        MethodNotAllowed: errorResponse('The path exists but not with this method', { Allow: header('The methods the path supports, e.g. `POST`') }),
        NotFound: errorResponse('No such path'),
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
            cascade: {
              type: 'object', additionalProperties: false, required: ['mode', 'ran', 'decidedBy'],
              description: 'present when the service runs a cascade (config cascade.stages): the CASCADE mode, the stages that ran in order, and the model whose scores decided',
              properties: { mode: { enum: ['on', 'off', 'first'] }, ran: { type: 'array', minItems: 1, items: { type: 'string' } }, decidedBy: { type: 'string' } },
            },
            cached: {
              oneOf: [{ type: 'boolean' }, { const: 'near' }],
              description: 'true: served from the dedupe cache (same bytes, same model versions); "near": a near-duplicate (config cache.nearDistance) of a photo these models screened answered, with that photo\'s decision (see near); false: screened now',
            },
            near: {
              type: 'object', additionalProperties: false, required: ['distance', 'sha256'],
              description: 'present when cached is "near": the decision above is that of another photo. sha256 and image describe the photo sent',
              properties: {
                distance: { type: 'integer', minimum: 0, maximum: 64, description: 'pHash bits (of 64) that differ between the two photos' },
                sha256: { type: 'string', pattern: '^[0-9a-f]{64}$', description: 'the photo that was screened and whose decision this is' },
              },
            },
            timings: {
              type: 'object', additionalProperties: false, required: ['fetchMs', 'preprocessMs', 'queueMs', 'inferenceMs', 'totalMs'],
              properties: { fetchMs: { type: 'number' }, preprocessMs: { type: 'number' }, queueMs: { type: 'number' }, inferenceMs: { type: 'number' }, totalMs: { type: 'number' } },
            },
          },
        },
        ScreenJson: {
          type: 'object', additionalProperties: false,
          oneOf: [{ required: ['url'] }, { required: ['imageBase64'] }],
          properties: {
            url: { type: 'string', format: 'uri', minLength: 8, maxLength: 4096, pattern: '^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\\s]+', description: 'http(s), no credentials; loopback, private and metadata addresses are refused (403)' },
            imageBase64: { type: 'string', contentEncoding: 'base64', minLength: 4, maxLength: Math.ceil((imageBytes * 4) / 3) + 4, pattern: base64 },
          },
        },
        // In a batch, a URL or image the screening refuses is that item's error inside a 200, so
        // only what refuses the whole request (shape, length, base64 alphabet) is constrained here.
        BatchItem: {
          type: 'object', additionalProperties: false,
          oneOf: [{ required: ['url'] }, { required: ['imageBase64'] }],
          properties: {
            url: { type: 'string', maxLength: 4096, description: 'as in ScreenJson; a refused URL is this item\'s error' },
            imageBase64: { type: 'string', contentEncoding: 'base64', pattern: base64 },
          },
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
        Models: {
          type: 'object', additionalProperties: false, required: ['models', 'cascade'],
          properties: {
            models: { type: 'array', items: ref('Model') },
            cascade: {
              description: 'null: every model screens every photo and any may flag it. Otherwise the stages in order; a photo whose highest trade-relevant score at a stage is in [from, below) goes on to the next, and the last stage that ran decides alone (mode off: every stage runs, the last decides; first: the first stage alone)',
              oneOf: [{ type: 'null' }, {
                type: 'object', additionalProperties: false, required: ['mode', 'stages'],
                properties: {
                  mode: { enum: ['on', 'off', 'first'] },
                  stages: {
                    type: 'array', minItems: 2,
                    items: {
                      type: 'object', additionalProperties: false, required: ['model', 'escalate'],
                      properties: {
                        model: { type: 'string' },
                        escalate: { oneOf: [{ type: 'null' }, { type: 'object', additionalProperties: false, required: ['from', 'below'], properties: { from: { type: 'number' }, below: { type: 'number' } } }] },
                      },
                    },
                  },
                },
              }],
            },
          },
        },
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
          ...security,
          requestBody: {
            required: true,
            content: {
              'multipart/form-data': { schema: { type: 'object', additionalProperties: false, required: ['image'], properties: { image: binary } } },
              'image/*': { schema: binary },
              'application/json': { schema: ref('ScreenJson') },
            },
          },
          responses: { '200': json(ref('ScreenResult'), 'The decision'), ...errors('post /v1/screen') },
        },
      },
      '/v1/screen/batch': {
        post: {
          summary: `Screen 1 to ${config.server.batchLimit} photos; each item succeeds or fails on its own`,
          ...security,
          requestBody: {
            required: true,
            content: {
              'multipart/form-data': { schema: { type: 'object', additionalProperties: false, required: ['images'], properties: { images: { type: 'array', ...batchItems, items: { ...binary, minLength: 0, description: 'an empty or unreadable file is that item\'s error' } } } } },
              'application/json': { schema: { type: 'object', additionalProperties: false, required: ['items'], properties: { items: { type: 'array', ...batchItems, items: ref('BatchItem') } } } },
            },
          },
          responses: { '200': json(ref('BatchResult'), 'One result or error per item'), ...errors('post /v1/screen/batch') },
        },
      },
      '/v1/models': { get: { summary: 'Models being served', ...security, responses: { '200': json(ref('Models')), ...errors('get /v1/models') } } },
      '/admin/reload': {
        post: {
          summary: 'Reload every model directory, then the shadow candidate; the new models warm up before taking traffic (also on SIGHUP)',
          ...security,
          responses: { '200': json(ref('Models')), ...errors('post /admin/reload', { '500': errorResponse('RELOAD_FAILED: the previous models keep serving') }) },
        },
      },
      '/admin/shadow': {
        get: {
          summary: 'The shadow candidate and its agreement with the primary model since activation',
          ...security,
          responses: { '200': json(ref('ShadowStatus')), ...errors('get /admin/shadow') },
        },
        put: {
          summary: 'Load a candidate into shadow (replacing the current one, which is disposed); it never affects decisions',
          ...security,
          requestBody: { required: true, content: { 'application/json': { schema: ref('ShadowRequest') } } },
          responses: {
            '200': json(ref('ShadowStatus'), 'The new candidate is warmed up and sees traffic'),
            ...errors('put /admin/shadow', {
              '400': errorResponse('SHADOW_DIR_FORBIDDEN (outside the models root and shadow.allowedRoots) or REQUEST_INVALID_JSON'),
              '415': errorResponse('Not application/json'),
              '422': errorResponse('SHADOW_LOAD_FAILED; error.cause has the engine\'s code (MODEL_CHECKSUM_MISMATCH, MODEL_FILE_MISSING, …). The previous candidate stays'),
            }),
          },
        },
        delete: {
          summary: 'Stop shadowing and dispose the candidate',
          ...security,
          responses: { '200': json(ref('ShadowStatus')), ...errors('delete /admin/shadow') },
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
  };
}
