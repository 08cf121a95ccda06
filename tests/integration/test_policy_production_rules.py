"""DetectionPolicy production rules on the real stack: apiserver, operator, Prometheus scraping counters.

Traffic is what a detector exports: request, flagged and error counters that grow with the requests it
serves. "No traffic" is counters that stop growing (rates 0, ratios 0/0 = NaN), never a scripted NaN.
Intervals are scaled down (1 s evaluations, seconds-long windows) as in test_policy_switching.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from detection_testing.exporter import MetricExporter
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.prometheus import PrometheusServer

from .test_policy_switching import Scenario, policy

TICK = 0.25
FLAGGED_SHARE = (
    'sum(rate(prod_flagged_total{namespace="$namespace"}[$window])) / '
    'sum(rate(prod_requests_total{namespace="$namespace"}[$window]))'
)
REQUESTS = 'sum(increase(prod_requests_total{namespace="$namespace"}[$window]))'
SURGE: dict[str, Any] = {
    "name": "bot-surge",
    "query": FLAGGED_SHARE,
    "op": ">",
    "threshold": 0.2,
    "profile": "paranoid",
    "reason": "bot surge",
}


class Traffic:
    """A detector serving requests: its counters grow at the set rates until stopped (or set to 0)."""

    def __init__(self, exporter: MetricExporter, namespace: str) -> None:
        self.exporter, self.labels = exporter, {"namespace": namespace}
        self.rate, self.flagged, self.errors = 0.0, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        for name in ("prod_requests_total", "prod_flagged_total", "prod_errors_total"):
            exporter.inc(name, 0, self.labels)  # the series exist from the start, as a client library does

    def set(self, rate: float, flagged: float = 0.0, errors: float = 0.0) -> None:
        """Requests per second, and the shares of them flagged and failed."""
        self.rate, self.flagged, self.errors = rate, flagged, errors

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            served = self.rate * TICK
            self.exporter.inc("prod_requests_total", served, self.labels)
            self.exporter.inc("prod_flagged_total", served * self.flagged, self.labels)
            self.exporter.inc("prod_errors_total", served * self.errors, self.labels)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def traffic(exporter: MetricExporter, namespace: str, prometheus: PrometheusServer) -> Iterator[Traffic]:
    with Traffic(exporter, namespace) as running:
        prometheus.wait_for_series(f'prod_requests_total{{namespace="{namespace}"}}')
        yield running


@pytest.fixture
def scenario(kube: client.ApiClient, exporter: MetricExporter, namespace: str) -> Scenario:
    return Scenario(kube, exporter, namespace)


def rule_status(scenario: Scenario, name: str) -> dict[str, Any]:
    """The rule's row in status; empty before the first status write."""
    return next((r for r in scenario.status().get("rules", []) if r["name"] == name), {})


def wait_rule(scenario: Scenario, name: str, timeout: float = 30, **expected: Any) -> dict[str, Any]:
    """Wait until status shows rule ``name`` with the ``expected`` fields; return its row."""

    def matching() -> dict[str, Any] | None:
        rows = [r for r in scenario.status().get("rules", []) if r["name"] == name]
        return rows[0] if rows and all(rows[0].get(k) == v for k, v in expected.items()) else None

    return wait_for(matching, timeout=timeout, interval=0.2, what=f"rule {name} with {expected}")


def events(scenario: Scenario, reason: str) -> list[str]:
    return [
        e.message for e in scenario.core.list_namespaced_event(scenario.namespace).items if e.reason == reason
    ]


def firing(scenario: Scenario, type_: str) -> list[dict[str, Any]]:
    return [a for a in scenario.status().get("alerts", []) if a["type"] == type_ and a["state"] == "firing"]


def test_below_the_traffic_floor_a_surge_is_insufficient_then_real_traffic_escalates(
    scenario: Scenario, operator: OperatorProcess, traffic: Traffic
) -> None:
    traffic.set(rate=1, flagged=0.5)  # ~3 requests per window, half of them flagged
    floor = {**SURGE, "minSamples": 40}
    scenario.create(policy(window="4s", rules=[floor], samplesQuery=REQUESTS))
    row = wait_rule(scenario, "bot-surge", verdict="insufficient")
    assert row["samples"] < 40 and row["minSamples"] == 40 and "below minSamples" in row["cause"]
    assert scenario.status()["profile"] == "balanced"
    assert (scenario.condition("MetricsAvailable") or {}).get("status") == "True"
    scorecard = json.loads((scenario.config_map() or {})["scorecard.json"])
    assert scorecard["rules"][0]["verdict"] in ("insufficient", "clear")  # the record of revision 1
    traffic.set(rate=40, flagged=0.5)
    doc = scenario.wait_profile("paranoid")
    assert doc["reason"] == "bot surge"
    assert rule_status(scenario, "bot-surge")["samples"] >= 40


def test_no_traffic_reads_clear_by_default_and_when_no_traffic_unknown_falls_back(
    scenario: Scenario, operator: OperatorProcess, traffic: Traffic
) -> None:
    traffic.set(rate=20, flagged=0.05)
    strict = {**SURGE, "name": "strict-surge", "whenNoTraffic": "unknown", "profile": "paranoid"}
    scenario.create(policy(window="3s", fallbackProfile="lean", holdFor="3s", rules=[SURGE, strict]))
    scenario.wait_profile("balanced")
    traffic.set(rate=0)  # the detector serves nothing: counters stay where they are
    row = wait_for(
        lambda: "no traffic" in (r := rule_status(scenario, "bot-surge")).get("cause", "") and r,
        timeout=20,
        what="no traffic read",
    )
    assert row["verdict"] == "clear" and "whenNoTraffic: clear" in row["cause"]
    assert "no traffic" in rule_status(scenario, "strict-surge").get("cause", "")
    # The strict rule turns the zero denominator into unknown: hold for holdFor, then the fallback.
    doc = scenario.wait_profile("lean", timeout=20)
    assert "metrics unavailable" in doc["reason"]
    message = (scenario.condition("MetricsAvailable") or {}).get("message", "")
    assert "strict-surge" in message and "bot-surge" not in message


def test_all_of_switches_only_when_every_condition_is_active(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    scenario.metrics(latency_p95_ms=300, cpu_ratio=0.3)
    overload = {
        "name": "overload",
        "allOf": [
            {
                "name": "latency",
                "query": 'max(detector_latency_p95_ms{namespace="$namespace"})',
                "op": ">",
                "threshold": 200,
                "for": 3,
            },
            {
                "name": "cpu",
                "query": 'max(detector_cpu_ratio{namespace="$namespace"})',
                "op": ">",
                "threshold": 0.8,
            },
        ],
        "profile": "lean",
        "reason": "latency and CPU high",
    }
    scenario.create(policy(rules=[overload]))
    row = wait_for(
        lambda: (r := rule_status(scenario, "overload")) and r["conditions"][0]["verdict"] == "holds" and r,
        timeout=20,
        what="the latency condition holding",
    )
    latency, cpu = row["conditions"]
    assert row["verdict"] == "clear" and latency["streak"] >= 1 and cpu["verdict"] == "clear", row
    assert scenario.status()["profile"] == "balanced"
    scenario.metrics(cpu_ratio=0.95)
    doc = scenario.wait_profile("lean")
    assert doc["reason"] == "latency and CPU high"
    assert any("overload (latency = 300 > 200, cpu = 0.95 > 0.8)" in r for r in doc["reasons"])


def test_burn_rate_rule_escalates_on_a_fast_burn_and_relaxes_when_the_short_window_clears(
    scenario: Scenario, operator: OperatorProcess, traffic: Traffic
) -> None:
    traffic.set(rate=20, errors=0.0)
    budget = {
        "name": "error-budget",
        "burnRate": {
            "objective": 0.99,
            "period": "1d",  # windows / 30: 2m & 10s (14.4x), 12m & 1m (6x)
            "errors": 'sum(rate(prod_errors_total{namespace="$namespace"}[$window]))',
            "total": 'sum(rate(prod_requests_total{namespace="$namespace"}[$window]))',
        },
        "profile": "lean",
        "reason": "error budget burning",
    }
    scenario.create(policy(rules=[budget]))
    row = wait_rule(scenario, "error-budget", verdict="clear")
    assert [c["name"] for c in row["conditions"]] == ["2m/10s", "12m/1m"]
    traffic.set(rate=20, errors=0.6)  # 60x the budget: the 2m window passes 14.4x within ~30 s
    doc = scenario.wait_profile("lean", timeout=90)
    assert doc["reason"] == "error budget burning"
    row = rule_status(scenario, "error-budget")
    burning = [c for c in row["conditions"] if c["verdict"] == "holds"]
    assert burning and all(
        c["longBurnRate"] > c["threshold"] and c["shortBurnRate"] > c["threshold"] for c in burning
    ), row
    traffic.set(rate=20, errors=0.0)
    scenario.wait_profile("balanced", timeout=60)  # the 10 s window clears, then stabilization (5 s)
    history = [h["to"] for h in scenario.status()["history"]]
    assert history == ["balanced", "lean", "balanced"]


def test_escalation_expires_after_max_duration_with_an_event_and_an_alert(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    scenario.metrics(latency_p95_ms=80, cpu_ratio=0.3, flagged_share=0.05)
    spec = policy()["spec"]
    spec["profiles"][2]["maxDuration"] = "4s"
    scenario.create(
        policy(
            profiles=spec["profiles"],
            rules=[{**SURGE, "query": 'max(detector_flagged_share{namespace="$namespace"})'}],
        )
    )
    scenario.wait_profile("balanced")
    scenario.metrics(flagged_share=0.5)
    scenario.wait_profile("paranoid")
    doc = scenario.wait_profile("balanced", timeout=20)  # the signal never clears: bounded anyway
    assert "maxDuration" in doc["reason"]
    assert rule_status(scenario, "bot-surge")["expired"] is True
    wait_for(lambda: events(scenario, "EscalationExpired"), timeout=10, what="EscalationExpired event")
    alert = wait_for(lambda: firing(scenario, "escalation-expired"), timeout=10, what="escalation alert")[0]
    assert "bot-surge still hold" in alert["summary"]
    scenario.metrics(flagged_share=0.05)  # it clears ...
    wait_for(lambda: not firing(scenario, "escalation-expired"), timeout=15, what="alert resolved")
    scenario.metrics(flagged_share=0.5)  # ... and breaches again: a fresh escalation
    scenario.wait_profile("paranoid", timeout=20)
    assert [h["to"] for h in scenario.status()["history"]] == ["balanced", "paranoid", "balanced", "paranoid"]


def test_shadow_profile_is_reported_and_never_published(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    scenario.metrics(latency_p95_ms=80, cpu_ratio=0.3, flagged_share=0.05)
    spec = policy()["spec"]
    spec["profiles"][2]["shadow"] = True
    rule = {**SURGE, "query": 'max(detector_flagged_share{namespace="$namespace"})'}
    scenario.create(policy(profiles=spec["profiles"], rules=[rule]))
    first = scenario.wait_profile("balanced")
    scenario.metrics(flagged_share=0.5)
    wait_for(lambda: scenario.status().get("shadow") == "paranoid", timeout=20, what="status.shadow")
    message = wait_for(lambda: events(scenario, "ShadowProfile"), timeout=10, what="ShadowProfile event")[0]
    assert "Would switch to shadow profile paranoid due to bot surge" in message
    published = scenario.published_profile()
    assert published is not None and published["profile"] == "balanced"
    assert published["revision"] == first["revision"]
    assert rule_status(scenario, "bot-surge")["shadow"] is True
    assert [h["to"] for h in scenario.status()["history"]] == ["balanced"]


def test_latency_above_the_active_profile_target_raises_a_latency_alert(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    scenario.metrics(latency_p95_ms=120, cpu_ratio=0.3, flagged_share=0.05)
    check = {"query": 'max(detector_latency_p95_ms{namespace="$namespace"})', "for": 3}
    scenario.create(policy(latency=check))
    scenario.wait_profile("balanced")
    wait_for(
        lambda: (scenario.status().get("latency") or {}).get("valueMs") == 120, timeout=20, what="latency"
    )
    assert not firing(scenario, "latency")
    scenario.metrics(latency_p95_ms=180)  # above balanced's 150 ms, below the high-latency rule's 200
    alert = wait_for(lambda: firing(scenario, "latency"), timeout=20, what="latency alert")[0]
    assert "180 ms above the balanced profile's target 150 ms" in alert["summary"]
    latency = scenario.status()["latency"]
    assert latency["breached"] is True and latency["streak"] >= 3 and latency["targetMs"] == 150
    assert scenario.status()["profile"] == "balanced"
    scenario.metrics(latency_p95_ms=100)
    wait_for(lambda: not firing(scenario, "latency"), timeout=20, what="latency alert resolved")


def test_cache_hit_ratio_takes_part_in_the_expense_class(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    labels = '{namespace="$namespace",contributor="$contributor"}'
    for contributor, hits in (("rules", 0.95), ("reputation", 0.95)):
        scenario.exporter.set(
            "detector_contributor_ms", 2, {"namespace": scenario.namespace, "contributor": contributor}
        )
        scenario.exporter.set(
            "detector_cache_hits", hits, {"namespace": scenario.namespace, "contributor": contributor}
        )
    scenario.metrics(latency_p95_ms=80, cpu_ratio=0.3, flagged_share=0.05)
    expense = {
        "window": "5s",
        "queries": {
            "runtimeMs": f"max(detector_contributor_ms{labels})",
            "cacheHitRatio": f"max(detector_cache_hits{labels})",
        },
        "light": {"runtimeMs": 5, "minCacheHitRatio": 0.8},
        "medium": {"runtimeMs": 50, "minCacheHitRatio": 0.4},
    }
    scenario.create(policy(defaultProfile="lean", expense=expense))
    scenario.wait_profile("lean")
    wait_for(  # both light once measured: lean's maxExpense takes reputation too
        lambda: (d := scenario.published_profile()) and d["contributors"] == ["rules", "reputation"],
        timeout=20,
        what="reputation measured light",
    )
    scenario.exporter.set(
        "detector_cache_hits", 0.1, {"namespace": scenario.namespace, "contributor": "reputation"}
    )
    wait_for(
        lambda: (d := scenario.published_profile()) and d["expense"]["reputation"] == "heavy" and d,
        timeout=20,
        what="reputation classed heavy by its cache misses",
    )
    assert scenario.published_profile()["contributors"] == ["rules"]  # type: ignore[index]


def test_status_and_explain_show_the_latest_evaluation_and_what_held_it(
    scenario: Scenario, operator: OperatorProcess, cluster: Any
) -> None:
    scenario.metrics(latency_p95_ms=80, cpu_ratio=0.3, flagged_share=0.5)
    scenario.create(policy(stabilizationWindow="30s"))
    published = scenario.wait_profile("paranoid")
    scenario.metrics(flagged_share=0.1)
    wait_for(lambda: scenario.status().get("heldBy") == "stabilizationWindow", timeout=20, what="heldBy")
    scenario.metrics(latency_p95_ms=91)  # a new measurement, no new decision
    wait_for(lambda: rule_status(scenario, "high-latency").get("value") == 91, timeout=20, what="fresh value")
    assert scenario.published_profile()["revision"] == published["revision"]  # type: ignore[index]
    env = {"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin"}
    explained = subprocess.run(
        [sys.executable, "-m", "detection_operator", "explain", "dp/detector", "-n", scenario.namespace],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert explained.returncode == 0, explained.stderr
    assert "Held by: stabilizationWindow" in explained.stdout
    high_latency = next(line for line in explained.stdout.splitlines() if line.startswith("high-latency"))
    assert " 91 " in high_latency


def test_the_seed_memory_rule_switches_to_lean(
    scenario: Scenario, operator: OperatorProcess, tmp_path: Path
) -> None:
    memory = {
        "name": "high-memory",
        "query": 'max(detector_memory_ratio{namespace="$namespace"})',
        "op": ">",
        "threshold": 0.75,
        "clearThreshold": 0.65,
        "profile": "lean",
        "reason": "memory pressure",
    }
    rules = [*policy()["spec"]["rules"], memory]
    scenario.metrics(latency_p95_ms=80, cpu_ratio=0.3, flagged_share=0.05, memory_ratio=0.5)
    scenario.create(policy(rules=rules))
    scenario.wait_profile("balanced")
    scenario.metrics(memory_ratio=0.82)
    assert scenario.wait_profile("lean")["reason"] == "memory pressure"
