"""Receiver faults: a webhook that is down, slow, or answers 4xx/5xx gets a bounded number of tries, the
failure shows in `AlertsDelivered`, and evaluations keep their 1 s cadence while deliveries fail.

The alert is the policy's metrics-unavailable alert, raised by switching the Prometheus fault proxy to
empty answers. The receiver is configured with 3 attempts of 1 s each (tests/reliability/conftest.py).
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from detection_operator.record.outbox import ROUND_BACKOFF_START
from detection_testing.exporter import MetricExporter
from detection_testing.faultproxy import FaultProxy
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.prometheus import PrometheusServer
from detection_testing.receiver import WebhookReceiver
from detection_testing.report import Report
from detection_testing.specs import LATENCY_METRIC, latency_policy
from detection_testing.watched import Watched

ATTEMPTS = 3
# (receiver fault, tries the receiver should see, words the AlertsDelivered message must contain)
CASES = {
    "down": (0, f"ConnectError after {ATTEMPTS} attempt(s)"),
    "slow": (ATTEMPTS, f"ReadTimeout after {ATTEMPTS} attempt(s)"),
    "4xx": (1, "HTTP 400 after 1 attempt(s)"),
    "5xx": (ATTEMPTS, f"HTTP 503 after {ATTEMPTS} attempt(s)"),
}


def distinct_evaluations(policy: Watched, seconds: float) -> int:
    """How many different `lastEvaluated` stamps (whole seconds) appear within ``seconds``."""
    seen = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.add(policy.status().get("lastEvaluated"))
        time.sleep(0.2)
    return len(seen)


@pytest.mark.parametrize("fault", list(CASES))
def test_failing_receiver_gets_bounded_tries_and_never_delays_evaluation(
    fault: str,
    kube: client.ApiClient,
    namespace: str,
    exporter: MetricExporter,
    prometheus: PrometheusServer,
    proxy: FaultProxy,
    receiver: WebhookReceiver,
    operator: OperatorProcess,
    report: Report,
) -> None:
    expected_tries, message = CASES[fault]
    exporter.set(LATENCY_METRIC, 300, {"namespace": namespace})
    prometheus.wait_for_series(f'{LATENCY_METRIC}{{namespace="{namespace}"}}', timeout=30)
    policy = Watched(kube, namespace, "DetectionPolicy", "detector", "detector-detection-profile")
    policy.create(latency_policy())
    wait_for(lambda: policy.status().get("profile") == "lean", timeout=60, what="lean profile")
    if fault == "down":
        receiver.stop()
    elif fault == "slow":
        receiver.delay = 2.5  # beyond the receiver's 1 s timeout
    else:
        receiver.status = 400 if fault == "4xx" else 503

    proxy.mode = "empty"  # raises the metrics-unavailable alert
    evaluations = distinct_evaluations(policy, 8.0)
    failed = policy.wait_condition("AlertsDelivered", "False", timeout=60)
    assert "receiver hook" in failed["message"] and message in failed["message"], failed
    policy.evaluations(3)  # later evaluations do not retry the same notification
    # One round of tries; the outbox retries a failed round ROUND_BACKOFF_START after it (across evaluations
    # and restarts; the due time is kept in status in whole seconds, so up to a second earlier), so a later
    # try is the next round, not a retry of this one.
    requests = list(receiver.requests)
    start = requests[0].received_at if requests else 0.0
    first_round = [r for r in requests if r.received_at < start + ROUND_BACKOFF_START - 1.0]
    tries = len(first_round)
    assert tries == expected_tries, [(r.path, r.received_at) for r in requests]
    # Deliveries take up to ~4.5 s (3 tries of 1 s plus 0.5 s and 1 s back-off); evaluations go on at 1 s.
    assert evaluations >= 5, f"only {evaluations} evaluations in 8 s while the receiver failed"
    assert policy.status()["profile"] == "lean"
    report.fault(
        f"webhook receiver {fault}",
        "bounded tries (3, or 1 for a 4xx), AlertsDelivered=False naming it, evaluation not delayed",
        f"{tries} tries seen by the receiver; condition: `{message}`; "
        f"{evaluations} evaluations in the 8 s after the alert (interval 1 s)",
    )
