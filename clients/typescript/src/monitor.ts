/**
 * The SDK metrics: what a service records about its own model and agent runs, exported with prom-client
 * under the names and labels the operator's generated queries (`metricsFrom: sdk`) read.
 */

import { Counter, Gauge, Histogram, register, Registry } from "prom-client";

import { accuracy } from "./accuracy";

export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
export const SCORE_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
/** Bytes per `memoryMb` (decimal megabytes, as the Python client counts them). */
export const BYTES_PER_MB = 1_000_000;

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
  /** What went wrong, for a failed run only (default: its status). */
  errorType?: string;
}

function identity(subject: Subject): { model: string; kind: Kind } {
  const [name, kind]: [string | undefined, Kind] =
    subject.model !== undefined ? [subject.model, "model"] : [subject.agent, "agent"];
  if ((subject.model === undefined) === (subject.agent === undefined) || name === undefined) {
    throw new TypeError("name exactly one of model or agent");
  }
  if (!name) throw new RangeError(`the ${kind} name must not be empty`);
  return { model: name, kind };
}

/** A value as an error message shows it: NaN as NaN, a string quoted. */
function shown(value: unknown): string {
  return typeof value === "number" ? String(value) : JSON.stringify(value);
}

// typeof as well: from plain JavaScript "5" >= 0 holds, and a string would be coerced into the series.
function amount(name: string, value: number | undefined): void {
  if (value !== undefined && !(typeof value === "number" && value >= 0)) {
    throw new RangeError(`${name} must be a number >= 0, not ${shown(value)}`);
  }
}

function share(name: string, value: number | undefined): void {
  if (value !== undefined && !(typeof value === "number" && value >= 0 && value <= 1)) {
    throw new RangeError(`${name} must be a number between 0 and 1, not ${shown(value)}`);
  }
}

export interface MonitorOptions {
  /** Where the metrics go (default: prom-client's global `register`). */
  registry?: Registry;
  /** Constant labels added to every series (e.g. {namespace: "shop"} where no relabelling adds them). */
  labels?: Record<string, string>;
}

/**
 * Records model and agent runs and accuracy samples into a prom-client registry, as the Python client's
 * PerformanceMonitor does. One monitor per registry (a second would register the same names twice).
 */
export class PerformanceMonitor {
  readonly registry: Registry;
  private readonly constant: Record<string, string>;
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

  constructor(options: MonitorOptions = {}) {
    this.registry = options.registry ?? register;
    this.constant = { ...(options.labels ?? {}) };
    const registers = [this.registry];
    const ml = ["model", "kind", ...Object.keys(this.constant).sort()] as ("model" | "kind")[];
    this.requests = new Counter({
      name: "neuroweaver_requests_total",
      help: "Runs of a model or agent, by outcome.",
      labelNames: [...ml, "outcome"] as ("model" | "kind" | "outcome")[],
      registers,
    });
    this.errors = new Counter({
      name: "neuroweaver_errors_total",
      help: "Runs that did not succeed, by error type.",
      labelNames: [...ml, "error_type"] as ("model" | "kind" | "error_type")[],
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
      buckets: SCORE_BUCKETS,
      registers,
    });
    this.confidence = new Histogram({
      name: "neuroweaver_confidence",
      help: "Confidence of results, 0-1.",
      labelNames: ml,
      buckets: SCORE_BUCKETS,
      registers,
    });
    this.accuracy = new Histogram({
      name: "neuroweaver_accuracy_score",
      help: "Accuracy of predictions against real outcomes, 0-1, by where the outcome came from.",
      labelNames: [...ml, "source"] as ("model" | "kind" | "source")[],
      buckets: SCORE_BUCKETS,
      registers,
    });
  }

  private who(subject: Subject): { model: string; kind: Kind } {
    return { ...identity(subject), ...this.constant };
  }

  /**
   * Record one run of `subject` ({model} or {agent}). Amounts are >= 0, quality and confidence in [0, 1],
   * `errorType` only for a failed run; anything else throws (RangeError, TypeError) and records nothing.
   */
  recordRun(subject: Subject, run: Run): void {
    const who = this.who(subject);
    if (!["success", "error", "timeout"].includes(run.status)) {
      throw new RangeError(`status must be one of success, error, timeout, not ${JSON.stringify(run.status)}`);
    }
    if (run.status === "success" && run.errorType !== undefined) {
      throw new RangeError("errorType is for failed runs (status error or timeout) only");
    }
    if (run.durationMs === undefined) throw new RangeError("durationMs is required");
    for (const name of ["durationMs", "tokens", "cost", "memoryMb", "cpuMs"] as const) amount(name, run[name]);
    share("quality", run.quality);
    share("confidence", run.confidence);
    this.requests.inc({ ...who, outcome: run.status });
    if (run.status !== "success") this.errors.inc({ ...who, error_type: run.errorType || run.status });
    this.duration.observe(who, run.durationMs / 1000);
    if (run.tokens) this.tokens.inc(who, run.tokens);
    if (run.cost) this.cost.inc(who, run.cost);
    if (run.cpuMs !== undefined) this.cpu.inc(who, run.cpuMs / 1000);
    if (run.memoryMb !== undefined) this.memory.set(who, run.memoryMb * BYTES_PER_MB);
    if (run.quality !== undefined) this.quality.observe(who, run.quality);
    if (run.confidence !== undefined) this.confidence.observe(who, run.confidence);
  }

  /**
   * Score `predicted` against the real outcome `actual` (see accuracy()), observe it for `subject` under
   * `source` (where the outcome came from: "chargeback", "review", ...) and return it.
   */
  recordAccuracy(predicted: unknown, actual: unknown, source: string, subject: Subject): number {
    const who = this.who(subject);
    if (!source) throw new RangeError("source must name where the actual outcome came from");
    const score = accuracy(predicted, actual);
    this.accuracy.observe({ ...who, source }, score);
    return score;
  }

  /** The exposition text (`text/plain; version=0.0.4`) of the registry, for a /metrics endpoint. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}
