import assert from 'node:assert/strict';
import { test } from 'node:test';
import { progressPerModel, progressReporter } from '../../../src/training/cli/progress.js';

/** A stream that records what is written, and a clock the test moves. */
function harness(isTTY: boolean) {
  const lines: string[] = [];
  let t = 1_000_000;
  return {
    lines,
    advance: (ms: number) => void (t += ms),
    options: { stream: { isTTY, write: (text: string) => lines.push(text) }, now: () => t, everyMs: 5000 },
  };
}

test('off a terminal, progress names the model and is written at each tenth, not per batch', () => {
  const h = harness(false);
  const report = progressReporter('wildlife-efficientnet-lite0', h.options);
  for (let done = 16; done < 842; done += 16) report(done, 842);
  report(842, 842);
  assert.equal(h.lines.length, 11, h.lines.join(''));
  assert.equal(h.lines[0], 'wildlife-efficientnet-lite0: 16/842 images (1%), 0 s\n');
  assert.equal(h.lines.at(-1), 'wildlife-efficientnet-lite0: 842/842 images (100%), 0 s\n');
});

test('off a terminal, a slow pass still writes a line every few seconds within one tenth', () => {
  const h = harness(false);
  const report = progressReporter('m', h.options);
  report(1, 1000);
  h.advance(4000);
  report(2, 1000); // same tenth, 4 s: nothing
  h.advance(2000);
  report(3, 1000); // same tenth, 6 s since the last line
  assert.deepEqual(h.lines, ['m: 1/1000 images (0%), 0 s\n', 'm: 3/1000 images (0%), 6 s\n']);
});

test('on a terminal one line is redrawn, and ended when the pass is done', () => {
  const h = harness(true);
  const report = progressReporter('m', h.options);
  report(1, 2);
  h.advance(1500);
  report(2, 2);
  assert.deepEqual(h.lines, ['\rm: 1/2 images (50%), 0 s', '\rm: 2/2 images (100%), 2 s\n']);
});

test('several models each get their own count', () => {
  const h = harness(false);
  const report = progressPerModel(h.options);
  report('first', 10, 10);
  report('second', 5, 10);
  assert.deepEqual(h.lines, ['first: 10/10 images (100%), 0 s\n', 'second: 5/10 images (50%), 0 s\n']);
});
