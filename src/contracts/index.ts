/**
 * The wire contracts of every Kafka topic, in one module: what is produced is built and checked
 * here, and what is consumed is parsed here, by the same code. The screening pipeline, the review
 * console's feed and the labels consumer all import from this module and from nowhere else.
 *
 * | topic | contract | producer → consumer |
 * |---|---|---|
 * | images.crawled | crawled.ts | crawlers → screening pipeline |
 * | images.screened, images.flagged | decision.ts | screening pipeline → platforms, review console |
 * | images.dlq | dead-letter.ts | every consumer → operators |
 * | images.review-decisions | review-decision.ts | review console → platforms, labels consumer |
 *
 * Beside the topics, the unlabelled pool directory (pool.ts): screening service → SSLD training.
 */
export * from './json.js';
export * from './crawled.js';
export * from './decision.js';
export * from './dead-letter.js';
export * from './review-decision.js';
export * from './pool.js';
