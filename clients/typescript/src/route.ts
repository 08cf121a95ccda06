/**
 * Choosing a model per request from route.json: by its `traffic` weights, then along its `fallbacks`.
 */

import { ROUTE, RouteDocument } from "./documents";
import { DocumentReader, ReaderOptions } from "./readers";

/** The weights to choose by: `traffic`, or all to `active` when a document has none. */
export function weights(document: RouteDocument): [string, number][] {
  const entries = Object.entries(document.traffic);
  return entries.length > 0 ? entries : [[document.active, 100]];
}

/**
 * The model a request goes to for a uniform random number `random` in [0, 1): each model gets the share
 * of [0, 1) its weight gives it, in the document's order. Deterministic, so tests can give the number.
 */
export function pick(document: RouteDocument, random: number): string {
  const entries = weights(document);
  const total = entries.reduce((sum, [, weight]) => sum + weight, 0);
  let point = Math.min(Math.max(random, 0), 1) * total;
  for (const [model, weight] of entries) {
    if (point < weight) return model;
    point -= weight;
  }
  return entries[entries.length - 1][0];
}

/**
 * The models to try for a request that `chosen` was picked for, in order: the chosen one, then the active
 * model if it was not chosen, then the fallbacks; each once.
 */
export function attemptsFor(document: RouteDocument, chosen: string): string[] {
  return [...new Set([chosen, document.active, ...document.fallbacks])];
}

/**
 * Reads `route.json` and chooses a model per request.
 *
 * `choose()` is a smooth weighted round robin, the same as the Python RouteReader's: over any 100
 * consecutive choices each model gets exactly its percent, spread evenly (a 5 % trickle is one request in
 * twenty, not a random burst). `chooseRandom()` draws by the weights instead, for routers spread over
 * many processes where a shared round robin does not exist.
 */
export class RouteReader extends DocumentReader<RouteDocument> {
  private credit = new Map<string, number>();

  constructor(options: ReaderOptions = {}) {
    super(ROUTE, options);
  }

  protected override accepted(document: RouteDocument): void {
    this.credit = new Map(Object.keys(document.traffic).map((m) => [m, this.credit.get(m) ?? 0]));
  }

  /** The model for the next request (undefined before the first document). */
  choose(): string | undefined {
    const document = this.current;
    if (document === undefined) return undefined;
    const entries = weights(document);
    let chosen = entries[0][0];
    let best = -Infinity;
    let total = 0;
    for (const [model, weight] of entries) {
      const credit = (this.credit.get(model) ?? 0) + weight;
      this.credit.set(model, credit);
      total += weight;
      if (credit > best) [chosen, best] = [model, credit]; // strict: the first of equals, as Python's max()
    }
    this.credit.set(chosen, best - total);
    return chosen;
  }

  /** The model for the next request drawn with `random` in [0, 1) (default Math.random()). */
  chooseRandom(random: number = Math.random()): string | undefined {
    const document = this.current;
    return document === undefined ? undefined : pick(document, random);
  }

  /** The models to try for the next request: choose(), then the active model, then the fallbacks. */
  attempts(): string[] {
    const chosen = this.choose();
    const document = this.current;
    return chosen === undefined || document === undefined ? [] : attemptsFor(document, chosen);
  }
}
