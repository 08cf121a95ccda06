/**
 * The shared vectors (clients/vectors/, README there): the Python client's tests read the same files, so
 * both languages parse, verify, score and route alike. Every vector in the folder is read.
 */

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { accuracy } from "../src/accuracy";
import { DocumentError, parseProfile, parseRoute } from "../src/documents";
import { attempts, choose, EvenSequence, RouteReader } from "../src/route";
import { SignatureError, sign, signWebhook, verify, verifyWebhook } from "../src/signing";
import { VECTORS } from "./helpers";

function vectors<T>(name: string): T {
  return JSON.parse(readFileSync(join(VECTORS, name), "utf8")) as T;
}

const HANDLED = ["accuracy.json", "choose.json", "documents.json", "signatures.json"];

test("every vector file in the folder is one these tests read", () => {
  const files = readdirSync(VECTORS).filter((f) => f.endsWith(".json"));
  assert.deepEqual(files.sort(), HANDLED);
});

interface DocumentVector {
  name: string;
  document: "profile.json" | "route.json";
  payload: string;
  valid: boolean;
  expected?: unknown;
  field?: string;
}

test("documents: valid ones parse to the expected document, invalid ones are refused", () => {
  const { vectors: cases } = vectors<{ vectors: DocumentVector[] }>("documents.json");
  assert.ok(cases.length >= 30);
  for (const v of cases) {
    const parse = v.document === "profile.json" ? parseProfile : parseRoute;
    if (v.valid) {
      assert.deepEqual(parse(v.payload), v.expected, v.name);
    } else {
      assert.throws(() => parse(v.payload), DocumentError, v.name);
      if (v.field) {
        // The offending field is named (as a JSON path: external.0.timeoutMs -> $.external[0].timeoutMs).
        const path = "$." + v.field.replace(/\.(\d+)(?=\.|$)/g, "[$1]");
        assert.throws(() => parse(v.payload), (e: Error) => e.message.includes(path), `${v.name}: names ${path}`);
      }
    }
  }
});

interface SignatureVector {
  name: string;
  keyHex: string;
  payload: string;
  expected: string;
  signature: string;
  valid: boolean;
}

interface WebhookVector {
  name: string;
  keyHex: string;
  body: string;
  timestamp: number;
  expected: string;
  header: string;
  now: number;
  tolerance: number;
  valid: boolean;
  reason?: string;
}

test("signatures: documents sign to the expected value and verify exactly as the vectors say", () => {
  const { documents, webhooks } = vectors<{ documents: SignatureVector[]; webhooks: WebhookVector[] }>("signatures.json");
  assert.ok(documents.length >= 10 && webhooks.length >= 5);
  for (const v of documents) {
    const key = Buffer.from(v.keyHex, "hex");
    assert.equal(sign(key, v.payload), v.expected, v.name);
    assert.equal(verify(key, v.payload, v.signature), v.valid, v.name);
  }
  for (const v of webhooks) {
    const key = Buffer.from(v.keyHex, "hex");
    assert.equal(signWebhook(key, v.body, v.timestamp), v.expected, v.name);
    if (v.valid) {
      assert.equal(verifyWebhook(key, v.body, v.header, v.now, v.tolerance), v.timestamp, v.name);
    } else {
      assert.throws(
        () => verifyWebhook(key, v.body, v.header, v.now, v.tolerance),
        (e: Error) => e instanceof SignatureError && e.message.includes(v.reason ?? ""),
        v.name,
      );
    }
  }
});

function revive(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(revive);
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value);
    if (entries.length === 1 && entries[0][0] === "$number") return Number(entries[0][1]);
    return Object.fromEntries(entries.map(([k, v]) => [k, revive(v)]));
  }
  return value;
}

test("accuracy: every case scores as the vectors say", () => {
  const { tolerance, cases } = vectors<{ tolerance: number; cases: { name: string; predicted: unknown; actual: unknown; score: number }[] }>("accuracy.json");
  assert.ok(cases.length >= 50);
  for (const c of cases) {
    const got = accuracy(revive(c.predicted), revive(c.actual));
    assert.ok(Math.abs(got - c.score) <= tolerance, `${c.name}: ${got}, not ${c.score}`);
  }
});

interface ChooseCase {
  name: string;
  traffic: Record<string, number>;
  active: string;
  fallbacks: string[];
  r: number;
  chosen: string;
  attempts: string[];
}

test("choose: the chosen model and the attempts for each r, and the readers' even sequence", () => {
  const { cases, evenSequence } = vectors<{ cases: ChooseCase[]; evenSequence: { first: number[] } }>("choose.json");
  assert.ok(cases.length >= 10);
  for (const c of cases) {
    assert.equal(choose(c.traffic, c.active, c.r), c.chosen, c.name);
    assert.deepEqual(attempts(c.traffic, c.active, c.fallbacks, c.r), c.attempts, c.name);
  }
  const sequence = new EvenSequence();
  assert.deepEqual(evenSequence.first.map(() => sequence.next()), evenSequence.first);
  // The reader draws from that sequence: its first choices are choose() of those numbers.
  const c = cases.find((x) => Object.keys(x.traffic).length > 1) as ChooseCase;
  const reader = new RouteReader();
  reader.accept(JSON.stringify({
    route: { namespace: "n", name: "r" }, active: c.active, primary: c.active, state: "FailedOver",
    traffic: c.traffic, fallbacks: c.fallbacks, reason: "", revision: 1, decidedAt: "2026-12-01T00:00:00Z", candidates: [],
  }));
  assert.deepEqual(evenSequence.first.map(() => reader.choose()), evenSequence.first.map((r) => choose(c.traffic, c.active, r)));
});
