/**
 * Accuracy of a prediction against the real outcome, in [0, 1], by the data type of the actual value.
 * The rules are the Python client's (detection_operator.client.accuracy); the shared vectors in
 * clients/vectors/accuracy.json pin every case for both:
 * - numbers: 1 - |p - a| / |a|; when a = 0, 1 - |p|; NaN scores 0; an infinite actual scores 1 only for
 *   the same infinity, an infinite prediction of a finite actual 0;
 * - booleans: 1 when equal, else 0; a boolean never matches a number;
 * - strings: the share of the actual's distinct words the prediction contains; words are maximal runs of
 *   characters that are neither ASCII whitespace nor ASCII punctuation, ASCII letters lowercased;
 * - objects: (key overlap + value similarity) / 2: the share of the actual's keys present, and the mean
 *   score of the shared keys' values (recursive; 0 when none is shared);
 * - arrays: the share of the actual's elements matched by an equal predicted element, each used once
 *   (deep JSON equality: 1 equals 1.0, true does not equal 1, NaN equals nothing);
 * - an empty actual (no words, {}, []) scores 1 against an empty prediction, else 0;
 * - null: 1 when both are null; any other type mismatch 0. Every score is clamped to [0, 1].
 */

const SEPARATORS = new Set(" \t\n\r\v\f!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");

type Kind = "null" | "bool" | "number" | "string" | "object" | "list";

function kind(value: unknown): Kind {
  if (value === null) return "null";
  if (typeof value === "boolean") return "bool";
  if (typeof value === "number") return "number";
  if (typeof value === "string") return "string";
  if (Array.isArray(value)) return "list";
  if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) return "object";
  throw new TypeError(`cannot score ${String(value)}: only JSON values (null, boolean, number, string, object, array) have an accuracy`);
}

function clamp(score: number): number {
  return Math.min(1, Math.max(0, score));
}

/** The distinct words of `text` as accuracy() compares them. */
export function words(text: string): Set<string> {
  const found = new Set<string>();
  let current = "";
  for (const char of text) {
    if (SEPARATORS.has(char)) {
      if (current) found.add(current);
      current = "";
    } else {
      current += char >= "A" && char <= "Z" ? char.toLowerCase() : char;
    }
  }
  if (current) found.add(current);
  return found;
}

function number(p: number, a: number): number {
  if (Number.isNaN(p) || Number.isNaN(a)) return 0;
  if (!Number.isFinite(a) || !Number.isFinite(p)) return p === a ? 1 : 0;
  if (a === 0) return clamp(1 - Math.abs(p));
  return clamp(1 - Math.abs(p - a) / Math.abs(a));
}

function equal(left: unknown, right: unknown): boolean {
  const k = kind(left);
  if (k !== kind(right)) return false;
  if (k === "object") {
    const [l, r] = [left as Record<string, unknown>, right as Record<string, unknown>];
    const keys = Object.keys(l);
    return keys.length === Object.keys(r).length && keys.every((key) => Object.hasOwn(r, key) && equal(l[key], r[key]));
  }
  if (k === "list") {
    const [l, r] = [left as unknown[], right as unknown[]];
    return l.length === r.length && l.every((item, i) => equal(item, r[i]));
  }
  return left === right; // NaN !== NaN: NaN equals nothing
}

function list(predicted: unknown[], actual: unknown[]): number {
  if (actual.length === 0) return predicted.length === 0 ? 1 : 0;
  const unmatched = [...predicted];
  let matched = 0;
  for (const element of actual) {
    const i = unmatched.findIndex((candidate) => equal(candidate, element));
    if (i >= 0) {
      unmatched.splice(i, 1);
      matched += 1;
    }
  }
  return matched / actual.length;
}

function object(predicted: Record<string, unknown>, actual: Record<string, unknown>): number {
  const keys = Object.keys(actual);
  if (keys.length === 0) return Object.keys(predicted).length === 0 ? 1 : 0;
  const shared = keys.filter((key) => Object.hasOwn(predicted, key));
  const values = shared.length === 0 ? 0 : shared.reduce((s, key) => s + accuracy(predicted[key], actual[key]), 0) / shared.length;
  return (shared.length / keys.length + values) / 2;
}

/** How close `predicted` is to `actual`, in [0, 1]. Throws TypeError for a value that is not JSON. */
export function accuracy(predicted: unknown, actual: unknown): number {
  const k = kind(actual);
  if (k !== kind(predicted)) return 0;
  switch (k) {
    case "null":
      return 1;
    case "bool":
      return predicted === actual ? 1 : 0;
    case "number":
      return number(predicted as number, actual as number);
    case "string": {
      const expected = words(actual as string);
      const given = words(predicted as string);
      if (expected.size === 0) return given.size === 0 ? 1 : 0;
      let shared = 0;
      for (const word of expected) if (given.has(word)) shared += 1;
      return shared / expected.size;
    }
    case "object":
      return clamp(object(predicted as Record<string, unknown>, actual as Record<string, unknown>));
    case "list":
      return clamp(list(predicted as unknown[], actual as unknown[]));
  }
}
