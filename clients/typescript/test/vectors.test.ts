/**
 * The shared vectors (clients/vectors/, README there): the Python client's tests read the same files, so
 * both languages parse, verify, score and route alike. Every vector in the folder is read.
 */

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { Registry } from "prom-client";

import { accuracy } from "../src/accuracy";
import { DocumentError, parseProfile, parseRoute } from "../src/documents";
import { DURATION_BUCKETS, PerformanceMonitor, Run, SCORE_BUCKETS, Subject } from "../src/monitor";
import { attempts, choose, EvenSequence, RouteReader } from "../src/route";
import { SignatureError, sign, signWebhook, verify, verifyWebhook } from "../src/signing";
import { PACKAGE, VECTORS } from "./helpers";

function vectors<T>(name: string): T {
  return JSON.parse(readFileSync(join(VECTORS, name), "utf8")) as T;
}

const HANDLED = ["accuracy.json", "choose.json", "documents.json", "metrics.json", "signatures.json"];

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

interface MetricSpec {
  name: string;
  type: "counter" | "gauge" | "histogram";
  labels: string[];
  buckets?: "durationBuckets" | "scoreBuckets";
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

type RunCall = Run & { model?: string; agent?: string };

interface MetricsVectors {
  durationBuckets: number[];
  scoreBuckets: number[];
  metrics: MetricSpec[];
  runs: { name: string; call: RunCall; samples: Sample[]; absent: string[] }[];
  invalidRuns: { name: string; call: RunCall }[];
}

const METRICS = vectors<MetricsVectors>("metrics.json");

/**
 * The catalog entries this package does not export: the Python client's ExternalMetrics (its
 * external-contributor helper) records them; a TypeScript service only runs models and agents.
 */
const PYTHON_ONLY = [
  "detector_external_calls_total",
  "detector_external_errors_total",
  "detector_external_duration_seconds",
  "detector_external_accuracy_ratio",
];

/** Every sample in `registry`, named as exposed (`_bucket`, `_sum`, `_count` for histograms). */
async function samples(registry: Registry): Promise<Sample[]> {
  return (await registry.getMetricsAsJSON()).flatMap((family) =>
    family.values.map((v) => ({
      name: (v as { metricName?: string }).metricName ?? family.name,
      labels: Object.fromEntries(Object.entries(v.labels).map(([k, x]) => [k, String(x)])),
      value: v.value,
    })),
  );
}

function le(value: string): number {
  return value === "+Inf" ? Infinity : Number(value);
}

/** Same label names and values; `le` compares as a number ("1" equals "1.0"). */
function sameLabels(got: Record<string, string>, want: Record<string, string>): boolean {
  const keys = Object.keys(want);
  if (Object.keys(got).sort().join() !== [...keys].sort().join()) return false;
  return keys.every((k) => (k === "le" ? le(got[k]) === le(want[k]) : got[k] === want[k]));
}

/** A vector's call (camelCase record_run arguments) as recordRun's subject and run, keys given only. */
function split(call: RunCall): [Subject, Run] {
  const { model, agent, ...run } = call;
  const subject = { ...(model !== undefined && { model }), ...(agent !== undefined && { agent }) };
  return [subject as Subject, run];
}

test("metrics: the monitor registers exactly the catalog's metrics, names, types, labels and buckets", async (t) => {
  assert.deepEqual(DURATION_BUCKETS, METRICS.durationBuckets);
  assert.deepEqual(SCORE_BUCKETS, METRICS.scoreBuckets);
  const registry = new Registry();
  const monitor = new PerformanceMonitor({ registry });
  monitor.recordRun({ model: "m" }, {
    status: "error", durationMs: 1, tokens: 1, cost: 1, memoryMb: 1, cpuMs: 1, quality: 0.5, confidence: 0.5, errorType: "x",
  });
  monitor.recordAccuracy(1, 1, "review", { model: "m" });
  const families = await registry.getMetricsAsJSON();
  const got = await samples(registry);
  const names = METRICS.metrics.map((m) => m.name);
  assert.deepEqual(PYTHON_ONLY.filter((n) => !names.includes(n)), [], "every Python-only name is in the catalog");
  assert.deepEqual(
    families.map((f) => f.name).sort(),
    names.filter((n) => !PYTHON_ONLY.includes(n)).sort(),
    "the monitor registers the catalog's metrics less the Python-only ones, and nothing else",
  );
  // Should this package start exporting one of them, it leaves PYTHON_ONLY and is checked like the rest.
  const sources = readdirSync(join(PACKAGE, "src")).map((f) => readFileSync(join(PACKAGE, "src", f), "utf8")).join("\n");
  for (const name of PYTHON_ONLY) assert.ok(!sources.includes(name), `src/ exports ${name}: remove it from PYTHON_ONLY`);
  for (const metric of METRICS.metrics) {
    const skip = PYTHON_ONLY.includes(metric.name) && "Python only (ExternalMetrics): not exported by this package";
    await t.test(metric.name, { skip }, () => {
      assert.equal(families.find((f) => f.name === metric.name)?.type, metric.type);
      const labels = [...metric.labels].sort();
      // prom-client drops a registered label that a sample leaves unset, so the registration is read too.
      const registered = registry.getSingleMetric(metric.name) as unknown as { labelNames: string[] };
      assert.deepEqual([...registered.labelNames].sort(), labels, "registered label names");
      if (metric.type === "histogram") {
        const buckets = got.filter((s) => s.name === `${metric.name}_bucket`);
        assert.deepEqual(buckets.map((s) => le(s.labels.le)), [...METRICS[metric.buckets as "durationBuckets"], Infinity]);
        for (const s of buckets) assert.deepEqual(Object.keys(s.labels).filter((k) => k !== "le").sort(), labels);
        for (const suffix of ["_sum", "_count"]) {
          const found = got.filter((s) => s.name === metric.name + suffix);
          assert.equal(found.length, 1, suffix);
          assert.deepEqual(Object.keys(found[0].labels).sort(), labels, suffix);
        }
      } else {
        const found = got.filter((s) => s.name === metric.name);
        assert.equal(found.length, 1);
        assert.deepEqual(Object.keys(found[0].labels).sort(), labels);
      }
    });
  }
});

test("metrics: each run vector exports exactly its samples, and none of its absent metrics", async (t) => {
  assert.ok(METRICS.runs.length >= 3);
  for (const c of METRICS.runs) {
    await t.test(c.name, async () => {
      const registry = new Registry();
      new PerformanceMonitor({ registry }).recordRun(...split(c.call));
      const got = await samples(registry);
      for (const want of c.samples) {
        const matches = got.filter((s) => s.name === want.name && sameLabels(s.labels, want.labels));
        assert.equal(matches.length, 1, JSON.stringify(want));
        assert.ok(Math.abs(matches[0].value - want.value) <= 1e-9 * Math.max(1, Math.abs(want.value)), `${JSON.stringify(want)}: ${matches[0].value}`);
      }
      // A metric is absent when none of its samples is (a histogram's are its _bucket, _sum and _count).
      const of = (name: string) => [name, `${name}_bucket`, `${name}_sum`, `${name}_count`];
      const absent = got.filter((s) => c.absent.some((name) => of(name).includes(s.name)));
      assert.deepEqual(absent, []);
    });
  }
});

test("metrics: each invalid run is refused and records nothing", async (t) => {
  assert.ok(METRICS.invalidRuns.length >= 5);
  for (const c of METRICS.invalidRuns) {
    await t.test(c.name, async () => {
      const registry = new Registry();
      assert.throws(() => new PerformanceMonitor({ registry }).recordRun(...split(c.call)), (e: Error) => e instanceof RangeError || e instanceof TypeError);
      assert.deepEqual(await samples(registry), []);
    });
  }
});
