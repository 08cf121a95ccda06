import assert from "node:assert/strict";
import { test } from "node:test";

import { RouteDocument } from "../src/documents";
import { byCodePoint, choose, RouteReader } from "../src/route";
import { fixtureText } from "./helpers";

const base = JSON.parse(fixtureText("route-failedover.json")) as RouteDocument; // nw-backup1 90, nw-primary 10

test("over any 100 requests each model gets exactly its percent; a 10 % trickle is spread out", () => {
  const reader = new RouteReader();
  reader.accept(fixtureText("route-failedover.json"));
  const choices = Array.from({ length: 300 }, () => reader.choose());
  for (let start = 0; start <= 200; start += 37) {
    assert.equal(choices.slice(start, start + 100).filter((m) => m === "nw-primary").length, 10);
  }
  const at = choices.flatMap((m, i) => (m === "nw-primary" ? [i] : []));
  const gaps = at.slice(1).map((i, k) => i - at[k]);
  assert.ok(Math.max(...gaps) <= 20, String(gaps)); // never a drought
});

test("choose(r) draws by the weights for uniform random numbers; r outside [0, 1) is refused", () => {
  const reader = new RouteReader();
  assert.equal(reader.choose(0.5), undefined);
  assert.deepEqual(reader.attempts(), []);
  reader.accept(fixtureText("route-failedover.json"));
  let state = 42; // a fixed linear congruential sequence: the count below is deterministic
  const draws = Array.from({ length: 10_000 }, () => reader.choose((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31));
  const trickle = draws.filter((m) => m === "nw-primary").length;
  assert.ok(trickle > 900 && trickle < 1100, String(trickle));
  assert.throws(() => reader.choose(1), RangeError);
  assert.throws(() => reader.choose(-0.1), RangeError);
  assert.throws(() => reader.choose(NaN), RangeError);
  assert.throws(() => choose({ a: -1, b: 2 }, "a", 0.5), RangeError);
  assert.deepEqual(reader.attempts(0.95), ["nw-primary", "nw-backup1", "nw-backup2"]);
  assert.deepEqual(reader.attempts(0.05), ["nw-backup1", "nw-backup2"]);
  assert.equal(base.active, "nw-backup1");
});

test("models are ordered by code point, as Python sorts, not by UTF-16 unit", () => {
  // U+FF61 sorts before U+1F600 by code point, after it by UTF-16 code unit (0xD83D).
  assert.ok(byCodePoint("\uff61", "\u{1f600}") < 0);
  assert.ok(["\uff61", "\u{1f600}"].sort()[0] === "\u{1f600}");
  assert.equal(choose({ "\u{1f600}": 50, "\uff61": 50 }, "x", 0.25), "\uff61");
  assert.ok(byCodePoint("a", "ab") < 0 && byCodePoint("b", "a") > 0 && byCodePoint("a", "a") === 0);
});
