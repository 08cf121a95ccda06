"""The test helpers against a real Prometheus: exporter → scrape → instant query, no mocks.

The tests use the session's ``exporter`` and ``prometheus`` fixtures (conftest.py) because a fresh
Prometheus 2.42 (and a config reload) takes ~5s before the first scrape: its service-discovery manager
batches target updates on a fixed 5s tick. Each test uses its own ``service`` label so it cannot see
other tests' series; every test leaves the server running with the exporter as its only target. The
restart test runs last only to avoid paying that delay again for later tests in this module.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import httpx
import pytest

from detection_testing.exporter import MetricExporter
from detection_testing.prometheus import PrometheusServer

pytestmark = pytest.mark.integration


def _raw_value(prom: PrometheusServer, query: str) -> str:
    """The sample value exactly as the HTTP API spells it (to see "NaN", not a float)."""
    response = httpx.get(f"{prom.url}/api/v1/query", params={"query": query}, trust_env=False)
    response.raise_for_status()
    result = response.json()["data"]["result"]
    assert len(result) == 1, result
    value: str = result[0]["value"][1]
    return value


def test_values_update_and_go_stale(exporter: MetricExporter, prometheus: PrometheusServer) -> None:
    series = 'demo_latency_ms{service="x"}'
    exporter.set("demo_latency_ms", 250, {"service": "x"})
    assert prometheus.wait_for_series(series) == 250

    exporter.set("demo_latency_ms", 120, {"service": "x"})
    assert prometheus.wait_for_series(series, predicate=lambda v: v == 120) == 120

    # The next scrape without the series writes a staleness marker, so it vanishes about one
    # scrape interval later rather than after the 5m lookback; 10s allows for missed scrapes.
    assert exporter.remove("demo_latency_ms", {"service": "x"})
    prometheus.wait_for_absent(series, timeout=10)


def test_special_values_round_trip(exporter: MetricExporter, prometheus: PrometheusServer) -> None:
    series = 'demo_latency_ms{service="special"}'
    exporter.set("demo_latency_ms", math.nan, {"service": "special"})
    assert math.isnan(prometheus.wait_for_series(series, predicate=math.isnan))
    assert _raw_value(prometheus, series) == "NaN"
    # Worth knowing for fail-safe logic: NaN fails every comparison, so a threshold filter turns a
    # NaN series into an empty result that looks exactly like "no data".
    assert prometheus.query(f"{series} > 100") == []
    assert prometheus.query(f"{series} <= 100") == []

    exporter.set("demo_latency_ms", math.inf, {"service": "special"})
    assert prometheus.wait_for_series(series, predicate=math.isinf) == math.inf
    assert _raw_value(prometheus, series) == "+Inf"

    exporter.set("demo_latency_ms", -math.inf, {"service": "special"})
    assert prometheus.wait_for_series(series, predicate=lambda v: v == -math.inf) == -math.inf

    exporter.inc("demo_requests_total", 3, {"service": "special"})
    assert prometheus.wait_for_series('demo_requests_total{service="special"}') == 3


def test_raw_samples_are_the_stored_scrapes(exporter: MetricExporter, prometheus: PrometheusServer) -> None:
    series = 'demo_latency_ms{service="raw"}'
    exporter.set("demo_latency_ms", 1, {"service": "raw"})
    prometheus.wait_for_series(series)
    before = time.time()
    exporter.set("demo_latency_ms", 2, {"service": "raw"})
    prometheus.wait_for_series(series, predicate=lambda v: v == 2)
    samples = prometheus.raw_samples(series, 60)
    assert [ts for ts, _ in samples] == sorted(ts for ts, _ in samples)
    assert samples[0][1] == 1 and samples[-1][1] == 2
    first_new = min(ts for ts, value in samples if value == 2)
    assert before - 1 < first_new < time.time()
    with pytest.raises(RuntimeError, match="matched 0 series"):
        prometheus.raw_samples('demo_latency_ms{service="none"}', 60)


def test_rule_files_and_alertmanagers_are_configured(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(
        '{"groups": [{"name": "g", "interval": "1s", "rules": [{"alert": "A", "expr": "vector(1) > 0"}]}]}'
    )
    with PrometheusServer(
        tmp_path / "prometheus", targets=[], rule_files=[rules], alertmanagers=["127.0.0.1:9"]
    ) as prom:
        groups = httpx.get(f"{prom.url}/api/v1/rules", trust_env=False).json()["data"]["groups"]
        assert [(g["name"], [r["name"] for r in g["rules"]]) for g in groups] == [("g", ["A"])]
        loaded = httpx.get(f"{prom.url}/api/v1/status/config", trust_env=False).json()["data"]["yaml"]
        assert "alertmanagers:" in loaded and "127.0.0.1:9" in loaded
        # The alert fires on its first evaluation (no `for`), so Prometheus has something to send.
        assert prom.wait_for_series('ALERTS{alertname="A",alertstate="firing"}') == 1


def test_pause_freezes_queries(prometheus: PrometheusServer) -> None:
    prometheus.wait_for_series('up{job="exporter"}')
    prometheus.pause()
    try:
        with pytest.raises(httpx.TimeoutException):
            httpx.get(f"{prometheus.url}/-/ready", timeout=0.5, trust_env=False)
    finally:
        prometheus.resume()
    assert prometheus.wait_for_series('up{job="exporter"}') == 1


def test_set_targets_reloads(exporter: MetricExporter, prometheus: PrometheusServer) -> None:
    with MetricExporter() as second:
        second.set("demo_latency_ms", 7, {"service": "second"})
        prometheus.set_targets([exporter.target, second.target])
        try:
            assert prometheus.wait_for_series('demo_latency_ms{service="second"}') == 7
        finally:
            prometheus.set_targets([exporter.target])


def test_restart_keeps_data(exporter: MetricExporter, prometheus: PrometheusServer) -> None:
    series = 'demo_latency_ms{service="restart"}'
    exporter.set("demo_latency_ms", 250, {"service": "restart"})
    prometheus.wait_for_series(series, predicate=lambda v: v == 250)
    seen_250_at = time.time()
    exporter.set("demo_latency_ms", 120, {"service": "restart"})
    prometheus.wait_for_series(series, predicate=lambda v: v == 120)

    # Once the series is stale nothing new can be scraped for it, so whatever the restarted server
    # returns for it must have come back from the TSDB on disk.
    exporter.remove("demo_latency_ms", {"service": "restart"})
    prometheus.wait_for_absent(series, timeout=10)
    port = prometheus.port
    prometheus.restart()
    # Same port: the session's operator fixtures were handed this URL.
    assert prometheus.running and prometheus.port == port

    assert prometheus.wait_for_series(f"count_over_time({series}[5m])") > 0
    assert [s.value for s in prometheus.query(series, at=seen_250_at)] == [250]
