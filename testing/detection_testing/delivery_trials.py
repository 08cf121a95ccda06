"""SIGKILL during a webhook retry: one trial kills the real operator while a receiver is failing its
notification, lets the receiver recover, restarts the operator and counts what arrived.

Used by tests/reliability/test_delivery_kill.py (a few trials, asserted) and bench/delivery.py (n >= 20,
reported). The notification is the policy's profile-switched notice: each trial flips the detector's
latency, so the policy switches once and one record is due at the receiver.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass

from kubernetes import client

from .exporter import MetricExporter
from .kube import wait_for
from .operator_process import OperatorProcess
from .prometheus import PrometheusServer
from .receiver import Request, WebhookReceiver
from .specs import LATENCY_METRIC, latency_policy
from .watched import Watched


@dataclass(frozen=True)
class Trial:
    """What one trial saw at the receiver."""

    tries_before_kill: int
    """Failed tries of the notification the receiver had answered when the operator was killed."""
    ids: frozenset[str]
    """Record ids of the switch the receiver saw (failed or not)."""
    delivered: frozenset[str]
    """Of those, the ids answered with success at least once."""
    redelivered: int
    """Successful deliveries of an id already delivered (a receiver dedupes them by id)."""
    switches: int
    """Distinct ids delivered for this one switch: 1 unless the same decision got two records."""

    @property
    def lost(self) -> bool:
        """The switch's record never arrived."""
        return not self.delivered or self.ids != self.delivered

    @property
    def duplicated(self) -> bool:
        """The same decision arrived under two ids: a receiver deduplicating by id would keep both."""
        return self.switches > 1


def balanced_policy(
    kube: client.ApiClient, namespace: str, exporter: MetricExporter, prometheus: PrometheusServer
) -> Watched:
    """The trials' DetectionPolicy (``latency_policy``, the hook its receiver), created and on balanced."""
    exporter.set(LATENCY_METRIC, 100, {"namespace": namespace})
    prometheus.wait_for_series(f'{LATENCY_METRIC}{{namespace="{namespace}"}}', timeout=60)
    policy = Watched(kube, namespace, "DetectionPolicy", "detector", "detector-detection-profile")
    policy.create(latency_policy())
    wait_for(lambda: policy.status().get("profile") == "balanced", timeout=60, what="balanced")
    return policy


def notices(requests: list[Request], subject: str) -> list[tuple[str, int]]:
    """(record id, answer status) of each profile-switched notice about ``subject`` in ``requests``."""
    return [
        (alert["id"], request.status)
        for request in requests
        for alert in request.json()["alerts"]
        if alert["type"] == "profile-switched" and alert["subject"] == subject
    ]


def kill_during_retry(
    policy: Watched,
    operator: OperatorProcess,
    receiver: WebhookReceiver,
    exporter: MetricExporter,
    labels: dict[str, str],
    to_lean: bool,
    tries_before_kill: int,
    timeout: float = 90,
) -> Trial:
    """Switch the policy (to lean, or back to balanced) while the receiver answers 503; SIGKILL the
    operator once the receiver has failed ``tries_before_kill`` tries of the notice (3: the whole first
    round, so the retry waits in status); recover the receiver, restart the operator, wait for the notice."""
    before, after = ("balanced", "lean") if to_lean else ("lean", "balanced")
    subject = f"{before}->{after}"
    seen = len(receiver.requests)
    receiver.status = 503
    exporter.set(LATENCY_METRIC, 300 if to_lean else 100, labels)
    wait_for(
        lambda: len(notices(receiver.requests[seen:], subject)) >= tries_before_kill,
        timeout=timeout,
        what=f"{tries_before_kill} failed tries of the {subject} notice",
    )
    operator.kill()
    receiver.status = 200
    operator.start()
    with contextlib.suppress(TimeoutError):  # counted as lost below
        wait_for(
            lambda: any(status == 200 for _, status in notices(receiver.requests[seen:], subject)),
            timeout=timeout,
            what=f"the {subject} notice delivered after the restart",
        )
    policy.evaluations(2)  # anything still to come (a duplicate) has had its chance
    found = notices(receiver.requests[seen:], subject)
    ok = Counter(i for i, status in found if status == 200)
    return Trial(
        tries_before_kill=tries_before_kill,
        ids=frozenset(i for i, _ in found),
        delivered=frozenset(ok),
        redelivered=sum(n - 1 for n in ok.values()),
        switches=len(ok),
    )
