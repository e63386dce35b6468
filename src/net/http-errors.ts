/**
 * What express, body-parser, multer and busboy throw, mapped onto the error catalogue: shared by
 * every HTTP application (the screening API and the review console).
 */
import { AppError, isAppError, type ErrorCode } from '../errors.js';

/**
 * Every code multer 2.x raises (lib/multer-error.js). Some need a limit this app sets (fieldNameSize,
 * fieldNestingDepth, fieldArrayIndexLimit), LIMIT_PART_COUNT cannot fire before the file or field
 * count does, STREAM_DESTROYED comes from disk storage only: they are mapped all the same, so a
 * multer upgrade or a limit change cannot turn a client's mistake into a 500.
 */
const MULTER_CODES: Record<string, ErrorCode> = {
  LIMIT_FILE_SIZE: 'IMAGE_TOO_LARGE',
  LIMIT_FILE_COUNT: 'BATCH_TOO_LARGE',
  LIMIT_UNEXPECTED_FILE: 'REQUEST_MISSING_IMAGE',
  LIMIT_PART_COUNT: 'REQUEST_MALFORMED_MULTIPART',
  LIMIT_FIELD_COUNT: 'REQUEST_MALFORMED_MULTIPART',
  LIMIT_FIELD_KEY: 'REQUEST_MALFORMED_MULTIPART',
  LIMIT_FIELD_VALUE: 'REQUEST_MALFORMED_MULTIPART',
  MISSING_FIELD_NAME: 'REQUEST_MALFORMED_MULTIPART',
  LIMIT_FIELD_NESTING: 'REQUEST_MALFORMED_MULTIPART',
  LIMIT_FIELD_ARRAY_INDEX: 'REQUEST_MALFORMED_MULTIPART',
  INVALID_FIELD_NAME: 'REQUEST_MALFORMED_MULTIPART',
  STREAM_DESTROYED: 'REQUEST_ABORTED',
};

/**
 * busboy 1.x raises plain Errors, told apart by message only (lib/index.js, lib/types/*.js), and
 * multer adds its own for a client that goes away mid-body.
 */
const BUSBOY_MESSAGES: Record<string, ErrorCode> = {
  'Malformed part header': 'REQUEST_MALFORMED_MULTIPART',
  'Unexpected end of form': 'REQUEST_MALFORMED_MULTIPART',
  'Unexpected end of file': 'REQUEST_MALFORMED_MULTIPART',
  'Multipart: Boundary not found': 'REQUEST_MALFORMED_MULTIPART',
  'Malformed content type': 'REQUEST_MALFORMED_MULTIPART',
  'Malformed urlencoded form': 'REQUEST_MALFORMED_MULTIPART',
  'Missing Content-Type': 'REQUEST_UNSUPPORTED_MEDIA_TYPE',
  'Request aborted': 'REQUEST_ABORTED',
  'Request closed': 'REQUEST_ABORTED',
  'Request error': 'REQUEST_ABORTED',
};

/** body-parser (express.raw / express.json) error types that are the client's doing. */
const BODY_PARSER_TYPES: Record<string, ErrorCode> = {
  'entity.too.large': 'REQUEST_BODY_TOO_LARGE',
  'entity.parse.failed': 'REQUEST_INVALID_JSON',
  'encoding.unsupported': 'REQUEST_UNSUPPORTED_MEDIA_TYPE',
  'charset.unsupported': 'REQUEST_UNSUPPORTED_MEDIA_TYPE',
  'request.aborted': 'REQUEST_ABORTED',
  // The stream ended before Content-Length bytes: the client went away or lied about the length.
  'request.size.invalid': 'REQUEST_ABORTED',
};

/** Maps body-parser, multer, busboy and JSON errors onto catalogue codes. */
export function toAppError(err: unknown): AppError {
  if (isAppError(err)) return err;
  const e = err as { type?: string; code?: string; status?: number; message?: string; field?: string };
  if (e.type && BODY_PARSER_TYPES[e.type]) return new AppError(BODY_PARSER_TYPES[e.type]!, undefined, { cause: err });
  if (e.code && MULTER_CODES[e.code]) {
    const detail = e.code === 'LIMIT_UNEXPECTED_FILE' ? `Unexpected file field "${e.field ?? ''}".` : e.message;
    return new AppError(MULTER_CODES[e.code]!, detail, { cause: err });
  }
  const message = e.message ?? '';
  const unsupportedType = /^Unsupported content type: (.*)$/.exec(message);
  // The catalogue message already says the type is unsupported; the detail only names it.
  if (unsupportedType) return new AppError('REQUEST_UNSUPPORTED_MEDIA_TYPE', `Got ${unsupportedType[1]!.slice(0, 200)}.`, { cause: err });
  const busboy = BUSBOY_MESSAGES[message];
  if (busboy) return new AppError(busboy, busboy === 'REQUEST_ABORTED' ? undefined : `${message}.`, { cause: err });
  if (e.status === 400) return new AppError('REQUEST_INVALID_JSON', undefined, { cause: err });
  return new AppError('INTERNAL', undefined, { cause: err });
}
