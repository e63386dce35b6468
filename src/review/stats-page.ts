/**
 * The body of /stats (the route wraps it in layout()). Everything is relative to `stats.generatedAt`,
 * not the wall clock, so the same stats always render the same page.
 */
import { barChart, formatNumber, formatPercent, horizontalBarChart, stackedBarChart } from './charts.js';
import { html, SafeHtml } from './html.js';
import type { ReviewStats } from './stats.js';

/** A short human duration: '45 s', '12 min', '3.5 h', '2.1 d'. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '—';
  const s = Math.max(0, seconds);
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86_400) return `${oneDecimal(s / 3600)} h`;
  return `${oneDecimal(s / 86_400)} d`;
}

function oneDecimal(v: number): string {
  return String(Math.round(v * 10) / 10);
}

export function renderStatsPage(stats: ReviewStats): SafeHtml {
  const { backlog, timeToDecision: ttd, window } = stats;
  const oldestAge = backlog.oldestPendingAt === null ? null : (Date.parse(stats.generatedAt) - Date.parse(backlog.oldestPendingAt)) / 1000;
  const span = `${window.from} to ${window.to}, UTC days`;

  const headline = html`<section class="stats-headline" aria-labelledby="stats-summary">
<h2 id="stats-summary" class="visually-hidden">Summary</h2>
<dl class="headline">
<div><dt>Pending</dt><dd>${formatNumber(backlog.pending)}</dd></div>
<div><dt>Escalated</dt><dd>${formatNumber(backlog.escalated)}</dd></div>
<div><dt>Oldest pending</dt><dd>${oldestAge === null ? 'none' : html`<time datetime="${backlog.oldestPendingAt}">${formatDuration(oldestAge)}</time>`}</dd></div>
<div><dt>Decisions today</dt><dd>${formatNumber(stats.decisionsToday)}</dd></div>
<div><dt>Median time to decision</dt><dd>${formatDuration(ttd.medianSeconds)}${ttd.p90Seconds === null ? '' : html` <small>p90 ${formatDuration(ttd.p90Seconds)}</small>`}</dd></div>
</dl></section>`;

  const flags = stackedBarChart({
    id: 'chart-flags-per-day',
    title: `Flags per day, ${span}, by current status`,
    unit: 'items',
    labelHeading: 'Day',
    series: [
      // The console's --confirm / --reject colours, so the chart matches the queue's badges.
      { key: 'confirmed', name: 'Confirmed', color: '#a3261b' },
      { key: 'rejected', name: 'Rejected', color: '#2f5f9e' },
      { key: 'open', name: 'Pending or escalated', color: '#c9d2ce' },
    ],
    bars: stats.flagsPerDay.map((d) => ({ label: d.day, axisLabel: d.day.slice(5), values: [d.confirmed, d.rejected, d.flagged - d.confirmed - d.rejected] })),
  });

  const precision = horizontalBarChart({
    id: 'chart-precision',
    title: 'Confirm rate (precision) per label',
    labelHeading: 'Label',
    max: 1,
    valueFormat: formatPercent,
    bars: stats.perLabel.map((l) => ({ label: l.label, value: l.precision, secondary: `${l.confirmed} of ${l.decided} decided` })),
  });

  const ages = barChart({
    id: 'chart-backlog-age',
    title: 'Pending items by time since flagged',
    unit: 'items',
    labelHeading: 'Age',
    bars: backlog.byAge.map((b) => ({ label: b.bucket, value: b.count })),
  });

  const durations = barChart({
    id: 'chart-time-to-decision',
    title: `Time from flag to first decision, decided ${span}`,
    unit: 'items',
    labelHeading: 'Time to decision',
    bars: ttd.histogram.map((b) => ({ label: b.bucket, value: b.count })),
  });

  return html`<h1>Stats</h1>
<p class="stats-window">Last ${window.days} ${window.days === 1 ? 'day' : 'days'}: <time datetime="${window.from}">${window.from}</time> to <time datetime="${window.to}">${window.to}</time> (UTC). Generated <time datetime="${stats.generatedAt}">${stats.generatedAt.slice(0, 16).replace('T', ' ')} UTC</time>.</p>
${headline}
<div class="stats-charts">
${chartSection('stats-flags', 'Flags per day', flags, 'Bars split by the item’s current status.')}
${chartSection('stats-precision', 'Confirm rate per label', precision, 'Confirmed ÷ (confirmed + rejected) over items flagged in the window; an item with several labels counts under each.')}
${chartSection('stats-backlog', 'Review backlog by age', ages, null)}
${chartSection('stats-ttd', 'Time to decision', durations, ttd.count === 0 ? 'No item got its first decision in the window.' : `${formatNumber(ttd.count)} items; median ${formatDuration(ttd.medianSeconds)}, p90 ${formatDuration(ttd.p90Seconds)} (nearest rank).`)}
</div>
${labelTable(stats)}
${analystTable(stats)}`;
}

function chartSection(id: string, heading: string, chart: SafeHtml, note: string | null): SafeHtml {
  return html`<section class="stats-chart" aria-labelledby="${id}"><h2 id="${id}">${heading}</h2>${chart}${note === null ? '' : html`<p class="chart-note">${note}</p>`}</section>`;
}

function labelTable(stats: ReviewStats): SafeHtml {
  const rows = stats.perLabel.map((l) => html`<tr><th scope="row">${l.label}</th>${[l.flagged, l.pending, l.escalated, l.confirmed, l.rejected].map(numCell)}<td class="num">${l.precision === null ? 'n/a' : formatPercent(l.precision)}</td></tr>`);
  return html`<section class="stats-table" aria-labelledby="stats-labels"><h2 id="stats-labels">Per label</h2>
${rows.length === 0 ? html`<p class="empty">No items flagged in this window.</p>` : html`<table class="data"><thead><tr><th scope="col">Label</th><th scope="col" class="num">Flagged</th><th scope="col" class="num">Pending</th><th scope="col" class="num">Escalated</th><th scope="col" class="num">Confirmed</th><th scope="col" class="num">Rejected</th><th scope="col" class="num">Precision</th></tr></thead>
<tbody>${rows}</tbody></table>`}</section>`;
}

function analystTable(stats: ReviewStats): SafeHtml {
  const rows = stats.analysts.map((a) => html`<tr><th scope="row">${a.analyst}</th>${[a.decisions, a.confirmed, a.rejected, a.escalated, a.reopened].map(numCell)}</tr>`);
  return html`<section class="stats-table" aria-labelledby="stats-analysts"><h2 id="stats-analysts">Per analyst</h2>
${rows.length === 0 ? html`<p class="empty">No decisions in this window.</p>` : html`<table class="data"><thead><tr><th scope="col">Analyst</th><th scope="col" class="num">Decisions</th><th scope="col" class="num">Confirmed</th><th scope="col" class="num">Rejected</th><th scope="col" class="num">Escalated</th><th scope="col" class="num">Reopened</th></tr></thead>
<tbody>${rows}</tbody></table>`}</section>`;
}

function numCell(n: number): SafeHtml {
  return html`<td class="num">${formatNumber(n)}</td>`;
}
