"""ModelRoute benchmark: the pure decision cost (end to end, in the closed loop: bench/closed_loop.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from detection_operator.api.model_route import ModelRouteSpec
from detection_operator.decide.publish import route_publication
from detection_operator.decide.route import RouteKey, RouteMemory, decide_route, query_plan
from detection_operator.observe.source import Reading, Value

from .harness import Stats

MODELS = ("primary", "backup")

REFERENCE_METRICS = ("accuracy", "latencyP95Ms", "successRate", "errorRate", "requests", "costPerRequest")
"""The issue's reference route has 6 metrics: the four scored ones, the requests gate and a cost metric."""

ALL_METRICS = (*REFERENCE_METRICS, "tokensPerRequest", "memoryMb")
"""Every metric kind the spec accepts."""

# Healthy values per metric kind; the primary's accuracy alternates with a critical value (below).
_HEALTHY = {
    "accuracy": 0.95,
    "latencyP95Ms": 800.0,
    "successRate": 0.99,
    "errorRate": 0.01,
    "requests": 1000.0,
    "costPerRequest": 0.002,
    "tokensPerRequest": 900.0,
    "memoryMb": 2048.0,
}


def decision_spec(metrics: tuple[str, ...]) -> ModelRouteSpec:
    """3 models (primary and two backups) with ``metrics``, thresholds on the cost-like ones too."""
    labels = '{namespace="$namespace",model="$model",window="$window"}'
    catalog: list[dict[str, Any]] = []
    for name in metrics:
        metric: dict[str, Any] = {"name": name, "query": f"max(bench_{name}{labels})"}
        if name in ("costPerRequest", "tokensPerRequest", "memoryMb"):
            metric.update(warning=_HEALTHY[name] * 2, critical=_HEALTHY[name] * 4)
        catalog.append(metric)
    return ModelRouteSpec.model_validate(
        {
            "models": [{"name": m, "deployment": f"{m}-server"} for m in ("primary", "backup-a", "backup-b")],
            "metrics": catalog,
            "failureThreshold": 2,
            "maxFailoversPerHour": 60,
            "rollback": {"stableFor": "0s"},
        }
    )


def decision_cost(metrics: tuple[str, ...], iterations: int = 3000) -> tuple[Stats, Stats]:
    """Median cost of decide_route alone, and of decide + building route.json.

    Both windows are observed (current and previous, as the operator does); the primary goes critical every
    few evaluations so failover, pre-warm and rollback paths all run, not just the steady state.
    """
    spec = decision_spec(metrics)
    plan = query_plan(spec, "bench", "bench")
    healthy: dict[RouteKey, Reading] = {}
    for _, model, metric in plan:
        healthy[("model", model, metric)] = Value(_HEALTHY[metric])
        healthy[("previous", model, metric)] = Value(_HEALTHY[metric] * 1.1)
    critical = {**healthy, ("model", "primary", "accuracy"): Value(0.5)}
    replicas = {"backup-a": 0, "backup-b": 0}
    memory = RouteMemory()
    start_time = datetime(2026, 1, 1, tzinfo=UTC)
    decide_samples, total_samples = [], []
    for i in range(iterations):
        now = start_time + timedelta(seconds=i)
        observation = critical if i % 6 < 3 else healthy
        start = time.perf_counter()
        decision = decide_route(spec, observation, memory, now, {}, replicas)
        decided = time.perf_counter()
        route_publication(spec, decision, "bench", "bench", memory.digest, memory.revision, now)
        done = time.perf_counter()
        memory = decision.memory
        decide_samples.append(decided - start)
        total_samples.append(done - start)
    return Stats.of(decide_samples), Stats.of(total_samples)
