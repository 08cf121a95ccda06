"""DetectionPolicy benchmarks: pure decision cost, and rule holding -> ConfigMap visible on the apiserver."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_operator.api.detection_policy import DetectionPolicySpec
from detection_operator.core.readings import Reading, Value
from detection_operator.decide.policy import PolicyMemory, QueryKey, decide_policy, query_plan
from detection_operator.decide.publish import publication
from detection_operator.notify.delivery import Deliverer
from detection_operator.notify.receivers import ReceiverConfig
from detection_operator.observe.connections import Connections
from detection_operator.observe.source import PrometheusConfig, PrometheusSource, query_all
from detection_operator.reconcile.reconciler import Reconciler

from .harness import Seen, Stats, create_namespace, real_stack, watch_config_map_key


def benchmark_spec(**overrides: Any) -> dict[str, Any]:
    """4 rules, 8 contributors with 4 cost queries each, 2 external services: the issue's reference policy."""
    contributors = [f"c{i}" for i in range(8)]
    spec: dict[str, Any] = {
        "defaultProfile": "balanced",
        "profiles": [
            {"name": "lean", "contributors": contributors[:2], "maxExpense": "light"},
            {"name": "balanced", "contributors": contributors[:5]},
            {"name": "paranoid", "contributors": contributors, "allowExternal": True},
        ],
        "rules": [
            {
                "name": "latency",
                "query": 'max(bench_latency_ms{namespace="$namespace"})',
                "op": ">",
                "threshold": 200,
                "clearThreshold": 150,
                "profile": "lean",
                "reason": "high latency",
            },
            {
                "name": "cpu",
                "query": 'max(bench_cpu{namespace="$namespace"})',
                "op": ">",
                "threshold": 0.8,
                "profile": "lean",
                "reason": "CPU saturation",
            },
            {
                "name": "memory",
                "query": 'max(bench_memory{namespace="$namespace"})',
                "op": ">",
                "threshold": 0.75,
                "profile": "lean",
                "reason": "memory pressure",
            },
            {
                "name": "surge",
                "query": 'max(bench_flagged{namespace="$namespace"})',
                "op": ">",
                "threshold": 0.2,
                "profile": "paranoid",
                "reason": "bot surge",
            },
        ],
        "contributors": [{"name": c} for c in contributors],
        "expense": {
            "queries": {
                d: f'max(bench_{d}{{contributor="$contributor"}})'
                for d in ("runtimeMs", "memoryMb", "cacheHitRatio", "timeoutRate")
            }
        },
        "externalContributors": {
            "queries": {
                d: f'max(bench_ext_{d}{{service="$contributor"}})'
                for d in ("errorRate", "p95LatencyMs", "accuracy")
            },
            "services": [
                {"name": f"ext{i}", "endpoint": "https://intel.example", "signals": ["ip"]} for i in range(2)
            ],
        },
    }
    spec.update(overrides)
    return spec


def decision_cost(iterations: int = 3000) -> tuple[Stats, Stats]:
    """Median cost of decide_policy alone, and of decide + building both documents."""
    spec = DetectionPolicySpec.model_validate(benchmark_spec())
    plan = query_plan(spec, "bench", "bench")
    observation: dict[QueryKey, Reading] = {key: Value(0.1 * (i % 7)) for i, key in enumerate(plan)}
    memory = PolicyMemory()
    decide_samples, total_samples = [], []
    for i in range(iterations):
        now = datetime(2026, 1, 1, tzinfo=UTC).replace(second=i % 60)
        start = time.perf_counter()
        decision = decide_policy(spec, observation, memory, now)
        decided = time.perf_counter()
        publication(spec, decision, "bench", "bench", memory.digest, memory.revision, now)
        done = time.perf_counter()
        memory = decision.memory
        decide_samples.append(decided - start)
        total_samples.append(done - start)
    return Stats.of(decide_samples), Stats.of(total_samples)


def rule_to_config_map(workdir: Path, switches: int = 100) -> tuple[Stats, Stats, Stats, Stats]:
    """Flip a rule on and off; per switch: decision made -> ConfigMap update on a separate watch; evaluation
    start (metric already visible in Prometheus) -> the same; the whole evaluation; the queries alone."""
    with real_stack(workdir) as stack:
        api, exporter, prom = stack.api, stack.exporter, stack.prometheus
        namespace = "bench"
        create_namespace(api, namespace)
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DetectionPolicy",
            "metadata": {"name": "bench"},
            "spec": benchmark_spec(minDwell="0s", stabilizationWindow="0s"),
        }
        created = client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, "detectionpolicies", body
        )
        for name in ("cpu", "memory", "flagged"):
            exporter.set(f"bench_{name}", 0.1, {"namespace": namespace})
        executor = ThreadPoolExecutor(max_workers=16)
        connections = Connections(PrometheusConfig(url=prom.url), lambda ns, n: {})
        reconciler = Reconciler(api, connections, executor, Deliverer.from_config(ReceiverConfig()))
        key = ("detectionpolicies", namespace, "bench")
        seen: queue.Queue[Seen] = queue.Queue()
        stop = threading.Event()
        watcher = threading.Thread(
            target=watch_config_map_key, args=(api, namespace, "profile.json", seen, stop), daemon=True
        )
        watcher.start()
        visible, returned, queries, decided_to_visible = [], [], [], []
        decided: list[float] = []
        reconciler.on_decided = lambda _key, at: decided.append(at)
        spec = DetectionPolicySpec.model_validate(created["spec"])
        plan = query_plan(spec, namespace, "bench")
        source = PrometheusSource(PrometheusConfig(url=prom.url))
        loop = asyncio.new_event_loop()
        try:
            for i in range(switches + 1):
                high = i % 2 == 1
                exporter.set("bench_latency_ms", 300 if high else 100, {"namespace": namespace})
                prom.wait_for_series(
                    f'max(bench_latency_ms{{namespace="{namespace}"}})',
                    predicate=(lambda v: v > 200) if high else (lambda v: v < 150),
                )
                while not seen.empty():
                    seen.get_nowait()
                start = time.perf_counter()
                loop.run_until_complete(reconciler(key, created))
                returned.append(time.perf_counter() - start)
                arrived, _, text = seen.get(timeout=30)
                assert ('"lean"' in text) == high, text
                visible.append(arrived - start)
                decided_to_visible.append(arrived - decided[-1])
                created = client.CustomObjectsApi(api).get_namespaced_custom_object(
                    GROUP, VERSION, namespace, "detectionpolicies", "bench"
                )
                # The same queries again, alone: how much of the above is Prometheus.
                start = time.perf_counter()
                loop.run_until_complete(query_all(source, list(plan.values())))
                queries.append(time.perf_counter() - start)
        finally:
            stop.set()
            loop.run_until_complete(source.aclose())
            loop.run_until_complete(connections.aclose())
            loop.close()
            executor.shutdown()
        # The first evaluation creates the ConfigMap; only switches are measured.
        return (
            Stats.of(decided_to_visible[1:]),
            Stats.of(visible[1:]),
            Stats.of(returned[1:]),
            Stats.of(queries[1:]),
        )
