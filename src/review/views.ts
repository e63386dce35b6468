/**
 * Server-rendered pages of the queue. Keyboard shortcuts live in /static/review.js and only press
 * the buttons and follow the links rendered here, so every action also works without JavaScript.
 */
import type { Principal } from './auth.js';
import { html, type SafeHtml } from './html.js';
import type { DecisionRecord, ItemDetail, QueueFilter, QueueItem } from './store.js';

export interface QueuePageModel {
  principal: Principal;
  csrf: string;
  filter: Required<Pick<QueueFilter, 'status' | 'sort'>> & QueueFilter;
  /** The filter as a query string (without item/page), for links that keep it. */
  query: URLSearchParams;
  items: QueueItem[];
  total: number;
  page: number;
  pageSize: number;
  selected: ItemDetail | null;
  facets: { labels: string[]; platforms: string[] };
  undoWindowSeconds: number;
  /** The principal's decision an undo would re-open now, if any. */
  undoable: DecisionRecord | null;
}

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
const when = (iso: string) => iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC');

export function queueLink(query: URLSearchParams, extra: Record<string, string | number | null>): string {
  const q = new URLSearchParams(query);
  for (const [k, v] of Object.entries(extra)) {
    if (v === null) q.delete(k);
    else q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `/?${s}` : '/';
}

function filters(m: QueuePageModel): SafeHtml {
  const f = m.filter;
  const option = (value: string, current: string | undefined, text = value) => html`<option value="${value}"${current === value ? html` selected` : ''}>${text}</option>`;
  const day = (iso: string | undefined) => (iso ? iso.slice(0, 10) : '');
  return html`<form method="get" action="/" class="filters" id="filters">
    <input type="hidden" name="status" value="${f.status}">
    <label>Label <select name="label" id="filter-label"><option value="">any</option>${m.facets.labels.map((l) => option(l, f.label))}</select></label>
    <label>Platform <select name="platform"><option value="">any</option>${m.facets.platforms.map((p) => option(p, f.platform))}</select></label>
    <label>Score <input type="number" name="min" min="0" max="1" step="0.01" value="${f.minScore ?? ''}" placeholder="0"> – <input type="number" name="max" min="0" max="1" step="0.01" value="${f.maxScore ?? ''}" placeholder="1"></label>
    <label>Flagged from <input type="date" name="from" value="${day(f.from)}"></label>
    <label>to <input type="date" name="to" value="${day(f.to ? new Date(Date.parse(f.to) - 86_400_000).toISOString() : undefined)}"></label>
    <label>Sort <select name="sort">${option('newest', f.sort, 'newest first')}${option('score', f.sort, 'highest score first')}${option('oldest', f.sort, 'oldest first')}</select></label>
    <button type="submit">Apply</button> <a href="${queueLink(new URLSearchParams({ status: f.status }), {})}">Clear</a>
  </form>`;
}

function card(item: QueueItem, m: QueuePageModel): SafeHtml {
  const selected = m.selected?.id === item.id;
  return html`<li class="${selected ? 'card selected' : 'card'}" data-id="${item.id}">
    <a href="${queueLink(m.query, { page: m.page > 1 ? m.page : null, item: item.id })}"${selected ? html` aria-current="true"` : ''}>
      <img src="/items/${item.id}/photo?size=thumb" alt="" width="64" height="64" loading="lazy">
      <span class="card-text"><span class="card-label">${item.topLabel}</span> <span class="card-score">${pct(item.topScore)}</span>
      <span class="card-meta">${item.platform} · ${when(item.flaggedAt)}</span>
      ${item.status === 'pending' ? '' : html`<span class="${`badge ${item.status}`}">${item.status}</span>`}</span>
    </a></li>`;
}

function history(entries: DecisionRecord[]): SafeHtml {
  if (!entries.length) return html`<p class="muted">No decisions yet.</p>`;
  return html`<ol class="history">${entries.map((d) => html`<li><span class="${`badge ${d.verdict}`}">${d.verdict}</span> ${d.label}${d.correctLabel ? html` → <strong>${d.correctLabel}</strong>` : ''}
    by ${d.analyst} (${d.role}) at ${when(d.decidedAt)}${d.previous ? html`, was ${d.previous.verdict} ${d.previous.label}` : ''}${d.note ? html` — “${d.note}”` : ''}
    ${d.publishedAt ? '' : html`<span class="muted">(not yet on Kafka)</span>`}</li>`)}</ol>`;
}

function decisionForm(item: ItemDetail, m: QueuePageModel, next: string): SafeHtml {
  const canDecide = item.status === 'pending' || (item.status === 'escalated' && m.principal.role === 'lead');
  if (!canDecide) {
    const undoHint = html`your own last decision can be undone with <kbd>u</kbd> for ${Math.round(m.undoWindowSeconds / 60)} minutes`;
    // An analyst sees no buttons on an escalated item either, but it is not decided yet: a lead decides it.
    if (m.principal.role !== 'lead') {
      return item.status === 'escalated'
        ? html`<p class="muted">Escalated to a lead, who decides it; ${undoHint}.</p>`
        : html`<p class="muted">Decided. A lead can re-open it; ${undoHint}.</p>`;
    }
    return html`<form method="post" action="/items/${item.id}/reopen" class="decide" id="reopen-form">
      <input type="hidden" name="_csrf" value="${m.csrf}"><input type="hidden" name="expect" value="${item.lastDecisionId ?? 0}"><input type="hidden" name="next" value="${next}">
      <label>Note <input type="text" name="note" maxlength="2000"></label> <button type="submit" id="reopen">Re-open for review</button></form>`;
  }
  const flagged = new Set(item.reasons.map((r) => r.label));
  return html`<form method="post" action="/items/${item.id}/decisions" class="decide" id="decide-form">
    <input type="hidden" name="_csrf" value="${m.csrf}"><input type="hidden" name="expect" value="${item.lastDecisionId ?? 0}"><input type="hidden" name="next" value="${next}">
    <fieldset><legend>Label to confirm <span class="muted">(keys 1–9)</span></legend>
    ${item.labelChoices.slice(0, 9).map((label, i) => html`<label class="choice"><input type="radio" name="label" value="${label}"${i === 0 ? html` checked` : ''} data-key="${i + 1}"> <kbd>${i + 1}</kbd> ${label}${flagged.has(label) ? '' : html` <span class="muted">(not flagged)</span>`}</label>`)}
    </fieldset>
    <label>If rejecting, the true label <input type="text" name="correctLabel" id="correct-label" list="known-labels" maxlength="128" placeholder="not known / not wildlife"></label>
    <datalist id="known-labels">${[...new Set([...item.labelChoices, ...m.facets.labels])].map((l) => html`<option value="${l}"></option>`)}</datalist>
    <label>Note <input type="text" name="note" maxlength="2000" id="note"></label>
    <div class="buttons">
      <button type="submit" disabled hidden aria-hidden="true" tabindex="-1"></button><!-- the form's default button: Enter in a text field decides nothing -->
      <button type="submit" name="verdict" value="confirmed" id="confirm" class="confirm">Confirm illegal <kbd>c</kbd></button>
      <button type="submit" name="verdict" value="rejected" id="reject" class="reject">Reject: false positive <kbd>r</kbd></button>
      ${item.status === 'pending' ? html`<button type="submit" name="verdict" value="escalated" id="escalate" class="escalate">Escalate to a lead <kbd>e</kbd></button>` : ''}
    </div></form>`;
}

function detail(item: ItemDetail, m: QueuePageModel, next: string): SafeHtml {
  const classifier = item.message.classifiers[0];
  return html`<article class="detail" id="detail" data-item="${item.id}">
    <figure><img src="/items/${item.id}/photo" alt="The flagged photo" id="photo"><figcaption class="muted">sha256 ${item.imageSha256.slice(0, 16)}…, ${item.message.image.width}×${item.message.image.height} ${item.message.image.format}</figcaption></figure>
    <section class="facts">
      <h1>${item.listingTitle ?? '(no listing title)'}</h1>
      <p><a href="${/^https?:\/\//i.test(item.listingUrl) ? item.listingUrl : '#'}" rel="noopener noreferrer nofollow" target="_blank" id="listing-link">${item.listingUrl}</a></p>
      <dl>
        <dt>Platform</dt><dd>${item.platform}</dd>
        <dt>Seller</dt><dd>${item.listingSeller ?? '—'}</dd>
        <dt>Flagged</dt><dd>${when(item.flaggedAt)}</dd>
        <dt>Model</dt><dd>${item.model ? `${item.model.name} ${item.model.version}` : '—'}</dd>
        <dt>Status</dt><dd><span class="${`badge ${item.status}`}">${item.status}</span>${item.label ? ` (${item.label})` : ''}</dd>
      </dl>
      <table class="reasons"><caption>Why it was flagged</caption>
        <thead><tr><th scope="col">Label</th><th scope="col">Score</th><th scope="col">Threshold</th><th scope="col">Classifier</th></tr></thead>
        <tbody>${item.reasons.map((r) => html`<tr><th scope="row">${r.label}</th><td>${pct(r.score)}</td><td>${pct(r.threshold)}</td><td>${r.classifier}</td></tr>`)}</tbody></table>
      ${classifier ? html`<details><summary>Top labels of ${classifier.name} ${classifier.version}</summary><ul>${classifier.top.map((t) => html`<li>${t.label}: ${pct(t.score)}${t.trade_relevant ? ' (trade-relevant)' : ''}</li>`)}</ul></details>` : ''}
      ${decisionForm(item, m, next)}
      <h2>History</h2>${history(item.history)}
      <p class="muted">Decision ${item.decisionId} · input ${item.inputId}</p>
    </section></article>`;
}

export function renderQueue(m: QueuePageModel, nav: { prev: string | null; next: string | null; afterDecision: string }): SafeHtml {
  const pages = Math.max(1, Math.ceil(m.total / m.pageSize));
  const pager = html`<nav class="pager">${m.page > 1 ? html`<a href="${queueLink(m.query, { page: m.page - 1 })}" rel="prev">← newer page</a>` : ''}
    <span>page ${m.page} of ${pages} · ${m.total} item${m.total === 1 ? '' : 's'}</span>
    ${m.page < pages ? html`<a href="${queueLink(m.query, { page: m.page + 1 })}" rel="next">next page →</a>` : ''}</nav>`;
  return html`${filters(m)}
  <div class="review">
    <div class="list">${pager}
      ${m.items.length ? html`<ol class="queue" id="queue">${m.items.map((i) => card(i, m))}</ol>` : html`<p class="empty" id="empty">Nothing to review here. New flags appear as the screening service sends them.</p>`}
      ${nav.prev ? html`<a href="${nav.prev}" id="prev-item" class="hidden-nav">previous item</a>` : ''}${nav.next ? html`<a href="${nav.next}" id="next-item" class="hidden-nav">next item</a>` : ''}
    </div>
    ${m.selected ? detail(m.selected, m, nav.afterDecision) : ''}
  </div>
  ${m.undoable ? html`<form method="post" action="/undo" id="undo-form" class="undo"><input type="hidden" name="_csrf" value="${m.csrf}"><input type="hidden" name="expect" value="${m.undoable.id}">
    <button type="submit" id="undo">Undo my last decision (${m.undoable.verdict} ${m.undoable.label}, item ${m.undoable.itemId}) <kbd>u</kbd></button></form>` : ''}
  <aside class="keys" id="keys"><h2>Keys</h2><p><kbd>j</kbd>/<kbd>k</kbd> next/previous · <kbd>1</kbd>–<kbd>9</kbd> pick the label · <kbd>c</kbd> confirm · <kbd>r</kbd> reject · <kbd>t</kbd> type the true label, then <kbd>Enter</kbd> to reject with it · <kbd>e</kbd> escalate · <kbd>u</kbd> undo · <kbd>/</kbd> filter by label · <kbd>o</kbd> open the listing</p></aside>`;
}

export function renderAudit(entries: DecisionRecord[], analyst: string | null): SafeHtml {
  return html`<h1>Audit log${analyst ? html` of ${analyst}` : ''}</h1>
  <p class="muted">Every decision, newest first. Entries are never changed or deleted; an undo or a re-open is an entry of its own.</p>
  <table class="audit"><thead><tr><th scope="col">#</th><th scope="col">When</th><th scope="col">Who</th><th scope="col">Item</th><th scope="col">Verdict</th><th scope="col">Label</th><th scope="col">Previous</th><th scope="col">Note</th><th scope="col">On Kafka</th></tr></thead>
  <tbody>${entries.map((d) => html`<tr><td>${d.id}</td><td>${when(d.decidedAt)}</td><td><a href="/audit?analyst=${encodeURIComponent(d.analyst)}">${d.analyst}</a> (${d.role})</td>
    <td><a href="/?status=all&item=${d.itemId}">${d.itemId}</a></td><td><span class="${`badge ${d.verdict}`}">${d.verdict}</span></td>
    <td>${d.label}${d.correctLabel ? ` → ${d.correctLabel}` : ''}</td><td>${d.previous ? `${d.previous.verdict} ${d.previous.label}` : '—'}</td><td>${d.note ?? ''}</td><td>${d.publishedAt ? when(d.publishedAt) : 'pending'}</td></tr>`)}</tbody></table>`;
}
