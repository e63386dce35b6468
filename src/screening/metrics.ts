/**
 * The screening service's metrics (npm start): fed only by events the service, the HTTP admission
 * and the Kafka pipeline emit. One registry per service instance, so tests can run several.
 */
import client from 'prom-client';
import { LATENCY_BUCKETS, processRegistry } from '../metrics.js';
import type { ScreeningService } from './service.js';
import { REJECTION_REASONS, type Admission } from './http/admission.js';
import type { KafkaPipeline } from './kafka/pipeline.js';

export interface HttpObservation { route: string; method: string; status: number; seconds: number }

export interface Metrics {
  registry: client.Registry;
  observeHttp(o: HttpObservation): void;
  /** Transports report failures that never reached the screening service (bad requests, auth). */
  countError(code: string, source: string): void;
  /** Subscribes the Kafka pipeline's events (when Kafka is on). */
  attachKafka(pipeline: KafkaPipeline): void;
  /** The HTTP body budget: in-flight gauges read at scrape time, refusals counted by reason. */
  attachAdmission(admission: Admission): void;
}

const PIPELINE_STATES = ['starting', 'running', 'paused', 'stopping', 'stopped', 'failed'] as const;

export function createMetrics(service: ScreeningService): Metrics {
  const { registry, m } = processRegistry();

  const http = new client.Histogram({ name: m('http_request_duration_seconds'), help: 'HTTP request duration by route, method and status.', labelNames: ['route', 'method', 'status'], buckets: LATENCY_BUCKETS, registers: [registry] });
  const stage = new client.Histogram({ name: m('screening_stage_duration_seconds'), help: 'Time per screening stage: fetch, preprocess, queue (wait for a batch), inference, total.', labelNames: ['stage', 'source'], buckets: LATENCY_BUCKETS, registers: [registry] });
  const batchSize = new client.Histogram({ name: m('batch_size'), help: 'Images per inference batch.', labelNames: ['model'], buckets: [1, 2, 4, 8, 16, 32, 64], registers: [registry] });
  const batchSeconds = new client.Histogram({ name: m('batch_inference_duration_seconds'), help: 'ONNX Runtime time per batch.', labelNames: ['model'], buckets: LATENCY_BUCKETS, registers: [registry] });
  const screened = new client.Counter({ name: m('images_screened_total'), help: 'Images screened, by source and outcome.', labelNames: ['source', 'flagged'], registers: [registry] });
  const flagged = new client.Counter({ name: m('images_flagged_total'), help: 'Flag reasons, by source, classifier and label.', labelNames: ['source', 'classifier', 'label'], registers: [registry] });
  const errors = new client.Counter({ name: m('errors_total'), help: 'Failed requests by error code and source.', labelNames: ['code', 'source'], registers: [registry] });
  const cache = new client.Counter({ name: m('cache_requests_total'), help: 'Dedupe cache look-ups by result: hit (same sha256), near (pHash within cache.nearDistance, another photo\'s decision), miss.', labelNames: ['result'], registers: [registry] });
  const nearDistance = new client.Histogram({ name: m('cache_near_distance'), help: 'pHash bits between a photo answered as a near-duplicate and the photo whose decision answered it.', buckets: [0, 1, 2, 3, 4, 6, 8, 10, 12, 16], registers: [registry] });
  const cascadeStage = new client.Histogram({ name: m('cascade_stage_duration_seconds'), help: 'Per cascade stage that ran on a fresh photo: its preprocessing, queue wait and inference.', labelNames: ['model', 'stage'], buckets: LATENCY_BUCKETS, registers: [registry] });
  const cascadeRuns = new client.Counter({ name: m('cascade_stage_runs_total'), help: 'Cascade stages run on fresh photos, by model and outcome (escalated = passed on, decided). Escalated share of stage 0: escalated / (escalated + decided).', labelNames: ['model', 'stage', 'outcome'], registers: [registry] });
  const modelInfo = new client.Gauge({ name: m('model_info'), help: 'Models being served (value 1), by name, version and generation.', labelNames: ['name', 'version', 'generation'], registers: [registry] });
  const reloadFailures = new client.Counter({ name: m('model_reload_failures_total'), help: 'Failed model reloads.', registers: [registry] });
  const poolSamples = new client.Counter({ name: m('pool_samples_total'), help: 'Photos sampled for the unlabeled pool, by outcome (stored, duplicate, full, dropped, failed).', labelNames: ['outcome'], registers: [registry] });
  const poolImages = new client.Gauge({ name: m('pool_images'), help: 'Images in the unlabeled pool directory.', registers: [registry] });
  const shadowRequests = new client.Counter({ name: m('shadow_requests_total'), help: 'Fresh decisions offered to the shadow candidate, by outcome (compared, dropped, failed, skipped = not sampled).', labelNames: ['outcome'], registers: [registry] });
  const shadowComparisons = new client.Counter({ name: m('shadow_comparisons_total'), help: 'Shadow candidate vs primary: who flagged (both, primary_only, candidate_only, neither) and whether top-1 labels agree.', labelNames: ['candidate', 'flag', 'top1'], registers: [registry] });
  const shadowDelta = new client.Histogram({ name: m('shadow_score_delta'), help: '|candidate − primary| of the highest trade-relevant score per compared photo.', labelNames: ['candidate'], buckets: [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1], registers: [registry] });
  const shadowInfo = new client.Gauge({ name: m('shadow_candidate_info'), help: 'The shadow candidate (value 1), by name, version and sha256 of model.onnx.', labelNames: ['name', 'version', 'sha256'], registers: [registry] });
  new client.Gauge({
    name: m('queue_depth'), help: 'Requests waiting for a batch, by lane.', labelNames: ['lane'], registers: [registry],
    collect() {
      if (!service.ready()) return;
      const depth = service.queueDepth();
      this.set({ lane: 'interactive' }, depth.interactive);
      this.set({ lane: 'bulk' }, depth.bulk);
    },
  });

  service.on('screened', ({ source, result }) => {
    screened.inc({ source, flagged: String(result.flagged) });
    for (const r of result.reasons) flagged.inc({ source, classifier: r.classifier, label: r.label });
    const t = result.timings;
    // A cache hit still fetched the URL; it skipped only the model stages.
    if (t.fetchMs > 0) stage.observe({ stage: 'fetch', source }, t.fetchMs / 1000);
    if (!result.cached) {
      stage.observe({ stage: 'preprocess', source }, t.preprocessMs / 1000);
      stage.observe({ stage: 'queue', source }, t.queueMs / 1000);
      stage.observe({ stage: 'inference', source }, t.inferenceMs / 1000);
    }
    stage.observe({ stage: 'total', source }, result.timings.totalMs / 1000);
  });
  service.on('stage', ({ model, index, ms, escalated }) => {
    cascadeStage.observe({ model, stage: String(index) }, ms / 1000);
    cascadeRuns.inc({ model, stage: String(index), outcome: escalated ? 'escalated' : 'decided' });
  });
  service.on('failed', ({ source, code }) => errors.inc({ code, source }));
  service.on('cache', ({ result, distance }) => {
    cache.inc({ result });
    if (distance !== undefined) nearDistance.observe(distance);
  });
  service.on('batch', (e) => {
    batchSize.observe({ model: e.model }, e.size);
    batchSeconds.observe({ model: e.model }, e.executeMs / 1000);
  });
  const showModels = (id: number, models: Array<{ name: string; version: string }>) => {
    modelInfo.reset();
    for (const model of models) modelInfo.set({ name: model.name, version: model.version, generation: String(id) }, 1);
  };
  service.on('models', ({ id, models }) => showModels(id, models));
  // The first generation loaded before these metrics existed.
  const loaded = service.models();
  if (loaded.length) showModels(loaded[0]!.generation, loaded);
  service.on('reloadFailed', () => reloadFailures.inc());

  service.on('poolSample', ({ outcome, images }) => {
    poolSamples.inc({ outcome });
    poolImages.set(images);
  });
  poolImages.set(service.poolStatus()?.images ?? 0);
  service.on('shadowRequest', ({ outcome }) => shadowRequests.inc({ outcome }));
  service.on('shadowComparison', ({ candidate, flag, top1, scoreDelta }) => {
    shadowComparisons.inc({ candidate, flag, top1 });
    shadowDelta.observe({ candidate }, scoreDelta);
  });
  const showCandidate = (c: { name: string; version: string; sha256: string } | null) => {
    shadowInfo.reset();
    if (c) shadowInfo.set({ name: c.name, version: c.version, sha256: c.sha256 }, 1);
  };
  service.on('shadowCandidate', ({ candidate }) => showCandidate(candidate));
  // A candidate from the config was activated before these metrics existed.
  showCandidate(service.shadowStatus().candidate);

  const attachKafka = (pipeline: KafkaPipeline) => {
    const messages = new client.Counter({ name: m('kafka_messages_total'), help: 'Input messages by outcome (screened, flagged, dead_lettered, retried) and error code.', labelNames: ['outcome', 'code'], registers: [registry] });
    const lag = new client.Gauge({ name: m('kafka_consumer_lag'), help: 'Messages not yet committed, per input partition.', labelNames: ['topic', 'partition'], registers: [registry] });
    const crawlToDecision = new client.Histogram({ name: m('kafka_crawl_to_decision_seconds'), help: 'From crawledAt to the decision being produced.', buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600], registers: [registry] });
    const clientErrors = new client.Counter({ name: m('kafka_client_errors_total'), help: 'Kafka client errors by kind.', labelNames: ['kind'], registers: [registry] });
    const omitted = new client.Counter({ name: m('kafka_fields_omitted_total'), help: 'Pass-through fields (meta, image.base64) left out of output records to keep them under kafka.maxRecordBytes, by topic and field.', labelNames: ['topic', 'field'], registers: [registry] });
    const state = new client.Gauge({ name: m('kafka_pipeline_state'), help: 'Kafka pipeline state (1 for the current one).', labelNames: ['state'], registers: [registry] });
    const showState = (current: string) => PIPELINE_STATES.forEach((s) => state.set({ state: s }, s === current ? 1 : 0));
    showState(pipeline.state());
    pipeline.on('message', ({ outcome, code }) => messages.inc({ outcome, code: code ?? '' }));
    pipeline.on('lag', (e) => lag.set({ topic: e.topic, partition: String(e.partition) }, e.lag));
    pipeline.on('decision', ({ crawlToDecisionMs }) => {
      if (crawlToDecisionMs !== null && crawlToDecisionMs >= 0) crawlToDecision.observe(crawlToDecisionMs / 1000);
    });
    pipeline.on('clientError', ({ kind }) => clientErrors.inc({ kind }));
    pipeline.on('omitted', (e) => e.omitted.forEach((o) => omitted.inc({ topic: e.topic, field: o.field })));
    pipeline.on('state', (e) => showState(e.state));
  };

  const attachAdmission = (admission: Admission) => {
    new client.Gauge({
      name: m('http_inflight_body_bytes'), help: 'Body bytes reserved by HTTP requests being read or screened (a chunked body reserves server.bodyLimitBytes).', registers: [registry],
      collect() { this.set(admission.inFlight().bodyBytes); },
    });
    new client.Gauge({
      name: m('http_inflight_requests'), help: 'HTTP requests with a body being read or screened.', registers: [registry],
      collect() { this.set(admission.inFlight().requests); },
    });
    const rejections = new client.Counter({ name: m('http_admission_rejections_total'), help: 'HTTP requests refused before their body was read, by reason (body_bytes or requests: 503 QUEUE_FULL; too_large: 413).', labelNames: ['reason'], registers: [registry] });
    for (const reason of REJECTION_REASONS) rejections.inc({ reason }, 0);
    admission.on('rejected', ({ reason }) => rejections.inc({ reason }));
  };

  return {
    registry,
    attachKafka,
    attachAdmission,
    observeHttp: (o) => http.observe({ route: o.route, method: o.method, status: String(o.status) }, o.seconds),
    countError: (code, source) => errors.inc({ code, source }),
  };
}
