import assert from "node:assert/strict";
import { test } from "node:test";

import { RouteDocument, parseRoute } from "../src/documents";
import { attemptsFor, pick, RouteReader } from "../src/route";
import { fixtureText } from "./helpers";

interface ChoiceCase {
  traffic: Record<string, number>;
  active: string;
  fallbacks: string[];
  choices: string[];
  nextAttempts: string[];
}

const base = JSON.parse(fixtureText("route-failedover.json")) as RouteDocument;

test("choose() makes the Python RouteReader's choices, request for request", () => {
  const { cases } = JSON.parse(fixtureText("choices.json")) as { cases: ChoiceCase[] };
  assert.ok(cases.length >= 4);
  for (const c of cases) {
    const reader = new RouteReader();
    reader.accept(JSON.stringify({ ...base, traffic: c.traffic, active: c.active, fallbacks: c.fallbacks }));
    assert.deepEqual(Array.from({ length: c.choices.length }, () => reader.choose()), c.choices, JSON.stringify(c.traffic));
    assert.deepEqual(reader.attempts(), c.nextAttempts);
  }
});

test("over 100 choices each model gets exactly its percent; a 10 % trickle is spread evenly", () => {
  const reader = new RouteReader();
  reader.accept(fixtureText("route-failedover.json"));
  const choices = Array.from({ length: 100 }, () => reader.choose());
  assert.equal(choices.filter((m) => m === "nw-primary").length, 10);
  const gaps = choices.flatMap((m, i) => (m === "nw-primary" ? [i] : [])).map((i, k, all) => (k ? i - all[k - 1] : 10));
  assert.ok(gaps.every((g) => g === 10), String(gaps));
});

test("a new document keeps the credit of the models still in it", () => {
  const reader = new RouteReader();
  reader.accept(fixtureText("route-failedover.json"));
  assert.equal(reader.choose(), "nw-backup1");
  reader.accept(JSON.stringify({ ...base, revision: 3, traffic: { "nw-backup1": 100 } }));
  assert.deepEqual(reader.attempts(), ["nw-backup1", "nw-backup2"]);
});

test("pick() maps a random number onto the weights in document order; chooseRandom() draws by them", () => {
  const doc = parseRoute(fixtureText("route-failedover.json")); // nw-backup1 90, nw-primary 10
  assert.equal(pick(doc, 0), "nw-backup1");
  assert.equal(pick(doc, 0.8999), "nw-backup1");
  assert.equal(pick(doc, 0.9), "nw-primary");
  assert.equal(pick(doc, 0.99999), "nw-primary");
  assert.equal(pick(doc, 1), "nw-primary");
  assert.equal(pick({ ...doc, traffic: {} }, 0.5), "nw-backup1", "no traffic: all to active");
  const reader = new RouteReader();
  assert.equal(reader.chooseRandom(0.5), undefined);
  reader.accept(fixtureText("route-failedover.json"));
  let state = 42; // a fixed linear congruential sequence: the count below is deterministic
  const draws = Array.from({ length: 10_000 }, () => reader.chooseRandom((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31));
  const trickle = draws.filter((m) => m === "nw-primary").length;
  assert.ok(trickle > 900 && trickle < 1100, String(trickle));
});

test("attempts: the chosen model, the active one, then the fallbacks, each once", () => {
  const doc = parseRoute(fixtureText("route-failedover.json"));
  assert.deepEqual(attemptsFor(doc, "nw-primary"), ["nw-primary", "nw-backup1", "nw-backup2"]);
  assert.deepEqual(attemptsFor(doc, "nw-backup1"), ["nw-backup1", "nw-backup2"]);
  assert.deepEqual(new RouteReader().attempts(), []);
});
