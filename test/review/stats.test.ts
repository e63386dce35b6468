import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { barChart, horizontalBarChart, niceScale, stackedBarChart } from '../../src/review/charts.js';
import { openReviewDb, type ReviewDb } from '../../src/review/db.js';
import { formatDuration, renderStatsPage } from '../../src/review/stats-page.js';
import { percentile, reviewStats } from '../../src/review/stats.js';

const NOW = new Date('2024-03-15T12:00:00.000Z');
const dir = mkdtempSync(path.join(os.tmpdir(), 'review-stats-'));
let seq = 0;

function freshDb(): ReviewDb {
  return openReviewDb(path.join(dir, `stats-${++seq}.db`));
}

interface ItemRow { id: number; flaggedAt: string; status: 'pending' | 'confirmed' | 'rejected' | 'escalated'; labels: string[]; firstDecidedAt?: string }

function insertItem(db: ReviewDb, it: ItemRow): void {
  db.prepare(`INSERT INTO items (id, decision_id, input_id, flagged_at, received_at, platform, listing_url, image_sha256, top_label, top_score, message, status, first_decided_at)
    VALUES (?, ?, ?, ?, ?, 'marketplace', 'https://example.test/l', ?, ?, 0.9, '{}', ?, ?)`)
    .run(it.id, `dec-${it.id}`, `in-${it.id}`, it.flaggedAt, it.flaggedAt, `sha-${it.id}`, it.labels[0]!, it.status, it.firstDecidedAt ?? null);
  for (const label of it.labels) db.prepare("INSERT INTO reasons (item_id, classifier, label, score, threshold) VALUES (?, 'wildlife-v1', ?, 0.9, 0.5)").run(it.id, label);
}

function insertDecision(db: ReviewDb, d: { id: number; itemId: number; verdict: string; analyst: string; decidedAt: string }): void {
  db.prepare(`INSERT INTO decisions (id, review_id, item_id, verdict, label, analyst, role, decided_at, message)
    VALUES (?, ?, ?, ?, 'ivory', ?, 'analyst', ?, '{}')`).run(d.id, `rev-${d.id}`, d.itemId, d.verdict, d.analyst, d.decidedAt);
}

/** The scenario the exact numbers below are worked out from; window = 2024-03-09 … 2024-03-15 (days: 7). */
function seed(db: ReviewDb): void {
  const items: ItemRow[] = [
    { id: 1, flaggedAt: '2024-03-15T11:30:00.000Z', status: 'pending', labels: ['ivory'] }, // 30 min old
    { id: 2, flaggedAt: '2024-03-15T09:00:00.000Z', status: 'pending', labels: ['pangolin'] }, // 3 h
    { id: 3, flaggedAt: '2024-03-14T20:00:00.000Z', status: 'pending', labels: ['rhino-horn'] }, // 16 h
    { id: 4, flaggedAt: '2024-03-13T12:00:00.000Z', status: 'pending', labels: ['ivory'] }, // 48 h
    { id: 5, flaggedAt: '2024-03-01T00:00:00.000Z', status: 'pending', labels: ['ivory'] }, // 14.5 d, before the window
    { id: 6, flaggedAt: '2024-03-10T10:00:00.000Z', status: 'confirmed', labels: ['ivory', 'ivory', 'pangolin'], firstDecidedAt: '2024-03-10T10:03:00.000Z' }, // 180 s
    { id: 7, flaggedAt: '2024-03-10T11:00:00.000Z', status: 'rejected', labels: ['ivory'], firstDecidedAt: '2024-03-10T12:00:00.000Z' }, // 3600 s
    { id: 8, flaggedAt: '2024-03-12T00:00:00.000Z', status: 'confirmed', labels: ['pangolin'], firstDecidedAt: '2024-03-12T00:10:00.000Z' }, // 600 s
    { id: 9, flaggedAt: '2024-03-12T06:00:00.000Z', status: 'escalated', labels: ['tiger-bone'], firstDecidedAt: '2024-03-12T16:00:00.000Z' }, // 36000 s
    { id: 10, flaggedAt: '2024-03-14T00:00:00.000Z', status: 'confirmed', labels: ['ivory'], firstDecidedAt: '2024-03-15T06:00:00.000Z' }, // 108000 s
    { id: 11, flaggedAt: '2024-03-05T00:00:00.000Z', status: 'rejected', labels: ['ivory'], firstDecidedAt: '2024-03-05T00:01:00.000Z' }, // all before the window
    { id: 12, flaggedAt: '2024-03-08T00:00:00.000Z', status: 'confirmed', labels: ['ivory'], firstDecidedAt: '2024-03-09T00:00:00.000Z' }, // decided on the window's first instant, 86400 s
    { id: 13, flaggedAt: '2024-03-15T11:00:00.000Z', status: 'pending', labels: ['pangolin'] }, // exactly 1 h old
  ];
  for (const it of items) insertItem(db, it);
  // Ids with gaps, in time order as the console appends them.
  const decisions = [
    { id: 1, itemId: 11, verdict: 'rejected', analyst: 'alice', decidedAt: '2024-03-05T00:01:00.000Z' },
    { id: 5, itemId: 12, verdict: 'confirmed', analyst: 'carol', decidedAt: '2024-03-09T00:00:00.000Z' },
    { id: 6, itemId: 6, verdict: 'confirmed', analyst: 'alice', decidedAt: '2024-03-10T10:03:00.000Z' },
    { id: 7, itemId: 7, verdict: 'confirmed', analyst: 'alice', decidedAt: '2024-03-10T12:00:00.000Z' },
    { id: 20, itemId: 7, verdict: 'reopened', analyst: 'bob', decidedAt: '2024-03-10T13:00:00.000Z' },
    { id: 21, itemId: 7, verdict: 'rejected', analyst: 'alice', decidedAt: '2024-03-10T13:30:00.000Z' },
    { id: 22, itemId: 8, verdict: 'confirmed', analyst: 'carol', decidedAt: '2024-03-12T00:10:00.000Z' },
    { id: 40, itemId: 9, verdict: 'escalated', analyst: 'alice', decidedAt: '2024-03-12T16:00:00.000Z' },
    { id: 41, itemId: 10, verdict: 'confirmed', analyst: 'carol', decidedAt: '2024-03-15T06:00:00.000Z' },
  ];
  for (const d of decisions) insertDecision(db, d);
}

function assertFiniteSvg(out: string): void {
  assert.doesNotMatch(out, /NaN|Infinity|undefined/);
  for (const m of out.matchAll(/ (?:width|height)="([^"]*)"/g)) assert.ok(Number(m[1]) >= 0, `negative size ${m[0]}`);
}

after(() => rmSync(dir, { recursive: true, force: true }));

describe('review stats queries', () => {
  let db: ReviewDb;
  before(() => {
    db = freshDb();
    seed(db);
  });
  after(() => db.close());

  test('flags per day cover every UTC day of the window, zero-filled, split by current status', () => {
    const s = reviewStats(db, { now: NOW, days: 7 });
    assert.deepEqual(s.window, { days: 7, from: '2024-03-09', to: '2024-03-15' });
    assert.deepEqual(s.flagsPerDay, [
      { day: '2024-03-09', flagged: 0, confirmed: 0, rejected: 0 },
      { day: '2024-03-10', flagged: 2, confirmed: 1, rejected: 1 },
      { day: '2024-03-11', flagged: 0, confirmed: 0, rejected: 0 },
      { day: '2024-03-12', flagged: 2, confirmed: 1, rejected: 0 },
      { day: '2024-03-13', flagged: 1, confirmed: 0, rejected: 0 },
      { day: '2024-03-14', flagged: 2, confirmed: 1, rejected: 0 },
      { day: '2024-03-15', flagged: 3, confirmed: 0, rejected: 0 },
    ]);
  });

  test('precision per label counts an item under each of its labels once, and is null when nothing is decided', () => {
    const s = reviewStats(db, { now: NOW, days: 7 });
    assert.deepEqual(s.perLabel, [
      { label: 'ivory', flagged: 5, decided: 3, confirmed: 2, rejected: 1, escalated: 0, pending: 2, precision: 2 / 3 },
      { label: 'pangolin', flagged: 4, decided: 2, confirmed: 2, rejected: 0, escalated: 0, pending: 2, precision: 1 },
      { label: 'rhino-horn', flagged: 1, decided: 0, confirmed: 0, rejected: 0, escalated: 0, pending: 1, precision: null },
      { label: 'tiger-bone', flagged: 1, decided: 0, confirmed: 0, rejected: 0, escalated: 1, pending: 0, precision: null },
    ]);
  });

  test('the backlog buckets pending items by age with exclusive upper bounds, whatever the window', () => {
    const s = reviewStats(db, { now: NOW, days: 7 });
    assert.deepEqual(s.backlog, {
      pending: 6,
      escalated: 1,
      byAge: [
        { bucket: '<1h', count: 1 },
        { bucket: '1–6h', count: 2 },
        { bucket: '6–24h', count: 1 },
        { bucket: '1–3d', count: 1 },
        { bucket: '>3d', count: 1 },
      ],
      oldestPendingAt: '2024-03-01T00:00:00.000Z',
    });
  });

  test('time to decision takes nearest-rank median and p90 over items first decided in the window', () => {
    const { timeToDecision } = reviewStats(db, { now: NOW, days: 7 });
    // 180, 600, 3600, 36000, 86400, 108000 s: item 7's reopen and second decision do not count again.
    assert.equal(timeToDecision.count, 6);
    assert.equal(timeToDecision.medianSeconds, 3600);
    assert.equal(timeToDecision.p90Seconds, 108000);
    assert.deepEqual(timeToDecision.histogram.map((b) => b.count), [1, 1, 1, 0, 1, 2]);
    assert.deepEqual(timeToDecision.histogram.map((b) => b.bucket), ['<5m', '5–30m', '30m–2h', '2–8h', '8–24h', '>1d']);
  });

  test('analysts and decisions today come from the audit log in the window, reopens included', () => {
    const s = reviewStats(db, { now: NOW, days: 7 });
    assert.deepEqual(s.analysts, [
      { analyst: 'alice', decisions: 4, confirmed: 2, rejected: 1, escalated: 1, reopened: 0 },
      { analyst: 'carol', decisions: 3, confirmed: 3, rejected: 0, escalated: 0, reopened: 0 },
      { analyst: 'bob', decisions: 1, confirmed: 0, rejected: 0, escalated: 0, reopened: 1 },
    ]);
    assert.equal(s.decisionsToday, 1);
    assert.equal(s.generatedAt, NOW.toISOString());
  });

  test('a wider window takes in the older decisions and items', () => {
    const s = reviewStats(db, { now: NOW, days: 30 });
    assert.equal(s.flagsPerDay.length, 30);
    assert.equal(s.flagsPerDay[0]!.day, '2024-02-15');
    assert.equal(s.analysts.find((a) => a.analyst === 'alice')!.decisions, 5);
    assert.equal(s.timeToDecision.count, 7);
    assert.equal(s.perLabel[0]!.flagged, 8); // ivory now includes items 5, 11 and 12
  });

  test('days defaults to 30 and is clamped to whole days between 1 and 366', () => {
    assert.equal(reviewStats(db, { now: NOW }).flagsPerDay.length, 30);
    assert.equal(reviewStats(db, { now: NOW, days: 0 }).window.days, 1);
    assert.equal(reviewStats(db, { now: NOW, days: 2.7 }).window.days, 2);
    assert.equal(reviewStats(db, { now: NOW, days: 10_000 }).window.days, 366);
    assert.equal(reviewStats(db, { now: NOW, days: Number.NaN }).window.days, 30);
  });
});

test('the window edge over many decisions is exact, as a scan would count it', () => {
  const db = freshDb();
  try {
    insertItem(db, { id: 1, flaggedAt: '2023-01-01T00:00:00.000Z', status: 'confirmed', labels: ['ivory'] });
    const start = Date.parse('2023-12-01T00:00:00.000Z');
    const stamps: string[] = [];
    db.transaction(() => {
      for (let i = 0; i < 520; i++) {
        const at = new Date(start + i * 5 * 3600_000 + 17_000).toISOString(); // every 5 h, ids with gaps
        stamps.push(at);
        insertDecision(db, { id: 3 * i + 2, itemId: 1, verdict: 'confirmed', analyst: 'alice', decidedAt: at });
      }
    })();
    for (const days of [1, 2, 7, 30, 90]) {
      const s = reviewStats(db, { now: NOW, days });
      const expected = stamps.filter((t) => t >= s.window.from && t < '2024-03-16').length;
      assert.equal(s.analysts[0]?.decisions ?? 0, expected, `days=${days}`);
    }
  } finally {
    db.close();
  }
});

test('an empty database gives zeros and nulls', () => {
  const db = freshDb();
  try {
    const s = reviewStats(db, { now: NOW });
    assert.equal(s.flagsPerDay.length, 30);
    assert.ok(s.flagsPerDay.every((d) => d.flagged === 0 && d.confirmed === 0 && d.rejected === 0));
    assert.equal(s.flagsPerDay.at(-1)!.day, '2024-03-15');
    assert.deepEqual(s.perLabel, []);
    assert.deepEqual(s.backlog, { pending: 0, escalated: 0, byAge: ['<1h', '1–6h', '6–24h', '1–3d', '>3d'].map((bucket) => ({ bucket, count: 0 })), oldestPendingAt: null });
    assert.deepEqual(s.timeToDecision, { count: 0, medianSeconds: null, p90Seconds: null, histogram: ['<5m', '5–30m', '30m–2h', '2–8h', '8–24h', '>1d'].map((bucket) => ({ bucket, count: 0 })) });
    assert.deepEqual(s.analysts, []);
    assert.equal(s.decisionsToday, 0);
  } finally {
    db.close();
  }
});

test('percentile is nearest-rank: an observed value, the lower middle for an even count', () => {
  assert.equal(percentile([], 50), null);
  assert.equal(percentile([7], 50), 7);
  assert.equal(percentile([7], 90), 7);
  assert.equal(percentile([1, 2, 3, 4], 50), 2);
  assert.equal(percentile([1, 2, 3, 4], 90), 4);
  const ten = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  assert.equal(percentile(ten, 90), 9);
  assert.equal(percentile(ten, 91), 10);
  assert.equal(percentile(ten, 0), 1);
  assert.equal(percentile(ten, 100), 10);
});

describe('stats charts', () => {
  test('a bar chart of all zeros has finite geometry, a titled role="img" and a fallback table', () => {
    const out = barChart({ id: 'ages', title: 'Backlog by age', unit: 'items', bars: ['<1h', '1–6h', '>3d'].map((label) => ({ label, value: 0 })) }).value;
    assertFiniteSvg(out);
    assert.match(out, /<svg [^>]*role="img"[^>]*aria-labelledby="ages-title"/);
    assert.match(out, /<title id="ages-title">Backlog by age<\/title>/);
    assert.match(out, /<desc id="ages-desc">3 bars, all zero\.<\/desc>/);
    assert.match(out, /<div class="visually-hidden"><table><caption>Backlog by age<\/caption>/);
    assert.match(out, /<th scope="row">1–6h<\/th><td>0<\/td>/);
  });

  test('charts with no bars say so instead of drawing NaN', () => {
    for (const out of [
      barChart({ id: 'a', title: 'A', bars: [] }).value,
      stackedBarChart({ id: 'b', title: 'B', bars: [], series: [{ key: 'x', name: 'X' }] }).value,
      horizontalBarChart({ id: 'c', title: 'C', bars: [] }).value,
    ]) {
      assertFiniteSvg(out);
      assert.match(out, /No data/);
      assert.match(out, /role="img"/);
    }
  });

  test('labels, titles, units and ids are escaped', () => {
    const evil = '<script>alert("x")</script>';
    const outs = [
      barChart({ id: 'x"><script>', title: evil, unit: evil, bars: [{ label: evil, value: 3, secondary: evil }] }).value,
      stackedBarChart({ id: 'y', title: evil, bars: [{ label: evil, values: [1, 2] }], series: [{ key: evil, name: evil }, { key: 'b', name: 'B' }] }).value,
      horizontalBarChart({ id: 'z', title: evil, bars: [{ label: evil, value: 0.5 }, { label: 'n', value: null }] }).value,
    ];
    for (const out of outs) {
      assert.ok(!out.includes('<script'), out);
      assert.match(out, /&lt;script&gt;/);
      assertFiniteSvg(out);
    }
    assert.match(outs[0]!, /aria-labelledby="x---script--title"/);
  });

  test('precision bars show percentages at the bar end and n/a without a bar for null', () => {
    const out = horizontalBarChart({ id: 'p', title: 'Precision', max: 1, valueFormat: (v) => `${Math.round(v * 100)} %`, bars: [{ label: 'ivory', value: 2 / 3 }, { label: 'rhino-horn', value: null }, { label: 'zero', value: 0 }] }).value;
    assertFiniteSvg(out);
    assert.match(out, />67 %<\/text>/);
    assert.match(out, /class="value na"[^>]*>n\/a/);
    assert.equal(out.match(/<rect class="bar"/g)?.length, 2);
    assert.match(out, /<desc id="p-desc">3 rows, 2 with a value\.<\/desc>/);
  });

  test('a crowded stacked chart thins x labels but keeps the newest, and renders the same twice', () => {
    const make = () => stackedBarChart({
      id: 'flags',
      title: 'Flags per day',
      series: [{ key: 'confirmed', name: 'Confirmed' }, { key: 'rejected', name: 'Rejected' }, { key: 'open', name: 'Open' }],
      bars: Array.from({ length: 30 }, (_, i) => ({ label: `2024-03-${String(i + 1).padStart(2, '0')}`, axisLabel: `03-${String(i + 1).padStart(2, '0')}`, values: [i % 3, 1, 0] })),
    }).value;
    const out = make();
    assert.equal(out, make());
    assertFiniteSvg(out);
    const labels = [...out.matchAll(/<text class="xlabel"[^>]*>([^<]*)</g)].map((m) => m[1]);
    assert.ok(labels.length > 3 && labels.length < 30, `${labels.length} labels`);
    assert.equal(labels.at(-1), '03-30');
    assert.equal(out.match(/<rect class="bar series-confirmed"/g)?.length, 30);
    assert.match(out, /<th scope="col">Total<\/th>/);
  });

  test('nice scales use 1/2/5 steps, integer steps for counts, and never a zero maximum', () => {
    assert.deepEqual(niceScale(0, true, 4), { max: 1, ticks: [0, 1] });
    assert.deepEqual(niceScale(7, true, 4), { max: 8, ticks: [0, 2, 4, 6, 8] });
    assert.deepEqual(niceScale(1, false, 4), { max: 1, ticks: [0, 0.5, 1] });
    assert.deepEqual(niceScale(0.3, false, 4), { max: 0.3, ticks: [0, 0.1, 0.2, 0.3] });
    assert.deepEqual(niceScale(2, true, 4), { max: 2, ticks: [0, 1, 2] });
  });
});

describe('stats page', () => {
  test('renders an empty database without NaN and with empty-state notes', () => {
    const db = freshDb();
    try {
      const out = renderStatsPage(reviewStats(db, { now: NOW })).value;
      assertFiniteSvg(out);
      assert.match(out, /No items flagged in this window\./);
      assert.match(out, /No decisions in this window\./);
      assert.match(out, /<dt>Oldest pending<\/dt><dd>none<\/dd>/);
      assert.match(out, /<dt>Median time to decision<\/dt><dd>—<\/dd>/);
      assert.equal(out.match(/role="img"/g)?.length, 4);
    } finally {
      db.close();
    }
  });

  test('renders headline numbers, four charts and the label and analyst tables, escaping labels', () => {
    const db = freshDb();
    try {
      seed(db);
      insertItem(db, { id: 99, flaggedAt: '2024-03-15T10:00:00.000Z', status: 'pending', labels: ['<script>x</script>'] });
      const out = renderStatsPage(reviewStats(db, { now: NOW, days: 7 })).value;
      assertFiniteSvg(out);
      assert.ok(!out.includes('<script'));
      assert.match(out, /&lt;script&gt;x&lt;\/script&gt;/);
      assert.match(out, /<dt>Pending<\/dt><dd>7<\/dd>/);
      assert.match(out, /<dt>Escalated<\/dt><dd>1<\/dd>/);
      assert.match(out, /<dt>Oldest pending<\/dt><dd><time datetime="2024-03-01T00:00:00.000Z">14.5 d<\/time><\/dd>/);
      assert.match(out, /<dt>Decisions today<\/dt><dd>1<\/dd>/);
      assert.match(out, /<dd>1 h <small>p90 1.3 d<\/small><\/dd>/);
      assert.match(out, /<tr><th scope="row">ivory<\/th><td class="num">5<\/td><td class="num">2<\/td><td class="num">0<\/td><td class="num">2<\/td><td class="num">1<\/td><td class="num">67 %<\/td><\/tr>/);
      assert.match(out, /<th scope="row">rhino-horn<\/th>(<td class="num">[^<]*<\/td>){5}<td class="num">n\/a<\/td>/);
      assert.match(out, /<tr><th scope="row">alice<\/th><td class="num">4<\/td>/);
      for (const id of ['chart-flags-per-day', 'chart-precision', 'chart-backlog-age', 'chart-time-to-decision']) assert.match(out, new RegExp(`aria-labelledby="${id}-title"`));
      assert.match(out, /<h2 id="stats-precision">/);
    } finally {
      db.close();
    }
  });

  test('durations read as seconds, minutes, hours or days', () => {
    assert.equal(formatDuration(null), '—');
    assert.equal(formatDuration(42.4), '42 s');
    assert.equal(formatDuration(600), '10 min');
    assert.equal(formatDuration(5400), '1.5 h');
    assert.equal(formatDuration(86_400 * 14.5), '14.5 d');
    assert.equal(formatDuration(-5), '0 s');
  });
});
