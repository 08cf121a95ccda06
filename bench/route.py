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

from kubernetes import client, watch

from detection_operator.api.base import GROUP, VERSION
from detection_operator.testing.controlplane import LocalControlPlane
from detection_operator.testing.exporter import MetricExporter
from detection_operator.testing.kube import api_client, install_crds
from detection_operator.testing.operator_process import OperatorProcess
from detection_operator.testing.prometheus import PrometheusServer

from .harness import Stats

REPO = Path(__file__).resolve().parents[1]
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


def _watch(
    api: client.ApiClient, namespace: str, seen: queue.Queue[tuple[float, str]], stop: threading.Event
) -> None:
    w = watch.Watch()
    for event in w.stream(client.CoreV1Api(api).list_namespaced_config_map, namespace, timeout_seconds=3600):
        if stop.is_set():
            w.stop()
            return
        text = (event["object"].data or {}).get("route.json")
        if text:
            seen.put((time.perf_counter(), json.loads(text)["active"]))


def failover_latency(workdir: Path, cases: list[tuple[str, int, int]]) -> dict[tuple[str, int], Stats]:
    """For each (interval, failureThreshold, samples): failover latencies (and rollbacks in between)."""
    results: dict[tuple[str, int], Stats] = {}
    with (
        LocalControlPlane(workdir / "controlplane") as plane,
        MetricExporter() as exporter,
        PrometheusServer(workdir / "prometheus", targets=[exporter.target]) as prom,
    ):
        api = api_client(plane.kubeconfig)
        install_crds(api, REPO / "crds")
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
            threading.Thread(target=_watch, args=(api, namespace, seen, stop), daemon=True).start()
            env = {"DETECTION_OPERATOR_PROMETHEUS_URL": prom.url}
            with OperatorProcess(plane.kubeconfig, workdir / f"operator-{index}.log", [namespace], env):
                client.CustomObjectsApi(api).create_namespaced_custom_object(
                    GROUP, VERSION, namespace, "modelroutes", _route(interval, threshold)
                )
                assert seen.get(timeout=120)[1] == "primary"
                latencies = []
                query = f'max(bench_accuracy{{namespace="{namespace}",model="primary"}})'
                for _ in range(samples):
                    exporter.set("bench_accuracy", 0.5, {"namespace": namespace, "model": "primary"})
                    prom.wait_for_series(query, predicate=lambda v: v < 0.75, timeout=60)
                    visible = time.perf_counter()
                    arrived, active = seen.get(timeout=600)
                    assert active == "backup", active
                    latencies.append(arrived - visible)
                    exporter.set("bench_accuracy", 0.95, {"namespace": namespace, "model": "primary"})
                    assert seen.get(timeout=600)[1] == "primary"  # rolled back, ready for the next sample
            stop.set()
            results[(interval, threshold)] = Stats.of(latencies)
        api.close()
    return results
