/**
 * SSLD's "top-k per class" selection: each pool image is assigned to the teacher's top class, and
 * for every class the k images with the highest probability for it are kept, so rare classes get
 * their share instead of being crowded out by the classes the crawl is full of.
 */
export interface SoftLabeled { path: string; probabilities: Float32Array | number[] }

export interface MiningResult<T extends SoftLabeled> {
  selected: Array<T & { teacherLabel: string; score: number }>;
  perClass: Record<string, { candidates: number; selected: number; minScore: number | null }>;
  belowMinScore: number;
}

export function topKPerClass<T extends SoftLabeled>(items: readonly T[], classes: readonly string[], k: number, minScore = 0): MiningResult<T> {
  const buckets = classes.map(() => [] as Array<{ item: T; score: number }>);
  let belowMinScore = 0;
  for (const item of items) {
    let best = 0;
    for (let i = 1; i < classes.length; i++) if (item.probabilities[i]! > item.probabilities[best]!) best = i;
    const score = Number(item.probabilities[best]);
    if (score < minScore) { belowMinScore++; continue; }
    buckets[best]!.push({ item, score });
  }
  const selected: MiningResult<T>['selected'] = [];
  const perClass: MiningResult<T>['perClass'] = {};
  buckets.forEach((bucket, c) => {
    // Ties broken by path so the selection is reproducible.
    bucket.sort((a, b) => b.score - a.score || a.item.path.localeCompare(b.item.path));
    const chosen = bucket.slice(0, k);
    chosen.forEach(({ item, score }) => selected.push({ ...item, teacherLabel: classes[c]!, score }));
    perClass[classes[c]!] = { candidates: bucket.length, selected: chosen.length, minScore: chosen.length ? chosen.at(-1)!.score : null };
  });
  return { selected, perClass, belowMinScore };
}
