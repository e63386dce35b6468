/**
 * Shared by the metrics checks: the metric names and label matchers of a PromQL expression (a
 * small reader, not a parser: enough for the dashboard's and the alert rules' expressions) and
 * GitHub's heading anchors, which the rules' runbook_url links point at.
 */
import assert from 'node:assert/strict';

const KEYWORDS = new Set(['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool', 'inf', 'nan']);

export interface Selector { metric: string; matchers: Array<{ label: string; op: string; value: string }> }

/**
 * Metric names and selectors of one PromQL expression. Label matchers are read first; then Grafana
 * variables, range/subquery brackets, grouping clauses and strings are taken out, and what is
 * left that is an identifier, not a keyword and not a function call is a metric name.
 */
export function extractSelectors(expr: string): Selector[] {
  let rest = expr;
  const selectors: Selector[] = [];
  rest = rest.replace(/([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}/g, (_all, metric: string | undefined, body: string) => {
    const matchers = [...body.matchAll(/([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)].map((m) => ({ label: m[1]!, op: m[2]!, value: m[3]! }));
    const name = metric ?? matchers.find((m) => m.label === '__name__' && m.op === '=')?.value;
    assert.ok(name, `selector without a metric name in: ${expr}`);
    selectors.push({ metric: name, matchers: matchers.filter((m) => m.label !== '__name__') });
    return ' __selector__ ';
  });
  rest = rest
    .replace(/\$\{[^}]*\}|\$\w+/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/"(?:[^"\\]|\\.)*"/g, ' ');
  for (const m of rest.matchAll(/[a-zA-Z_:][\w:]*(?!\s*\()/g)) {
    const word = m[0];
    // The negative look-ahead can stop one character short of a function name; skip those.
    const after = rest.slice(m.index! + word.length);
    if (/^[\w:]/.test(after) || /^\s*\(/.test(after)) continue;
    if (word === '__selector__' || KEYWORDS.has(word.toLowerCase())) continue;
    if (/^\d/.test(word)) continue;
    selectors.push({ metric: word, matchers: [] });
  }
  return selectors;
}

/** The anchor GitHub gives a Markdown heading. */
export function githubSlug(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
}
