"""A DetectionPolicy with `metricsFrom: sdk` and no PromQL: the real operator measures contributor expense
and external contributors' health with queries generated from the SDK catalog, on what the real
Prometheus scraped (series as the SDK's PerformanceMonitor and ExternalMetrics export them)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from kubernetes import client

from detection_testing.exporter import MetricExporter
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.watched import Watched

NAME = "sdk-policy"
SPEC = {
    "interval": "1s",
    "window": "10s",
    "defaultProfile": "balanced",
    "fallbackProfile": "balanced",
    "profiles": [{"name": "balanced", "maxExpense": "light", "allowExternal": True}],
    "contributors": [{"name": "strict-rules"}, {"name": "llm-judge"}],
    "metricsFrom": "sdk",
    "expense": {"window": "10s"},
    "externalContributors": {
        "circuit": {"maxErrorRate": 0.1, "coolDown": "1h"},
        "services": [{"name": "ip-intel", "endpoint": "https://ip-intel.example.com/v1", "signals": ["ip"]}],
    },
}
AGENTS = {"strict-rules": (0.002, 10e6, 0), "llm-judge": (0.3, 500e6, 1)}
"""contributor: (seconds per run, memory bytes, timeouts in 10 runs)"""


def _record(exporter: MetricExporter, namespace: str) -> None:
    """Ten runs of each contributor and ten calls of the external service, as the SDK exports them."""
    for name, (seconds, memory, timeouts) in AGENTS.items():
        labels = {"namespace": namespace, "model": name, "kind": "agent"}
        exporter.inc("neuroweaver_requests_total", 10 - timeouts, {**labels, "outcome": "success"})
        exporter.inc("neuroweaver_requests_total", timeouts, {**labels, "outcome": "timeout"})
        exporter.inc("neuroweaver_request_duration_seconds_sum", 10 * seconds, labels)
        exporter.inc("neuroweaver_request_duration_seconds_count", 10, labels)
        exporter.set("neuroweaver_memory_bytes", memory, labels)
    service = {"namespace": namespace, "service": "ip-intel"}
    exporter.inc("detector_external_calls_total", 7, {**service, "outcome": "ok"})
    exporter.inc("detector_external_calls_total", 3, {**service, "outcome": "timeout"})
    exporter.inc("detector_external_errors_total", 3, service)
    for le in ("0.1", "+Inf"):
        exporter.inc("detector_external_duration_seconds_bucket", 10, {**service, "le": le})
    exporter.set("detector_external_accuracy_ratio", 0.9, service)


@pytest.fixture
def fed(exporter: MetricExporter, namespace: str) -> Iterator[None]:
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.5):
            _record(exporter, namespace)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    yield
    stop.set()
    feeder.join()


def test_expense_and_external_circuits_from_generated_queries(
    fed: None, kube: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    policy = Watched(kube, namespace, "DetectionPolicy", NAME, f"{NAME}-detection-profile")
    assert "query" not in json.dumps(SPEC).lower()  # no PromQL written
    policy.create(SPEC)
    # 2 ms and 10 MB is light (<= 5 ms, 64 MB); 300 ms and 500 MB is heavy (> 50 ms, 256 MB). Until
    # Prometheus holds two scrapes of the counters every contributor is assumed heavy, and an evaluation
    # may come first: the measured classes are waited for, not the first status.
    measured = {"strict-rules": "light", "llm-judge": "heavy"}
    status = wait_for(
        lambda: (s := policy.status()).get("expense") == measured and s,
        timeout=60,
        what=f"expense measured as {measured}",
    )
    assert status["contributors"] == ["strict-rules"]  # balanced enables up to maxExpense light
    external = wait_for(
        lambda: (e := policy.status().get("externalContributors")) and e[0]["circuit"] == "open" and e[0],
        timeout=30,
        what="circuit open",
    )
    assert "error rate 30.0% above 10.0%" in external["reason"] and not external["enabled"]
    assert policy.condition("MetricsAvailable")["status"] == "True"  # type: ignore[index]
