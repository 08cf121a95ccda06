"""DETECTION_OPERATOR_STATUS_REFRESH_SECONDS: measured-only changes wait, decisions are written at once."""

from __future__ import annotations

import pytest
from kubernetes import client

from detection_testing.exporter import MetricExporter
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess

from .test_policy_switching import CALM, Scenario, policy


@pytest.fixture
def operator_env() -> dict[str, str]:
    return {"DETECTION_OPERATOR_STATUS_REFRESH_SECONDS": "600"}


def evaluations(operator: OperatorProcess) -> float:
    return sum(operator.metrics().get("detection_operator_evaluations_total", {}).values())


def test_only_measurements_wait_and_a_switch_is_written_at_once(
    kube: client.ApiClient, exporter: MetricExporter, namespace: str, operator: OperatorProcess
) -> None:
    scenario = Scenario(kube, exporter, namespace)
    scenario.metrics(**CALM)
    scenario.external(0.01)
    scenario.create(policy())
    scenario.wait_profile("balanced")
    wait_for(
        lambda: (
            (scenario.condition("MetricsAvailable") or {}).get("status") == "True"
            and all("value" in r for r in scenario.status()["rules"])
        ),
        timeout=30,
        what="every query answered with a value (an empty answer reads clear, without one)",
    )
    written = scenario.status()
    scenario.metrics(latency_p95_ms=90)  # a new measurement, the same decision
    target = evaluations(operator) + 5
    wait_for(lambda: evaluations(operator) >= target, timeout=30, what="five more evaluations")
    unchanged = scenario.status()
    assert unchanged["lastEvaluated"] == written["lastEvaluated"]
    assert unchanged["rules"] == written["rules"]  # the value 80 stays until the refresh period ends
    scenario.metrics(latency_p95_ms=250)
    scenario.wait_profile("lean", timeout=30)  # waits for status.profile too
    status = scenario.status()
    assert status["history"][-1]["to"] == "lean" and status["lastEvaluated"] > written["lastEvaluated"]
    assert {r["name"]: r.get("value") for r in status["rules"]}["high-latency"] == 250
