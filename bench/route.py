"""ModelRoute benchmarks: pure decision cost, and the metric visibly critical in Prometheus -> route.json
changed, end to end.

End to end, the real operator runs as a process; the clock starts when an instant query first shows the
critical value and stops when the ConfigMap update arrives on a separate watch.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_operator.api.model_route import ModelRouteSpec
from detection_operator.decide.publish import route_publication
from detection_operator.decide.route import RouteKey, RouteMemory, decide_route, query_plan
from detection_operator.metrics.source import Reading, Value
from detection_operator.testing.operator_process import OperatorProcess

from .harness import Seen, Stats, create_namespace, real_stack, watch_config_map_key

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


def _route(interval: str, failure_threshold: int) -> dict[str, Any]:
    labels = '{namespace="$namespace",model="$model"}'
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelRoute",
        "metadata": {"name": "bench"},
        "spec": {
            "interval": interval,
            "models": [{"name": m} for m in MODELS],
            "metrics": [
                {"name": "accuracy", "query": f"max(bench_accuracy{labels})"},
                {"name": "requests", "query": f"max(bench_requests{labels})"},
            ],
            "failureThreshold": failure_threshold,
            "maxFailoversPerHour": 60,
            "rollback": {"stableFor": "1s", "scaleDownAfter": "1s"},
        },
    }


def active(event: Seen) -> str:
    """The active model named by a route.json watch event."""
    return str(json.loads(event.text)["active"])


def failover_latency(workdir: Path, cases: list[tuple[str, int, int]]) -> dict[tuple[str, int], Stats]:
    """For each (interval, failureThreshold, samples): failover latencies (and rollbacks in between)."""
    results: dict[tuple[str, int], Stats] = {}
    with real_stack(workdir) as stack:
        api, exporter, prom, plane = stack.api, stack.exporter, stack.prometheus, stack.plane
        for index, (interval, threshold, samples) in enumerate(cases):
            namespace = f"bench-route-{index}"
            create_namespace(api, namespace)
            for model in MODELS:
                exporter.set("bench_accuracy", 0.95, {"namespace": namespace, "model": model})
                exporter.set("bench_requests", 1000, {"namespace": namespace, "model": model})
            seen: queue.Queue[Seen] = queue.Queue()
            stop = threading.Event()
            threading.Thread(
                target=watch_config_map_key, args=(api, namespace, "route.json", seen, stop), daemon=True
            ).start()
            env = {"DETECTION_OPERATOR_PROMETHEUS_URL": prom.url}
            with OperatorProcess(plane.kubeconfig, workdir / f"operator-{index}.log", [namespace], env):
                client.CustomObjectsApi(api).create_namespaced_custom_object(
                    GROUP, VERSION, namespace, "modelroutes", _route(interval, threshold)
                )
                assert active(seen.get(timeout=120)) == "primary"
                latencies = []
                query = f'max(bench_accuracy{{namespace="{namespace}",model="primary"}})'
                for _ in range(samples):
                    exporter.set("bench_accuracy", 0.5, {"namespace": namespace, "model": "primary"})
                    prom.wait_for_series(query, predicate=lambda v: v < 0.75, timeout=60)
                    visible = time.perf_counter()
                    event = seen.get(timeout=600)
                    assert active(event) == "backup", event.text
                    latencies.append(event.at - visible)
                    exporter.set("bench_accuracy", 0.95, {"namespace": namespace, "model": "primary"})
                    assert (
                        active(seen.get(timeout=600)) == "primary"
                    )  # rolled back: ready for the next sample
            stop.set()
            results[(interval, threshold)] = Stats.of(latencies)
    return results
