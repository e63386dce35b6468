/**
 * Progress of a long pass over images, on stderr so that stdout stays the command's result (one
 * JSON document with --json). On a terminal one line is redrawn; elsewhere (CI logs, a pipe) a line
 * is written at each tenth and whenever `everyMs` passed without one, so a slow machine is not
 * silent for minutes.
 */
export interface ProgressOptions {
  stream?: { isTTY?: boolean; write(text: string): unknown };
  everyMs?: number;
  now?: () => number;
}

export type Progress = (done: number, total: number) => void;

export function progressReporter(label: string, options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr;
  const everyMs = options.everyMs ?? 5000;
  const now = options.now ?? Date.now;
  const started = now();
  let lastTenth = -1;
  let lastAt = started;
  return (done, total) => {
    const at = now();
    const text = `${label}: ${done}/${total} images (${total ? Math.floor((100 * done) / total) : 100}%), ${((at - started) / 1000).toFixed(0)} s`;
    if (stream.isTTY) {
      stream.write(`\r${text}${done === total ? '\n' : ''}`);
      return;
    }
    const tenth = total ? Math.floor((10 * done) / total) : 10;
    if (tenth === lastTenth && at - lastAt < everyMs && done !== total) return;
    lastTenth = tenth;
    lastAt = at;
    stream.write(`${text}\n`);
  };
}

/** One reporter per model, for passes that run several (eval --served, cascade:calibrate). */
export function progressPerModel(options: ProgressOptions = {}): (model: string, done: number, total: number) => void {
  const reporters = new Map<string, Progress>();
  return (model, done, total) => {
    if (!reporters.has(model)) reporters.set(model, progressReporter(model, options));
    reporters.get(model)!(done, total);
  };
}
