/**
 * The one error catalogue. Every failure a client, an operator or a training run can see has a
 * stable CODE here; HTTP status and retriability come from the catalogue, never from call sites.
 */
export const ERROR_CATALOGUE = {
  // Images
  IMAGE_EMPTY: { status: 400, retriable: false, message: 'The image is empty (0 bytes).' },
  IMAGE_TOO_LARGE: { status: 413, retriable: false, message: 'The image is larger than the byte limit.' },
  IMAGE_TOO_MANY_PIXELS: { status: 422, retriable: false, message: 'The image has more pixels than the limit.' },
  IMAGE_UNSUPPORTED_FORMAT: { status: 415, retriable: false, message: 'The bytes are not an image in a supported format (JPEG, PNG, WebP, GIF, TIFF).' },
  IMAGE_CORRUPT: { status: 422, retriable: false, message: 'The image could not be decoded: it is truncated or corrupt.' },
  IMAGE_TOO_SMALL: { status: 422, retriable: false, message: 'The image is too small to classify.' },
  // Remote images (the SSRF-guarded fetcher)
  URL_INVALID: { status: 400, retriable: false, message: 'The image URL is not a valid absolute URL.' },
  URL_SCHEME_NOT_ALLOWED: { status: 400, retriable: false, message: 'Only http and https image URLs are accepted.' },
  URL_HOST_FORBIDDEN: { status: 403, retriable: false, message: 'The image URL points to a loopback, private, link-local or metadata address.' },
  FETCH_DNS_FAILED: { status: 502, retriable: true, message: "The image URL's host name could not be resolved." },
  FETCH_TIMEOUT: { status: 504, retriable: true, message: 'Fetching the image timed out.' },
  FETCH_FAILED: { status: 502, retriable: true, message: 'Fetching the image failed.' },
  FETCH_HTTP_STATUS: { status: 502, retriable: false, message: 'The image host answered with an error status.' },
  FETCH_TOO_LARGE: { status: 413, retriable: false, message: 'The remote image is larger than the byte limit.' },
  FETCH_TOO_MANY_REDIRECTS: { status: 502, retriable: false, message: 'The image URL redirected too many times.' },
  FETCH_NOT_IMAGE: { status: 415, retriable: false, message: 'The URL did not return image bytes.' },
  // Batching and capacity
  QUEUE_FULL: { status: 503, retriable: true, message: 'The screening queue is full; retry after the indicated delay.' },
  DEADLINE_EXCEEDED: { status: 504, retriable: true, message: "The request's deadline passed before it could be screened." },
  SHUTTING_DOWN: { status: 503, retriable: true, message: 'The service is shutting down.' },
  // HTTP requests
  REQUEST_MISSING_IMAGE: { status: 400, retriable: false, message: 'No image in the request: send multipart field "image", a raw image/* body, or JSON {"url"} / {"imageBase64"}.' },
  REQUEST_INVALID_JSON: { status: 400, retriable: false, message: 'The request body is not valid JSON of the documented shape.' },
  REQUEST_MALFORMED_MULTIPART: { status: 400, retriable: false, message: 'The multipart body is malformed.' },
  REQUEST_UNSUPPORTED_MEDIA_TYPE: { status: 415, retriable: false, message: 'Unsupported Content-Type for this route.' },
  REQUEST_BODY_TOO_LARGE: { status: 413, retriable: false, message: 'The request body is larger than the limit.' },
  BATCH_TOO_LARGE: { status: 413, retriable: false, message: 'Too many images in one batch request.' },
  BATCH_EMPTY: { status: 400, retriable: false, message: 'The batch request holds no images.' },
  UNAUTHORIZED: { status: 401, retriable: false, message: 'A valid API key is required (Authorization: Bearer <key> or X-API-Key).' },
  NOT_FOUND: { status: 404, retriable: false, message: 'No such route.' },
  METHOD_NOT_ALLOWED: { status: 405, retriable: false, message: 'The route does not support this method; the Allow header lists those it does.' },
  REQUEST_ABORTED: { status: 400, retriable: true, message: 'The client closed the connection before the whole body arrived.' },
  RELOAD_FAILED: { status: 500, retriable: true, message: 'The model reload failed; the previous models keep serving.' },
  SHADOW_DIR_FORBIDDEN: { status: 400, retriable: false, message: 'The candidate model directory is outside the models root and shadow.allowedRoots.' },
  SHADOW_LOAD_FAILED: { status: 422, retriable: false, message: 'The candidate model could not be loaded; the previous candidate, if any, stays in shadow.' },
  INPUT_NOT_READABLE: { status: 400, retriable: false, message: 'The input file could not be read.' },
  INTERNAL: { status: 500, retriable: true, message: 'Internal error.' },
  // Kafka messages (dead-letter codes in images.dlq; the status is what an HTTP wrapper would answer)
  MESSAGE_INVALID: { status: 400, retriable: false, message: "The message is not UTF-8 JSON of its topic's schema, or is nested too deep." },
  RECORD_TOO_LARGE: { status: 413, retriable: false, message: 'An output record for this message does not fit the record size limit, even without its pass-through fields.' },
  OUTPUT_INVALID: { status: 500, retriable: false, message: "The record built for this message breaks its own wire contract (a bug); the input is dead-lettered instead." },
  KAFKA_UNAVAILABLE: { status: 503, retriable: true, message: 'The Kafka brokers could not be reached, or did not accept the message.' },
  // Models
  MODEL_MANIFEST_INVALID: { status: 500, retriable: false, message: 'A model directory has an invalid model.json.' },
  MODEL_FILE_MISSING: { status: 500, retriable: false, message: 'A model directory lacks model.onnx or model.json.' },
  MODEL_CHECKSUM_MISMATCH: { status: 500, retriable: false, message: "model.onnx does not match the sha256 in model.json." },
  MODEL_LOAD_FAILED: { status: 500, retriable: false, message: 'ONNX Runtime could not load the model.' },
  CASCADE_INVALID: { status: 500, retriable: false, message: 'The cascade configuration does not match the loaded models (cascade.stages).' },
  MODEL_SHAPE_MISMATCH: { status: 500, retriable: false, message: "The model's inputs or outputs do not match its manifest." },
  INFERENCE_FAILED: { status: 500, retriable: true, message: 'Inference failed.' },
  // Training toolchain
  TRAIN_CONFIG_INVALID: { status: 400, retriable: false, message: 'The training config is invalid.' },
  TRAIN_PYTHON_MISSING: { status: 500, retriable: false, message: 'The training Python environment is not set up: run `npm run setup:train`.' },
  TRAIN_FAILED: { status: 500, retriable: false, message: 'The training process failed.' },
  TRAIN_RESULT_INVALID: { status: 500, retriable: false, message: 'The training toolchain handed back a result of the wrong shape (is the venv older than the code? run npm run setup:train).' },
  TRAIN_INTERRUPTED: { status: 500, retriable: true, message: 'Training was interrupted; a checkpoint was saved, resume with --resume.' },
  DATASET_INVALID: { status: 400, retriable: false, message: 'The dataset could not be read.' },
  CLI_USAGE: { status: 400, retriable: false, message: 'Invalid command-line arguments.' },
  // SSLD and promotion
  SSLD_TEACHER_WEIGHTS_MISSING: { status: 400, retriable: false, message: "An online teacher (SSLD.distill.online) needs the teacher's Paddle weights (SSLD.teacher_weights or --teacher-weights), and the file is not there." },
  SSLD_LABELS_MISMATCH: { status: 400, retriable: false, message: "The labelled data has classes the teacher does not predict; the student learns the teacher's classes." },
  PROMOTION_REFUSED: { status: 409, retriable: false, message: 'The candidate did not beat the current model; pass --force to promote anyway.' },
  PROMOTION_FAILED: { status: 500, retriable: false, message: 'The promotion could not be completed; the current model was left in place.' },
  // Review console (npm run review)
  REVIEW_UNAUTHENTICATED: { status: 401, retriable: false, message: 'Sign in to the review console first.' },
  REVIEW_LOGIN_FAILED: { status: 401, retriable: false, message: 'Unknown username or wrong password.' },
  REVIEW_LOGIN_THROTTLED: { status: 429, retriable: true, message: 'Too many failed sign-ins; wait before trying again.' },
  REVIEW_CSRF_INVALID: { status: 403, retriable: false, message: 'The form is stale or came from another site (CSRF check failed); reload the page.' },
  REVIEW_FORBIDDEN: { status: 403, retriable: false, message: 'Only a lead may do this.' },
  REVIEW_ITEM_NOT_FOUND: { status: 404, retriable: false, message: 'No such review item.' },
  REVIEW_CONFLICT: { status: 409, retriable: false, message: 'Someone else decided this item since you loaded it; reload to see their decision.' },
  REVIEW_NOT_PENDING: { status: 409, retriable: false, message: 'This item is already decided; a lead can re-open it.' },
  REVIEW_NOTHING_TO_UNDO: { status: 409, retriable: false, message: 'You have no decision left to undo within the undo window; a lead can re-open older ones.' },
  REVIEW_DECISION_INVALID: { status: 400, retriable: false, message: 'The decision is invalid.' },
  REVIEW_FILTER_INVALID: { status: 400, retriable: false, message: 'A queue filter is invalid.' },
  REVIEW_PHOTO_UNAVAILABLE: { status: 404, retriable: true, message: 'The photo is not stored and could not be fetched.' },
  REVIEW_DB_FAILED: { status: 500, retriable: true, message: 'The review database could not be read or written.' },
} as const satisfies Record<string, { status: number; retriable: boolean; message: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retriable: boolean;
  readonly details: string | undefined;

  constructor(code: ErrorCode, details?: string, options?: { cause?: unknown }) {
    const entry = ERROR_CATALOGUE[code];
    super(details ? `${entry.message} ${details}` : entry.message, options);
    this.name = 'AppError';
    this.code = code;
    this.status = entry.status;
    this.retriable = entry.retriable;
    this.details = details;
  }
}

export function isAppError(err: unknown, code?: ErrorCode): err is AppError {
  return err instanceof AppError && (code === undefined || err.code === code);
}
