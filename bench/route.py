"""ModelRoute benchmark: the metric visibly critical in Prometheus -> route.json changed, end to end.

The real operator runs as a process; the clock starts when an instant query first shows the critical
value and stops when the ConfigMap update arrives on a separate watch.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_operator.testing.operator_process import OperatorProcess

from .harness import Stats, real_stack, watch_config_map_key

MODELS = ("primary", "backup")


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


def active(event: tuple[float, str]) -> str:
    """The active model named by a route.json watch event."""
    return str(json.loads(event[1])["active"])


def failover_latency(workdir: Path, cases: list[tuple[str, int, int]]) -> dict[tuple[str, int], Stats]:
    """For each (interval, failureThreshold, samples): failover latencies (and rollbacks in between)."""
    results: dict[tuple[str, int], Stats] = {}
    with real_stack(workdir) as stack:
        api, exporter, prom, plane = stack.api, stack.exporter, stack.prometheus, stack.plane
        for index, (interval, threshold, samples) in enumerate(cases):
            namespace = f"bench-route-{index}"
            client.CoreV1Api(api).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
            )
            for model in MODELS:
                exporter.set("bench_accuracy", 0.95, {"namespace": namespace, "model": model})
                exporter.set("bench_requests", 1000, {"namespace": namespace, "model": model})
            seen: queue.Queue[tuple[float, str]] = queue.Queue()
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
                    arrived, text = seen.get(timeout=600)
                    assert active((arrived, text)) == "backup", text
                    latencies.append(arrived - visible)
                    exporter.set("bench_accuracy", 0.95, {"namespace": namespace, "model": "primary"})
                    assert (
                        active(seen.get(timeout=600)) == "primary"
                    )  # rolled back: ready for the next sample
            stop.set()
            results[(interval, threshold)] = Stats.of(latencies)
    return results
