/**
 * The console's HTML shell. Pages are server-rendered strings; every value that came from a listing,
 * a model or a user goes through `escapeHtml` (or `html` tagged templates), and the CSP forbids inline
 * script and style, so a hostile listing title can neither run code nor restyle the page.
 */

import type { Principal } from './auth.js';

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** Marks a string as already-safe HTML for the `html` template tag. */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

/** Tagged template: interpolations are escaped unless they are SafeHtml (or arrays of it). */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0]!;
  values.forEach((v, i) => {
    out += render(v) + strings[i + 1]!;
  });
  return new SafeHtml(out);
}

function render(v: unknown): string {
  if (v instanceof SafeHtml) return v.value;
  if (Array.isArray(v)) return v.map(render).join('');
  if (v === null || v === undefined || v === false) return '';
  return escapeHtml(v);
}

export type NavTab = 'queue' | 'escalated' | 'decided' | 'stats' | null;

export interface LayoutOptions {
  title: string;
  principal: Principal | null;
  /** The session's CSRF token, for the sign-out form and for review.js (read from a meta tag). */
  csrf: string | null;
  body: SafeHtml;
  nav?: NavTab;
  /** A notice shown above the page, e.g. the outcome of a form post without JavaScript. */
  flash?: { kind: 'ok' | 'error'; text: string } | null;
}

export function layout(o: LayoutOptions): string {
  const tab = (id: Exclude<NavTab, null>, href: string, text: string) => html`<a href="${href}" class="${o.nav === id ? 'tab current' : 'tab'}">${text}</a>`;
  const header = o.principal
    ? html`<nav>${tab('queue', '/', 'Queue')}${tab('escalated', '/?status=escalated', 'Escalated')}${tab('decided', '/?status=decided', 'Decided')}${tab('stats', '/stats', 'Stats')}</nav>
      <form method="post" action="/logout" class="signout"><input type="hidden" name="_csrf" value="${o.csrf}"><span class="who">${o.principal.username} · ${o.principal.role}</span> <button type="submit">Sign out</button></form>`
    : html``;
  const flash = o.flash ? html`<p class="${`flash ${o.flash.kind}`}" role="status">${o.flash.text}</p>` : html``;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="${escapeHtml(o.csrf ?? '')}">
<title>${escapeHtml(o.title)} · Wildlife-trade review</title>
<link rel="stylesheet" href="/static/review.css"><script src="/static/review.js" defer></script></head>
<body><header><strong class="brand">Wildlife-trade review</strong>${header}</header>
<main>${flash}${o.body}</main></body></html>`;
}
