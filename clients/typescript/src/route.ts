/**
 * Choosing a model per request from route.json: by its `traffic` weights, then along its `fallbacks`.
 *
 * choose() maps a number `r` in [0, 1) to a model: the models are taken in order of their names (by code
 * point), `x = r × (sum of the weights)`, and the first model whose cumulative weight exceeds `x` is
 * chosen; empty `traffic` sends everything to `active`. The shared vectors (clients/vectors/choose.json)
 * pin this for every language, so the Python and TypeScript clients route a given `r` alike.
 */

import { ROUTE, RouteDocument } from "./documents";
import { DocumentReader, ReaderOptions } from "./readers";

/** Order of two strings by Unicode code point (as Python sorts), not by UTF-16 code unit. */
export function byCodePoint(a: string, b: string): number {
  const [x, y] = [Array.from(a), Array.from(b)];
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) {
    const d = (x[i].codePointAt(0) as number) - (y[i].codePointAt(0) as number);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/** The model `r` (0 <= r < 1) falls on by `traffic`'s weights; `active` when there are none. */
export function choose(traffic: Record<string, number>, active: string, r: number): string {
  if (!(r >= 0 && r < 1)) throw new RangeError(`r must be in [0, 1), not ${r}`);
  const weights = Object.entries(traffic);
  if (weights.some(([, w]) => !(w >= 0))) throw new RangeError(`traffic weights must not be negative: ${JSON.stringify(traffic)}`);
  const total = weights.reduce((sum, [, w]) => sum + w, 0);
  if (total === 0) return active;
  const x = r * total;
  let cumulative = 0;
  const ordered = weights.sort(([a], [b]) => byCodePoint(a, b));
  for (const [model, weight] of ordered) {
    cumulative += weight;
    if (cumulative > x) return model;
  }
  return ordered[ordered.length - 1][0]; // unreachable: r < 1 keeps x below the total
}

/** The models to try for one request, in order: choose()'s, then `active`, then `fallbacks`, each once. */
export function attempts(traffic: Record<string, number>, active: string, fallbacks: string[], r: number): string[] {
  return [...new Set([choose(traffic, active, r), active, ...fallbacks])];
}

/**
 * Numbers in [0, 1) that cover every hundredth exactly once per 100 calls, in a scattered order: the n-th
 * is `((n × 61) mod 100 + 0.5) / 100` (61 is coprime with 100 and near 100/φ). Over any 100 consecutive
 * requests a route whose weights are integer percents sends each model exactly its percent.
 */
export class EvenSequence {
  static readonly STEP = 61;
  static readonly SLOTS = 100;
  private n = 0;

  /** The next number of the sequence (the first is 0.005). */
  next(): number {
    const slot = (this.n * EvenSequence.STEP) % EvenSequence.SLOTS;
    this.n += 1;
    return (slot + 0.5) / EvenSequence.SLOTS;
  }
}

/**
 * Reads `route.json` and chooses a model per request: by default with an EvenSequence (a 5 % trickle is
 * one request in about twenty, never a burst or a drought); pass `r` (e.g. Math.random()) to draw instead.
 */
export class RouteReader extends DocumentReader<RouteDocument> {
  private readonly sequence = new EvenSequence();

  constructor(options: ReaderOptions = {}) {
    super(ROUTE, options);
  }

  /** The model for the next request (undefined before the first document). */
  choose(r?: number): string | undefined {
    const document = this.current;
    if (document === undefined) return undefined;
    return choose(document.traffic, document.active, r ?? this.sequence.next());
  }

  /** The models to try for the next request: the chosen one, then the active model, then the fallbacks. */
  attempts(r?: number): string[] {
    const document = this.current;
    if (document === undefined) return [];
    return attempts(document.traffic, document.active, document.fallbacks, r ?? this.sequence.next());
  }
}
