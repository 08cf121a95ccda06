/**
 * Accuracy of a prediction against the real outcome, in [0, 1], by the data type of the actual value:
 * - numbers: 1 - |p - a| / |a|; for a = 0, 1 when p = 0 else 0;
 * - strings: the share of the actual's distinct words (lower-cased, split on whitespace) that the
 *   prediction contains; two empty strings score 1, a prediction for an empty actual 0;
 * - objects: (key overlap + value similarity) / 2, where key overlap is the share of the actual's keys
 *   the prediction has and value similarity the mean score of the values under shared keys (0 when none);
 * - arrays: the share of the actual's distinct elements the prediction contains (compared as JSON);
 * - booleans, null and values of different types: 1 when equal, else 0.
 * Two empty collections score 1; a non-empty prediction of an empty actual 0. Every score is clamped.
 */

export type Value = null | boolean | number | string | Value[] | { [key: string]: Value };

function clamp(score: number): number {
  return Number.isFinite(score) ? Math.min(1, Math.max(0, score)) : 0;
}

function kind(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function overlap(predicted: Set<string>, actual: Set<string>): number {
  if (actual.size === 0) return predicted.size === 0 ? 1 : 0;
  let shared = 0;
  for (const item of actual) if (predicted.has(item)) shared += 1;
  return shared / actual.size;
}

function words(text: string): Set<string> {
  return new Set(text.toLowerCase().split(/\s+/).filter((w) => w.length > 0));
}

/** The accuracy score of `predicted` against `actual`, in [0, 1]. */
export function accuracy(predicted: unknown, actual: unknown): number {
  const type = kind(actual);
  if (type !== kind(predicted)) return 0;
  switch (type) {
    case "number": {
      const [p, a] = [predicted as number, actual as number];
      if (a === 0) return p === 0 ? 1 : 0;
      return clamp(1 - Math.abs(p - a) / Math.abs(a));
    }
    case "string":
      return clamp(overlap(words(predicted as string), words(actual as string)));
    case "array":
      return clamp(
        overlap(new Set((predicted as unknown[]).map(canonical)), new Set((actual as unknown[]).map(canonical))),
      );
    case "object": {
      const [p, a] = [predicted as Record<string, unknown>, actual as Record<string, unknown>];
      const actualKeys = Object.keys(a);
      const predictedKeys = Object.keys(p);
      if (actualKeys.length === 0) return predictedKeys.length === 0 ? 1 : 0;
      const shared = actualKeys.filter((k) => Object.hasOwn(p, k));
      const keys = shared.length / actualKeys.length;
      const values = shared.length === 0 ? 0 : shared.reduce((s, k) => s + accuracy(p[k], a[k]), 0) / shared.length;
      return clamp((keys + values) / 2);
    }
    default:
      return canonical(predicted) === canonical(actual) ? 1 : 0;
  }
}
