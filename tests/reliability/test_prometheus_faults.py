"""Prometheus faults: the operator keeps the last good profile, names the cause, and recovers quietly.

A fault proxy sits between the operator and the real Prometheus. Each case establishes a decision (`lean`,
from a real scraped metric), injects one fault, checks that the profile is held (holdFor is 1h) with
`MetricsAvailable=False` naming the rule and cause, heals, and checks that recovery adds no switch, no
revision and no second alert: the webhook gets the metrics-unavailable alert once and its resolution once.
Falling back after holdFor is covered by tests/integration/test_policy_switching.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from detection_testing.exporter import MetricExporter
from detection_testing.faultproxy import FaultProxy
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.prometheus import PrometheusServer
from detection_testing.receiver import WebhookReceiver
from detection_testing.report import Report
from detection_testing.specs import LATENCY_METRIC, latency_policy
from detection_testing.watched import Watched

NAME = "detector"


def alerts(receiver: WebhookReceiver, type_: str, status: str) -> list[dict[str, Any]]:
    """Alerts of ``type_`` with ``status`` the webhook received, in every notification so far."""
    return [
        alert
        for request in receiver.requests
        for alert in request.json()["alerts"]
        if alert["type"] == type_ and alert["status"] == status
    ]


class Fault:
    """How to inject one fault and how to heal it, and the cause the condition must name."""

    def __init__(self, cause: str, inject: Callable[[], None], heal: Callable[[], None]) -> None:
        self.cause, self.inject, self.heal = cause, inject, heal


def fault(name: str, proxy: FaultProxy, exporter: MetricExporter, namespace: str) -> Fault:
    def mode(value: Any, delay: float = 0.0) -> Callable[[], None]:
        def switch() -> None:
            proxy.delay = delay
            proxy.mode = value

        return switch

    labels = {"namespace": namespace}
    faults = {
        # Responses beyond the operator's 2 s query timeout.
        "slow": Fault("timeout", mode("delay", delay=4.0), mode("pass")),
        "5xx": Fault("error", mode("error"), mode("pass")),
        "malformed JSON": Fault("bad-response", mode("malformed"), mode("pass")),
        "empty vector": Fault("empty", mode("empty"), mode("pass")),
        "NaN": Fault("nan", mode("nan"), mode("pass")),
        "+Inf": Fault("inf", mode("inf"), mode("pass")),
        "many series": Fault("many-series", mode("many"), mode("pass")),
        # The real server with the series gone: Prometheus marks it stale, the query returns nothing.
        "stale data": Fault(
            "empty",
            lambda: exporter.remove(LATENCY_METRIC, labels),
            lambda: exporter.set(LATENCY_METRIC, 300, labels),
        ),
        # Connection refused, as the operator sees a stopped Prometheus.
        "stopped": Fault("error", proxy.stop, proxy.start),
    }
    return faults[name]


@pytest.mark.parametrize(
    "name",
    ["stopped", "slow", "5xx", "malformed JSON", "empty vector", "NaN", "+Inf", "many series", "stale data"],
)
def test_fault_holds_the_profile_reports_it_and_recovers_without_a_switch_or_duplicate_alert(
    name: str,
    kube: client.ApiClient,
    namespace: str,
    exporter: MetricExporter,
    prometheus: PrometheusServer,
    proxy: FaultProxy,
    receiver: WebhookReceiver,
    operator: OperatorProcess,
    report: Report,
) -> None:
    policy = Watched(kube, namespace, "DetectionPolicy", NAME, f"{NAME}-detection-profile")
    exporter.set(LATENCY_METRIC, 300, {"namespace": namespace})
    prometheus.wait_for_series(f'{LATENCY_METRIC}{{namespace="{namespace}"}}', timeout=30)
    spec = latency_policy()
    if name == "NaN":
        # NaN is what a ratio over idle counters gives (0/0: no traffic), clear by default; a rule on a
        # gauge that must never be NaN says so.
        spec["rules"][0]["whenNoTraffic"] = "unknown"
    policy.create(spec)
    wait_for(lambda: policy.status().get("profile") == "lean", timeout=60, what="lean profile")
    policy.wait_condition("MetricsAvailable", "True")
    # The selection's Event follows its status write (it is delivered from the outbox).
    wait_for(lambda: policy.events("ProfileSelected"), timeout=30, what="the ProfileSelected Event")
    before = policy.status()
    switches = len(policy.events("ProfileSwitched")) + len(policy.events("ProfileSelected"))

    injected = fault(name, proxy, exporter, namespace)
    injected.inject()
    try:
        unavailable = policy.wait_condition("MetricsAvailable", "False", timeout=60)
        assert "high-latency" in unavailable["message"] and injected.cause in unavailable["message"]
        policy.evaluations(2)
        held = policy.status()
        assert held["profile"] == "lean" and held["revision"] == before["revision"]
        document = policy.document("profile.json")  # the last good decision stays published
        assert document is not None and (document["profile"], document["revision"]) == (
            "lean",
            before["revision"],
        )
        wait_for(lambda: alerts(receiver, "metrics-unavailable", "firing"), timeout=30, what="alert")
    finally:
        injected.heal()

    policy.wait_condition("MetricsAvailable", "True", timeout=60)
    wait_for(lambda: alerts(receiver, "metrics-unavailable", "resolved"), timeout=30, what="resolved")
    policy.evaluations(3)
    after = policy.status()
    assert after["profile"] == "lean" and after["revision"] == before["revision"]
    assert after["history"] == before["history"]
    assert len(policy.events("ProfileSwitched")) + len(policy.events("ProfileSelected")) == switches
    firing = alerts(receiver, "metrics-unavailable", "firing")
    resolved = alerts(receiver, "metrics-unavailable", "resolved")
    assert (len(firing), len(resolved)) == (1, 1), (firing, resolved)
    assert not alerts(receiver, "profile-switched", "firing")
    report.fault(
        f"Prometheus {name}",
        f"profile held, MetricsAvailable=False ({injected.cause}), one alert + one resolve, no switch",
        f"held `lean` (revision {after['revision']} unchanged); condition named `{injected.cause}`; "
        f"alerts fired/resolved {len(firing)}/{len(resolved)}; switches unchanged",
    )
