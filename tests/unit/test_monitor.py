"""PerformanceMonitor and ExternalMetrics export the SDK catalog's names, labels and buckets."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from detection_operator.client.monitor import (
    DURATION_BUCKETS,
    SCORE_BUCKETS,
    ExternalMetrics,
    PerformanceMonitor,
)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_a_monitor_exports_nothing_before_the_first_run() -> None:
    registry = CollectorRegistry()
    PerformanceMonitor(registry)
    samples = [s for family in registry.collect() for s in family.samples]
    assert samples == []  # an idle backup has no series: idle, not failing


def test_runs_of_models_and_agents_are_recorded_under_the_catalog_names() -> None:
    registry = CollectorRegistry()
    monitor = PerformanceMonitor(registry, labels={"namespace": "shop"})
    model = {"model": "v3", "kind": "model", "namespace": "shop"}
    agent = {"model": "triage", "kind": "agent", "namespace": "shop"}
    monitor.record_run(
        model="v3", status="success", duration_ms=40, tokens=300, cost=0.002, memory_mb=512, cpu_ms=25,
        quality=0.9, confidence=0.75,
    )  # fmt: skip
    monitor.record_run(model="v3", status="timeout", duration_ms=2000)
    monitor.record_run(agent="triage", status="error", duration_ms=5, error_type="upstream-5xx")
    assert value(registry, "neuroweaver_requests_total", **model, outcome="success") == 1
    assert value(registry, "neuroweaver_requests_total", **model, outcome="timeout") == 1
    assert value(registry, "neuroweaver_errors_total", **model, error_type="timeout") == 1
    assert value(registry, "neuroweaver_errors_total", **agent, error_type="upstream-5xx") == 1
    assert value(registry, "neuroweaver_request_duration_seconds_count", **model) == 2
    assert value(registry, "neuroweaver_request_duration_seconds_bucket", **model, le="0.05") == 1
    assert value(registry, "neuroweaver_request_duration_seconds_sum", **model) == pytest.approx(2.04)
    assert value(registry, "neuroweaver_tokens_total", **model) == 300
    assert value(registry, "neuroweaver_cost_total", **model) == pytest.approx(0.002)
    assert value(registry, "neuroweaver_cpu_seconds_total", **model) == pytest.approx(0.025)
    assert value(registry, "neuroweaver_memory_bytes", **model) == 512e6
    assert value(registry, "neuroweaver_quality_bucket", **model, le="0.9") == 1
    assert value(registry, "neuroweaver_quality_bucket", **model, le="0.8") == 0
    assert value(registry, "neuroweaver_confidence_sum", **model) == 0.75
    assert value(registry, "neuroweaver_tokens_total", **agent) is None  # no tokens, no series
    les = {
        s.labels["le"]
        for family in registry.collect()
        for s in family.samples
        if s.name == "neuroweaver_request_duration_seconds_bucket"
    }
    assert les == {*(str(b) for b in DURATION_BUCKETS), "+Inf"}
    assert "neuroweaver_requests_total{" in generate_latest(registry).decode()


def test_accuracy_is_scored_by_data_type_and_observed_per_source() -> None:
    registry = CollectorRegistry()
    monitor = PerformanceMonitor(registry)
    labels = {"model": "v3", "kind": "model", "source": "chargeback"}
    assert monitor.record_accuracy(110, 100, "chargeback", model="v3") == pytest.approx(0.9)
    assert monitor.record_accuracy({"label": "bot"}, {"label": "bot"}, "chargeback", model="v3") == 1.0
    assert value(registry, "neuroweaver_accuracy_score_count", **labels) == 2
    assert value(registry, "neuroweaver_accuracy_score_sum", **labels) == pytest.approx(1.9)
    assert value(registry, "neuroweaver_accuracy_score_bucket", **labels, le="0.9") == 1
    assert [float(b) for b in SCORE_BUCKETS] == [round(0.1 * i, 1) for i in range(1, 11)]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"status": "success", "duration_ms": 1}, "exactly one of model= or agent="),
        ({"model": "m", "agent": "a", "status": "success", "duration_ms": 1}, "exactly one"),
        ({"model": "", "status": "success", "duration_ms": 1}, "must not be empty"),
        ({"model": "m", "status": "ok", "duration_ms": 1}, "status must be one of"),
        ({"model": "m", "status": "success", "duration_ms": -1}, "duration_ms must be a number >= 0"),
        ({"model": "m", "status": "success", "duration_ms": float("nan")}, "duration_ms"),
        ({"model": "m", "status": "success", "duration_ms": 1, "quality": 1.5}, "quality must be between"),
        ({"model": "m", "status": "success", "duration_ms": 1, "error_type": "x"}, "for failed runs"),
        ({"model": "m", "status": "error", "duration_ms": 1, "tokens": -3}, "tokens"),
    ],
)
def test_bad_input_is_refused_and_records_nothing(arguments: dict[str, object], message: str) -> None:
    registry = CollectorRegistry()
    monitor = PerformanceMonitor(registry)
    with pytest.raises(ValueError, match=message):
        monitor.record_run(**arguments)  # type: ignore[arg-type]
    assert [s for family in registry.collect() for s in family.samples] == []


def test_external_metrics_count_outcomes_and_keep_a_windowed_accuracy() -> None:
    registry = CollectorRegistry()
    metrics = ExternalMetrics(registry, window=2)
    metrics.record_call("intel", "ok", 0.02)
    metrics.record_call("intel", "bad-signature", 0.03)
    metrics.record_call("intel", "timeout", 0.3)
    assert value(registry, "detector_external_calls_total", service="intel", outcome="ok") == 1
    assert value(registry, "detector_external_errors_total", service="intel") == 2
    assert value(registry, "detector_external_duration_seconds_count", service="intel") == 3
    metrics.record_accuracy("intel", "bot", "bot")
    metrics.record_accuracy("intel", "human", "bot")
    assert value(registry, "detector_external_accuracy_ratio", service="intel") == 0.5
    metrics.record_accuracy("intel", "bot", "bot")  # the oldest falls out of the window of 2
    assert value(registry, "detector_external_accuracy_ratio", service="intel") == 0.5
    metrics.record_accuracy("intel", "bot", "bot")
    assert value(registry, "detector_external_accuracy_ratio", service="intel") == 1.0
    with pytest.raises(ValueError, match="outcome must be one of"):
        metrics.record_call("intel", "fine", 0.1)  # type: ignore[arg-type]
