import assert from "node:assert/strict";
import { test } from "node:test";

import { accuracy } from "../src/accuracy";
import { Registry } from "prom-client";

import { PerformanceMonitor } from "../src/monitor";

function sample(text: string, line: string): number | undefined {
  const found = text.split("\n").find((l) => l.startsWith(line + " "));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

test("recordRun exports the catalog's names and labels", async () => {
  const monitor = new PerformanceMonitor({ registry: new Registry() });
  monitor.recordRun({ model: "nw-primary" }, {
    status: "success", durationMs: 42, tokens: 120, cost: 0.5, memoryMb: 256, cpuMs: 30, quality: 0.9, confidence: 0.75,
  });
  monitor.recordRun({ model: "nw-primary" }, { status: "timeout", durationMs: 10_000 });
  monitor.recordRun({ agent: "triage" }, { status: "error", durationMs: 3, errorType: "bad-input" });
  const text = await monitor.metrics();
  const m = 'model="nw-primary",kind="model"';
  assert.equal(sample(text, `neuroweaver_requests_total{${m},outcome="success"}`), 1);
  assert.equal(sample(text, `neuroweaver_requests_total{${m},outcome="timeout"}`), 1);
  assert.equal(sample(text, `neuroweaver_errors_total{${m},error_type="timeout"}`), 1);
  assert.equal(sample(text, 'neuroweaver_errors_total{model="triage",kind="agent",error_type="bad-input"}'), 1);
  assert.equal(sample(text, `neuroweaver_request_duration_seconds_bucket{le="0.05",${m}}`), 1);
  assert.equal(sample(text, `neuroweaver_request_duration_seconds_bucket{le="10",${m}}`), 2);
  assert.equal(sample(text, `neuroweaver_request_duration_seconds_sum{${m}}`), 10.042);
  assert.equal(sample(text, `neuroweaver_tokens_total{${m}}`), 120);
  assert.equal(sample(text, `neuroweaver_cost_total{${m}}`), 0.5);
  assert.equal(sample(text, `neuroweaver_cpu_seconds_total{${m}}`), 0.03);
  assert.equal(sample(text, `neuroweaver_memory_bytes{${m}}`), 256_000_000);
  assert.equal(sample(text, `neuroweaver_quality_bucket{le="0.9",${m}}`), 1);
  assert.equal(sample(text, `neuroweaver_confidence_bucket{le="0.7",${m}}`), 0);
  assert.equal(sample(text, `neuroweaver_confidence_bucket{le="0.8",${m}}`), 1);
  assert.equal(sample(text, `neuroweaver_errors_total{${m},error_type="success"}`), undefined);
});

test("recordRun refuses what would corrupt a series, and records nothing then", async () => {
  const monitor = new PerformanceMonitor({ registry: new Registry() });
  assert.throws(() => monitor.recordRun({ model: "m" }, { status: "success", durationMs: -1 }), RangeError);
  assert.throws(() => monitor.recordRun({ model: "m" }, { status: "success", durationMs: 1, tokens: NaN }), RangeError);
  assert.throws(() => monitor.recordRun({ model: "m" }, { status: "ok" as "success", durationMs: 1 }), RangeError);
  assert.throws(() => monitor.recordRun({ model: "m", agent: "a" } as never, { status: "success", durationMs: 1 }), TypeError);
  assert.throws(() => monitor.recordRun({ model: "" }, { status: "success", durationMs: 1 }), RangeError);
  assert.throws(() => monitor.recordRun({ model: "m" }, { status: "success", durationMs: 1, quality: 1.5 }), RangeError);
  assert.throws(() => monitor.recordRun({ model: "m" }, { status: "success", durationMs: "5" as never }), RangeError);
  assert.throws(() => monitor.recordRun({ model: "m" }, { status: "success", durationMs: 1, quality: "0.5" as never }), RangeError);
  assert.throws(() => monitor.recordRun({ model: "m" }, { status: "success", durationMs: 1, errorType: "x" }), RangeError);
  assert.throws(() => monitor.recordAccuracy(1, 1, "", { model: "m" }), RangeError);
  assert.doesNotMatch(await monitor.metrics(), /model="m"/);
});

test("recordAccuracy scores, observes once per call under its source, and returns the score", async () => {
  const monitor = new PerformanceMonitor({ registry: new Registry() });
  assert.equal(monitor.recordAccuracy(90, 100, "labels", { model: "nw-primary" }), 0.9);
  assert.equal(monitor.recordAccuracy("a bot", "a bot", "labels", { model: "nw-primary" }), 1);
  const text = await monitor.metrics();
  const l = 'model="nw-primary",kind="model",source="labels"';
  assert.equal(sample(text, `neuroweaver_accuracy_score_count{${l}}`), 2);
  assert.equal(sample(text, `neuroweaver_accuracy_score_sum{${l}}`), 1.9);
});

test("accuracy refuses what is not a JSON value (the vectors pin the scores)", () => {
  assert.throws(() => accuracy(new Set([1]), new Set([1])), TypeError);
  assert.throws(() => accuracy(1, undefined), TypeError);
  assert.equal(accuracy([1, 1], [1, 1, 1]), 2 / 3);
});

test("constant labels go on every series; zero tokens and cost create no series", async () => {
  const monitor = new PerformanceMonitor({ registry: new Registry(), labels: { namespace: "shop" } });
  monitor.recordRun({ agent: "triage" }, { status: "success", durationMs: 1, tokens: 0, cost: 0 });
  const text = await monitor.metrics();
  assert.equal(sample(text, 'neuroweaver_requests_total{model="triage",kind="agent",namespace="shop",outcome="success"}'), 1);
  assert.doesNotMatch(text, /neuroweaver_tokens_total\{/);
  assert.doesNotMatch(text, /neuroweaver_cost_total\{/);
});
