/**
 * Server-built SVG charts for the stats view. The console's CSP allows no script and no inline style,
 * so a chart is plain SVG: geometry and default colours as presentation attributes (which the CSP
 * does not govern, so the chart reads without the stylesheet) and class names the stylesheet can use
 * to restyle it. Each chart is a <figure> holding the SVG (role="img", named by its <title>,
 * described by its <desc>) and a visually hidden table of the same numbers for screen readers.
 *
 * Output is a pure function of the arguments: ids derive from the caller's `id`, numbers are rounded
 * to one decimal, and every coordinate passes through `num`, so an empty or all-zero series never
 * writes NaN or Infinity into an attribute.
 */
import { html, SafeHtml } from './html.js';

/** `axisLabel` is the short text under the bar (default `label`); tooltips and the table use `label`. */
export interface Bar { label: string; value: number; secondary?: string; axisLabel?: string }
export interface StackedBar { label: string; values: number[]; secondary?: string; axisLabel?: string }
export interface Series { key: string; name: string; color?: string }
export interface PercentBar { label: string; value: number | null; secondary?: string }

interface Common {
  /** Unique on the page; the <title>/<desc> ids are `${id}-title` / `${id}-desc`. */
  id: string;
  title: string;
  /** Appended to values in tooltips and the table, e.g. 'items'. */
  unit?: string;
  width?: number;
  height?: number;
  valueFormat?: (v: number) => string;
  /** Heading of the label column in the fallback table. */
  labelHeading?: string;
}
export interface BarChartOptions extends Common { bars: Bar[] }
export interface StackedBarChartOptions extends Common { bars: StackedBar[]; series: Series[] }
export interface HorizontalBarChartOptions extends Omit<Common, 'height'> {
  bars: PercentBar[];
  /** The value a full-width bar stands for; default the largest value (or 1). */
  max?: number;
}

const PALETTE = ['#b42318', '#64748b', '#cbd5e1', '#2563eb', '#0f766e', '#a16207'];
const BAR_COLOR = '#2563eb';
const HBAR_COLOR = '#0f766e';
const TEXT_COLOR = '#374151';
const MUTED_COLOR = '#6b7280';
const GRID_COLOR = '#e5e7eb';
const CHAR_PX = 6.5; // rough width of an 11 px glyph, for sizing label columns and thinning x labels
const NUMBER = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

export const formatNumber = (v: number): string => NUMBER.format(v);
export const formatPercent = (v: number): string => `${Math.round(v * 100)} %`;

/** Vertical bars over a zero baseline with a few y gridlines; x labels thinned when crowded. */
export function barChart(o: BarChartOptions): SafeHtml {
  return columns(o, o.bars.map((b) => ({ label: b.label, axisLabel: b.axisLabel, values: [b.value], secondary: b.secondary })), [{ key: 'value', name: o.unit ?? 'Value', color: BAR_COLOR }], false);
}

/** Vertical bars split into series stacked bottom-up (first series at the bottom), with a legend. */
export function stackedBarChart(o: StackedBarChartOptions): SafeHtml {
  return columns(o, o.bars, o.series.map((s, i) => ({ ...s, color: s.color ?? PALETTE[i % PALETTE.length]! })), true);
}

/** One row per bar, value text at the bar's end, 'n/a' (and no bar) for a null value. */
export function horizontalBarChart(o: HorizontalBarChartOptions): SafeHtml {
  const id = safeId(o.id);
  const fmt = o.valueFormat ?? formatNumber;
  const width = dimension(o.width, 640, 200);
  const finite = o.bars.map((b) => (b.value !== null && Number.isFinite(b.value) ? Math.max(0, b.value) : null));
  const scale = niceScale(o.max !== undefined && o.max > 0 ? o.max : Math.max(0, ...finite.map((v) => v ?? 0)), false, 4);
  const labelChars = Math.max(4, ...o.bars.map((b) => b.label.length));
  const left = clamp(labelChars * CHAR_PX + 12, 60, width * 0.4);
  const maxChars = Math.floor((left - 12) / CHAR_PX);
  const right = 56; // room for the value text after a full-width bar
  const top = 8;
  const rowH = 22;
  const barH = 14;
  const plotW = width - left - right;
  const height = top + Math.max(1, o.bars.length) * rowH + 22;
  const x = (v: number) => left + (Math.min(v, scale.max) / scale.max) * plotW;
  const plotBottom = top + Math.max(1, o.bars.length) * rowH;

  const grid = scale.ticks.map((t) => html`<line class="grid" x1="${num(x(t))}" x2="${num(x(t))}" y1="${num(top)}" y2="${num(plotBottom)}" stroke="${GRID_COLOR}"/><text class="tick" x="${num(x(t))}" y="${num(plotBottom + 14)}" text-anchor="middle" font-size="11" fill="${MUTED_COLOR}">${fmt(t)}</text>`);
  const rows = o.bars.map((b, i) => {
    const v = finite[i]!;
    const cy = top + i * rowH + rowH / 2;
    const tip = tooltip(b.label, v === null ? 'n/a' : withUnit(fmt(v), o.unit), b.secondary);
    const label = html`<text class="label" x="${num(left - 6)}" y="${num(cy)}" dy="0.35em" text-anchor="end" font-size="11" fill="${TEXT_COLOR}">${truncate(b.label, maxChars)}<title>${b.label}</title></text>`;
    if (v === null) return html`${label}<text class="value na" x="${num(left + 4)}" y="${num(cy)}" dy="0.35em" font-size="11" fill="${MUTED_COLOR}">n/a<title>${tip}</title></text>`;
    const end = x(v);
    return html`${label}<rect class="bar" x="${num(left)}" y="${num(cy - barH / 2)}" width="${num(end - left)}" height="${num(barH)}" fill="${HBAR_COLOR}"><title>${tip}</title></rect><text class="value" x="${num(end + 4)}" y="${num(cy)}" dy="0.35em" font-size="11" fill="${TEXT_COLOR}">${fmt(v)}</text>`;
  });
  const body = o.bars.length === 0 ? noData(width, height) : html`${grid}<line class="axis" x1="${num(left)}" x2="${num(left)}" y1="${num(top)}" y2="${num(plotBottom)}" stroke="${TEXT_COLOR}"/>${rows}`;
  const decided = o.bars.filter((_, i) => finite[i] !== null).length;
  const desc = o.bars.length === 0 ? 'No data.' : `${o.bars.length} ${o.bars.length === 1 ? 'row' : 'rows'}, ${decided} with a value.`;
  const table = dataTable(o.title, [o.labelHeading ?? 'Label', withUnit('Value', o.unit && `(${o.unit})`)], o.bars.map((b, i) => [b.label, finite[i] === null ? 'n/a' : fmt(finite[i]!)]));
  return figure(id, o.title, desc, width, height, body, table);
}

/** Shared frame of the vertical charts; a single-series stack is a plain bar chart. */
function columns(o: Common, bars: StackedBar[], series: Series[], legend: boolean): SafeHtml {
  const id = safeId(o.id);
  const fmt = o.valueFormat ?? formatNumber;
  const width = dimension(o.width, 640, 200);
  const height = dimension(o.height, 240, 120);
  const clean = bars.map((b) => series.map((_, s) => Math.max(0, finiteOr0(b.values[s]))));
  const totals = clean.map((vs) => vs.reduce((a, v) => a + v, 0));
  const integer = clean.every((vs) => vs.every(Number.isInteger));
  const scale = niceScale(Math.max(0, ...totals), integer, 4);
  const top = legend ? 26 : 10;
  const bottom = 24;
  const left = clamp(Math.max(...scale.ticks.map((t) => fmt(t).length)) * CHAR_PX + 10, 28, width * 0.3);
  const right = 10;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const baseline = top + plotH;
  const y = (v: number) => baseline - (v / scale.max) * plotH;
  const band = plotW / Math.max(1, bars.length);
  const barW = Math.max(1, band * 0.72);

  const grid = scale.ticks.map((t) => html`<line class="grid" x1="${num(left)}" x2="${num(width - right)}" y1="${num(y(t))}" y2="${num(y(t))}" stroke="${GRID_COLOR}"/><text class="tick" x="${num(left - 6)}" y="${num(y(t))}" dy="0.35em" text-anchor="end" font-size="11" fill="${MUTED_COLOR}">${fmt(t)}</text>`);
  // Thin the x labels from the right so the newest bar (today, the longest wait) always keeps its label.
  const axisLabel = (b: StackedBar) => b.axisLabel ?? b.label;
  const labelChars = Math.min(16, Math.max(1, ...bars.map((b) => axisLabel(b).length)));
  const every = Math.max(1, Math.ceil((labelChars * CHAR_PX + 6) / band));
  const cols = bars.map((b, i) => {
    const x0 = left + i * band + (band - barW) / 2;
    let acc = 0;
    const parts = series.map((s, k) => {
      const v = clean[i]![k]!;
      const y1 = y(acc);
      acc += v;
      const tip = tooltip(b.label, series.length > 1 ? `${s.name} ${withUnit(fmt(v), o.unit)}` : withUnit(fmt(v), o.unit), b.secondary);
      return html`<rect class="${`bar series-${safeClass(s.key)}`}" x="${num(x0)}" y="${num(y(acc))}" width="${num(barW)}" height="${num(y1 - y(acc))}" fill="${s.color ?? BAR_COLOR}"><title>${tip}</title></rect>`;
    });
    const showLabel = (bars.length - 1 - i) % every === 0;
    const label = showLabel ? html`<text class="xlabel" x="${num(x0 + barW / 2)}" y="${num(baseline + 15)}" text-anchor="middle" font-size="11" fill="${TEXT_COLOR}">${truncate(axisLabel(b), 16)}</text>` : html``;
    return html`<g class="col">${parts}${label}</g>`;
  });
  let lx = left;
  const legendItems = legend ? series.map((s) => {
    const item = html`<rect class="${`swatch series-${safeClass(s.key)}`}" x="${num(lx)}" y="6" width="10" height="10" fill="${s.color ?? BAR_COLOR}"/><text class="legend" x="${num(lx + 14)}" y="11" dy="0.35em" font-size="11" fill="${TEXT_COLOR}">${s.name}</text>`;
    lx += 14 + s.name.length * CHAR_PX + 14;
    return item;
  }) : [];
  const body = bars.length === 0
    ? noData(width, height)
    : html`${legendItems}${grid}${cols}<line class="axis" x1="${num(left)}" x2="${num(width - right)}" y1="${num(baseline)}" y2="${num(baseline)}" stroke="${TEXT_COLOR}"/>`;
  const peak = totals.reduce((best, t, i) => (t > totals[best]! ? i : best), 0);
  const desc = bars.length === 0 ? 'No data.'
    : totals[peak]! === 0 ? `${bars.length} bars, all zero.`
    : `${bars.length} bars from ${bars[0]!.label} to ${bars.at(-1)!.label}; highest ${withUnit(fmt(totals[peak]!), o.unit)} at ${bars[peak]!.label}.`;
  const headings = [o.labelHeading ?? 'Label', ...(series.length > 1 ? [...series.map((s) => s.name), 'Total'] : [withUnit('Value', o.unit && `(${o.unit})`)])];
  const rows = bars.map((b, i) => [b.secondary ? `${b.label} (${b.secondary})` : b.label, ...clean[i]!.map(fmt), ...(series.length > 1 ? [fmt(totals[i]!)] : [])]);
  return figure(id, o.title, desc, width, height, body, dataTable(o.title, headings, rows));
}

function figure(id: string, title: string, desc: string, width: number, height: number, body: SafeHtml, table: SafeHtml): SafeHtml {
  return html`<figure class="chart"><svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="${`${id}-title`}" aria-describedby="${`${id}-desc`}" viewBox="${`0 0 ${num(width)} ${num(height)}`}" width="${num(width)}" height="${num(height)}"><title id="${`${id}-title`}">${title}</title><desc id="${`${id}-desc`}">${desc}</desc>${body}</svg>${table}</figure>`;
}

function dataTable(caption: string, headings: string[], rows: string[][]): SafeHtml {
  if (rows.length === 0) return html``;
  // The class sits on a wrapper: a table box ignores width: 1px and overflow, so it would still stretch the page.
  return html`<div class="visually-hidden"><table><caption>${caption}</caption><thead><tr>${headings.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead><tbody>${rows.map(([head, ...cells]) => html`<tr><th scope="row">${head}</th>${cells.map((c) => html`<td>${c}</td>`)}</tr>`)}</tbody></table></div>`;
}

function noData(width: number, height: number): SafeHtml {
  return html`<text class="no-data" x="${num(width / 2)}" y="${num(height / 2)}" text-anchor="middle" font-size="12" fill="${MUTED_COLOR}">No data</text>`;
}

/**
 * Gridline values 0, step, 2·step, … up to the first multiple of step at or above `max`, with step a
 * 1/2/5 × 10ⁿ that gives about `target` intervals. Integer data never gets fractional ticks. A zero or
 * unusable max becomes 1 so the scale never divides by zero.
 */
export function niceScale(max: number, integer: boolean, target: number): { max: number; ticks: number[] } {
  const m = Number.isFinite(max) && max > 0 ? max : 1;
  const rough = m / target;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const norm = rough / mag;
  let step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  if (integer) step = Math.max(1, Math.round(step));
  const n = Math.max(1, Math.ceil(m / step - 1e-9));
  const ticks = Array.from({ length: n + 1 }, (_, i) => Number((i * step).toPrecision(12)));
  return { max: ticks.at(-1)!, ticks };
}

/** Attribute-safe number: one decimal, and never NaN/Infinity. */
function num(x: number): string {
  return Number.isFinite(x) ? String(Math.round(x * 10) / 10) : '0';
}

function finiteOr0(v: number | undefined): number {
  return v !== undefined && Number.isFinite(v) ? v : 0;
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(Math.max(v, lo), Math.max(lo, hi));
}

function dimension(v: number | undefined, fallback: number, min: number): number {
  return v !== undefined && Number.isFinite(v) ? Math.max(min, Math.round(v)) : fallback;
}

/** Ids and class suffixes are built into attributes; keep them to a safe alphabet rather than trust escaping alone. */
function safeId(id: string): string {
  const s = id.replace(/[^A-Za-z0-9_-]/g, '-');
  return /^[A-Za-z]/.test(s) ? s : `chart-${s}`;
}

function safeClass(key: string): string {
  return key.toLowerCase().replace(/[^a-z0-9-]/g, '-') || 'x';
}

function truncate(s: string, chars: number): string {
  const c = [...s];
  return c.length <= chars ? s : `${c.slice(0, Math.max(1, chars - 1)).join('')}…`;
}

function withUnit(value: string, unit: string | undefined): string {
  return unit ? `${value} ${unit}` : value;
}

function tooltip(label: string, value: string, secondary: string | undefined): string {
  return secondary ? `${label}: ${value} (${secondary})` : `${label}: ${value}`;
}
