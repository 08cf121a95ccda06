/**
 * The SDK metrics: what a service records about its own model and agent runs, exported with prom-client
 * under the names and labels the operator's generated queries (`metricsFrom: sdk`) read.
 */

import { Counter, Gauge, Histogram, Registry } from "prom-client";

import { accuracy } from "./accuracy";

export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
export const RATIO_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
const BYTES_PER_MB = 1024 * 1024;

export type Outcome = "success" | "error" | "timeout";
export type Kind = "model" | "agent";

/** Who ran: a model or an agent, by name. */
export type Subject = { model: string; agent?: undefined } | { agent: string; model?: undefined };

/** One run of a model or an agent. Only `status` and `durationMs` are required. */
export interface Run {
  status: Outcome;
  durationMs: number;
  tokens?: number;
  cost?: number;
  memoryMb?: number;
  cpuMs?: number;
  /** Quality and confidence of the result, in [0, 1]. */
  quality?: number;
  confidence?: number;
  /** What went wrong, for a run that did not succeed (default: its status). */
  errorType?: string;
}

function labels(subject: Subject): { model: string; kind: Kind } {
  if (subject.model !== undefined && subject.agent === undefined) return { model: subject.model, kind: "model" };
  if (subject.agent !== undefined && subject.model === undefined) return { model: subject.agent, kind: "agent" };
  throw new TypeError("name exactly one of model or agent");
}

function finite(name: string, value: number | undefined, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isFinite(value) || value < min) throw new RangeError(`${name} must be a finite number >= ${min}`);
  return value;
}

/** Records model and agent runs and accuracy samples into a prom-client registry. */
export class PerformanceMonitor {
  readonly registry: Registry;
  private readonly requests: Counter<"model" | "kind" | "outcome">;
  private readonly errors: Counter<"model" | "kind" | "error_type">;
  private readonly duration: Histogram<"model" | "kind">;
  private readonly tokens: Counter<"model" | "kind">;
  private readonly cost: Counter<"model" | "kind">;
  private readonly cpu: Counter<"model" | "kind">;
  private readonly memory: Gauge<"model" | "kind">;
  private readonly quality: Histogram<"model" | "kind">;
  private readonly confidence: Histogram<"model" | "kind">;
  private readonly accuracy: Histogram<"model" | "kind" | "source">;

  /** Metrics go to `registry` (default: a new one; pass prom-client's `register` to share the global). */
  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    const ml = ["model", "kind"] as const;
    this.requests = new Counter({
      name: "neuroweaver_requests_total",
      help: "Runs of a model or agent, by outcome.",
      labelNames: [...ml, "outcome"],
      registers,
    });
    this.errors = new Counter({
      name: "neuroweaver_errors_total",
      help: "Runs that did not succeed, by error type.",
      labelNames: [...ml, "error_type"],
      registers,
    });
    this.duration = new Histogram({
      name: "neuroweaver_request_duration_seconds",
      help: "Duration of a run.",
      labelNames: ml,
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.tokens = new Counter({ name: "neuroweaver_tokens_total", help: "Tokens used.", labelNames: ml, registers });
    this.cost = new Counter({
      name: "neuroweaver_cost_total",
      help: "Cost of runs, in the currency units the service chooses.",
      labelNames: ml,
      registers,
    });
    this.cpu = new Counter({
      name: "neuroweaver_cpu_seconds_total",
      help: "CPU time of runs.",
      labelNames: ml,
      registers,
    });
    this.memory = new Gauge({
      name: "neuroweaver_memory_bytes",
      help: "Memory of the last run.",
      labelNames: ml,
      registers,
    });
    this.quality = new Histogram({
      name: "neuroweaver_quality",
      help: "Quality of results, 0-1.",
      labelNames: ml,
      buckets: RATIO_BUCKETS,
      registers,
    });
    this.confidence = new Histogram({
      name: "neuroweaver_confidence",
      help: "Confidence of results, 0-1.",
      labelNames: ml,
      buckets: RATIO_BUCKETS,
      registers,
    });
    this.accuracy = new Histogram({
      name: "neuroweaver_accuracy_score",
      help: "Accuracy of predictions against real outcomes, 0-1, by where the outcome came from.",
      labelNames: [...ml, "source"],
      buckets: RATIO_BUCKETS,
      registers,
    });
  }

  /** Record one run of `subject` ({model} or {agent}). Throws on a negative or non-finite number. */
  recordRun(subject: Subject, run: Run): void {
    const l = labels(subject);
    const durationMs = finite("durationMs", run.durationMs) as number;
    const tokens = finite("tokens", run.tokens);
    const cost = finite("cost", run.cost);
    const memoryMb = finite("memoryMb", run.memoryMb);
    const cpuMs = finite("cpuMs", run.cpuMs);
    const quality = finite("quality", run.quality);
    const confidence = finite("confidence", run.confidence);
    if (!["success", "error", "timeout"].includes(run.status)) {
      throw new RangeError(`status must be success, error or timeout, not ${JSON.stringify(run.status)}`);
    }
    this.requests.inc({ ...l, outcome: run.status });
    if (run.status !== "success") this.errors.inc({ ...l, error_type: run.errorType ?? run.status });
    this.duration.observe(l, durationMs / 1000);
    if (tokens !== undefined) this.tokens.inc(l, tokens);
    if (cost !== undefined) this.cost.inc(l, cost);
    if (cpuMs !== undefined) this.cpu.inc(l, cpuMs / 1000);
    if (memoryMb !== undefined) this.memory.set(l, memoryMb * BYTES_PER_MB);
    if (quality !== undefined) this.quality.observe(l, Math.min(quality, 1));
    if (confidence !== undefined) this.confidence.observe(l, Math.min(confidence, 1));
  }

  /** Score `predicted` against `actual` (see accuracy()), record it for `subject` and `source`, return it. */
  recordAccuracy(predicted: unknown, actual: unknown, source: string, subject: Subject): number {
    const score = accuracy(predicted, actual);
    this.accuracy.observe({ ...labels(subject), source }, score);
    return score;
  }

  /** The exposition text (`text/plain; version=0.0.4`) of the registry, for a /metrics endpoint. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}
