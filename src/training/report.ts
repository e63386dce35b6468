/** The evaluation report as one self-contained HTML page (no external assets; opens offline). */
import type { Calibration } from './calibration.js';
import type { ClassMetrics, EvalReport } from './evaluate.js';

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

export function renderReport(report: EvalReport, calibration?: Calibration): string {
  const { labels, matrix } = report.confusion;
  const predicted = labels.slice(0, matrix[0]?.length ?? 0);
  const rowTotals = matrix.map((r) => r.reduce((a, b) => a + b, 0));
  const cell = (v: number, total: number, diagonal: boolean) => {
    const share = total ? v / total : 0;
    const hue = diagonal ? 140 : 0;
    return `<td style="background:hsla(${hue},70%,45%,${share.toFixed(3)})" title="${v} of ${total}">${v || ''}</td>`;
  };
  const confusion = `<table class="cm"><thead><tr><th>true \\ predicted</th>${predicted.map((l) => `<th class="rot"><div>${esc(l)}</div></th>`).join('')}</tr></thead><tbody>${
    matrix.map((row, i) => `<tr><th>${esc(labels[i]!)}</th>${row.map((v, j) => cell(v, rowTotals[i]!, labels[i] === predicted[j])).join('')}</tr>`).join('')
  }</tbody></table>`;
  const perClass = Object.entries(report.perClass).map(([label, m]) =>
    `<tr><td>${esc(label)}</td><td>${m.support}</td><td>${pct(m.precision)}</td><td>${pct(m.recall)}</td><td>${m.f1.toFixed(3)}</td></tr>`).join('');
  const f = report.flag;
  const cal = calibration
    ? `<h2>Threshold calibration (${calibration.targetPrecision === null ? 'best flag F1' : `target flag precision ${pct(calibration.targetPrecision)}`})</h2><p>${esc(calibration.note)}</p>
       <p>Before: P ${pct(calibration.before.precision)} R ${pct(calibration.before.recall)} F1 ${calibration.before.f1.toFixed(3)} —
       after: P ${pct(calibration.after.precision)} R ${pct(calibration.after.recall)} F1 ${calibration.after.f1.toFixed(3)}</p>`
    : '';
  const skipped = report.skipped.length
    ? `<h2>Skipped images (${report.skipped.length})</h2><ul>${report.skipped.map((s) => `<li><code>${esc(s.path)}</code> ${esc(s.code)}: ${esc(s.message)}</li>`).join('')}</ul>`
    : '';
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Evaluation: ${esc(report.model.name)} ${esc(report.model.version)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f6f6f6}.cm td{min-width:1.6em;text-align:center}.rot{height:9em;vertical-align:bottom}.rot div{writing-mode:vertical-rl;transform:rotate(180deg)}
.kpi{display:inline-block;margin-right:2em}.kpi b{font-size:1.6em;display:block}</style></head><body>
<h1>${esc(report.model.name)} ${esc(report.model.version)} <small>(${esc(report.model.architecture)}, ${esc(report.model.precision)})</small></h1>
<div class="kpi"><b>${report.n}</b>images</div><div class="kpi"><b>${pct(report.top1)}</b>top-1</div>
<div class="kpi"><b>${f.f1.toFixed(3)}</b>flag F1</div><div class="kpi"><b>${pct(f.precision)}</b>flag precision</div><div class="kpi"><b>${pct(f.recall)}</b>flag recall</div>
<p>Flag = trade-relevant vs benign: TP ${f.tp}, FP ${f.fp}, FN ${f.fn}, TN ${f.tn}. ${report.speed.imagesPerSecond.toFixed(1)} images/s end to end, ${report.speed.inferenceImagesPerSecond.toFixed(1)} images/s inference.</p>
${cal}<h2>Confusion matrix</h2>${confusion}
<h2>Per class</h2><table><thead><tr><th>label</th><th>support</th><th>precision</th><th>recall</th><th>F1</th></tr></thead><tbody>${perClass}</tbody></table>
${skipped}</body></html>
`;
}

/**
 * The per-class results as a plain-text table for a terminal (the HTML report has the same rows):
 * label, n (photos of that class), precision, recall, F1, in the model's label order.
 */
export function perClassTable(perClass: Readonly<Record<string, ClassMetrics>>): string {
  const header = ['label', 'n', 'precision', 'recall', 'F1'];
  const rows = Object.entries(perClass).map(([label, m]) => [label, String(m.support), m.precision.toFixed(3), m.recall.toFixed(3), m.f1.toFixed(3)]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  // The label column reads left to right; numbers line up on the right.
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return `${[header, ...rows].map(line).join('\n')}\n`;
}
