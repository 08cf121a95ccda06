"""Alerting end to end: the real operator sends to a real HTTP receiver and a real Alertmanager.

Open loop on purpose: these tests follow the alert lifecycle (cooldown, acknowledgement, delivery retries,
restarts), so the route's metrics are gauges set by hand, exact and steady whatever route.json says; in
the closed loop a failover would move the traffic and the values under test. The closed-loop alerting
(idle backups raise nothing, a failing model's alert) is in test_model_route.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_operator.core.signing import ReplayGuard
from detection_testing.alertmanager import AlertmanagerServer
from detection_testing.exporter import MetricExporter
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.receiver import Request, WebhookReceiver

NAME = "classifier"
LABELS = '{namespace="$namespace",model="$model"}'
KEY = b"webhook-test-key"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hook:
        yield hook


@pytest.fixture
def alertmanager(receiver: WebhookReceiver, tmp_path: Path) -> Iterator[AlertmanagerServer]:
    with AlertmanagerServer(tmp_path / "alertmanager", receiver.url + "/from-alertmanager") as am:
        yield am


@pytest.fixture
def operator_env(
    receiver: WebhookReceiver, alertmanager: AlertmanagerServer, tmp_path: Path
) -> dict[str, str]:
    config = {
        "allowedHosts": ["127.0.0.1"],
        "receivers": [
            {"name": "hook", "type": "webhook", "url": receiver.url + "/hook", "hmacKey": KEY.decode()},
            {"name": "am", "type": "alertmanager", "url": alertmanager.url},
        ],
    }
    path = tmp_path / "receivers.json"
    path.write_text(json.dumps(config))
    return {"DETECTION_OPERATOR_RECEIVERS_FILE": str(path)}


class Route:
    def __init__(self, kube: client.ApiClient, exporter: MetricExporter, namespace: str) -> None:
        self.kube, self.exporter, self.namespace = kube, exporter, namespace
        self.objects = client.CustomObjectsApi(kube)
        for model in ("primary", "backup"):
            self.accuracy(model, 0.95)
            exporter.set("al_requests", 500, {"namespace": namespace, "model": model})

    def accuracy(self, model: str, value: float) -> None:
        self.exporter.set("al_accuracy", value, {"namespace": self.namespace, "model": model})

    def create(self, receivers: list[str], cooldown: str = "1h") -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelRoute",
            "metadata": {"name": NAME},
            "spec": {
                "interval": "1s",
                "models": [{"name": "primary"}, {"name": "backup"}],
                "metrics": [
                    # Explicit thresholds: without them accuracy alerts only below the 0.70 default.
                    {
                        "name": "accuracy",
                        "query": f"max(al_accuracy{LABELS})",
                        "warning": 0.85,
                        "critical": 0.75,
                    },
                    {"name": "requests", "query": f"max(al_requests{LABELS})"},
                ],
                "failureThreshold": 2,  # an alert needs 2 evaluations past its threshold
                "alerts": {"receivers": receivers, "cooldown": cooldown},
            },
        }
        self.objects.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "modelroutes", body)

    def status(self) -> dict[str, Any]:
        obj = self.objects.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "modelroutes", NAME)
        return dict(obj.get("status") or {})

    def evaluations(self, count: int) -> None:
        """Wait until the operator has evaluated ``count`` more times."""
        for _ in range(count):
            seen = self.status().get("lastEvaluated", "")
            wait_for(
                lambda s=seen: self.status().get("lastEvaluated", "") > s, timeout=15, what="an evaluation"
            )


def alerts_in(
    requests: list[Request], status: str, subject: str = "primary/accuracy"
) -> list[dict[str, Any]]:
    found = []
    for request in requests:
        for alert in request.json()["alerts"]:
            if alert["status"] == status and alert["subject"] == subject:
                found.append(alert)
    return found


def accuracy_record(route: Route) -> dict[str, Any]:
    """The status record of the primary's accuracy alert."""
    return next(a for a in route.status()["alerts"] if a["subject"] == "primary/accuracy")


def hook_requests(receiver: WebhookReceiver) -> list[Request]:
    return [r for r in receiver.requests if r.path == "/hook"]


@pytest.fixture
def route(kube: client.ApiClient, exporter: MetricExporter, namespace: str) -> Route:
    return Route(kube, exporter, namespace)


def test_one_notification_per_cooldown_then_one_resolved_notice(
    route: Route, receiver: WebhookReceiver, operator: OperatorProcess
) -> None:
    route.create(["hook"])
    route.evaluations(2)
    route.accuracy("primary", 0.80)  # warning: 0.85 > 0.80 > 0.75
    wait_for(lambda: alerts_in(hook_requests(receiver), "firing"), timeout=20, what="firing alert")
    route.evaluations(4)
    firing = alerts_in(hook_requests(receiver), "firing")
    assert len(firing) == 1, firing
    alert = firing[0]
    assert (alert["type"], alert["severity"], alert["threshold"]) == (
        "performance-degradation",
        "warning",
        0.85,
    )
    assert "accuracy = 0.8 past warning threshold 0.85" in alert["summary"] and alert["recommendation"]
    guard = ReplayGuard()
    for request in hook_requests(receiver):
        guard.verify(KEY, request.body, request.headers["X-Signature-SHA256"], now=request.received_at)
    route.accuracy("primary", 0.95)
    wait_for(lambda: alerts_in(hook_requests(receiver), "resolved"), timeout=20, what="resolved notice")
    route.evaluations(3)
    assert len(alerts_in(hook_requests(receiver), "resolved")) == 1

    def reasons() -> set[str]:
        return {e.reason for e in client.CoreV1Api(route.kube).list_namespaced_event(route.namespace).items}

    # The alerts' Events are delivered from the outbox after the status write, apart from the webhook.
    wait_for(lambda: {"AlertFiring", "AlertResolved"} <= reasons(), timeout=30, what="the alert Events")
    assert accuracy_record(route)["state"] == "resolved"


def test_acknowledged_alert_stops_repeating_until_resolved(
    route: Route, receiver: WebhookReceiver, operator: OperatorProcess
) -> None:
    route.create(["hook"], cooldown="2s")
    route.accuracy("primary", 0.80)
    wait_for(lambda: len(alerts_in(hook_requests(receiver), "firing")) >= 2, timeout=30, what="a repeat")
    fingerprint = accuracy_record(route)["fingerprint"]
    route.objects.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        route.namespace,
        "modelroutes",
        NAME,
        {"metadata": {"annotations": {f"detection.adaptive.io/ack-{fingerprint[:8]}": "on-call"}}},
    )
    wait_for(lambda: accuracy_record(route).get("acknowledged"), timeout=15, what="acknowledged")
    count = len(alerts_in(hook_requests(receiver), "firing"))
    route.evaluations(6)  # three cooldowns
    assert len(alerts_in(hook_requests(receiver), "firing")) == count
    route.accuracy("primary", 0.95)
    wait_for(lambda: alerts_in(hook_requests(receiver), "resolved"), timeout=20, what="resolved after ack")


def test_receiver_down_then_up_gets_the_notification(
    route: Route, receiver: WebhookReceiver, operator: OperatorProcess
) -> None:
    route.create(["hook"])
    route.evaluations(2)
    receiver.stop()
    route.accuracy("primary", 0.80)
    wait_for(
        lambda: route.status().get("alerts"), timeout=20, what="alert recorded while the receiver is down"
    )
    receiver.start()
    wait_for(lambda: alerts_in(hook_requests(receiver), "firing"), timeout=20, what="delivered after retry")
    delivered = wait_for(
        lambda: next((c for c in route.status()["conditions"] if c["type"] == "AlertsDelivered"), None),
        timeout=10,
        what="AlertsDelivered condition",
    )
    assert delivered["status"] == "True"


def test_operator_restart_repeats_nothing(
    route: Route, receiver: WebhookReceiver, operator: OperatorProcess
) -> None:
    route.create(["hook"])
    route.accuracy("primary", 0.80)
    wait_for(lambda: alerts_in(hook_requests(receiver), "firing"), timeout=20, what="firing alert")
    operator.kill()
    operator.start()
    route.evaluations(4)
    # Killed before the status write that settles the delivery, the restarted operator sends it again
    # under the same record id (at least once); a receiver deduplicating by id keeps one.
    firing = alerts_in(hook_requests(receiver), "firing")
    assert len({a["id"] for a in firing}) == 1, firing
    assert len(firing) <= 2, firing  # once, or once more after the kill: never on every evaluation


def test_alertmanager_receives_groups_and_resolves(
    route: Route, receiver: WebhookReceiver, operator: OperatorProcess
) -> None:
    route.create(["am"])
    route.accuracy("primary", 0.70)  # critical

    def from_am(status: str) -> list[dict[str, Any]]:
        # The route may also send a model-switched notice (the primary is critical for 2
        # evaluations); this test follows the accuracy alert.
        found = []
        for request in receiver.requests:
            if request.path == "/from-alertmanager":
                found += [
                    a
                    for a in request.json()["alerts"]
                    if a["status"] == status and a["labels"]["alertname"] == "DetectionPerformanceDegradation"
                ]
        return found

    firing = wait_for(lambda: from_am("firing"), timeout=30, what="Alertmanager webhook (firing)")
    labels = firing[0]["labels"]
    assert labels["severity"] == "critical" and labels["subject"] == "primary/accuracy"
    assert labels["namespace"] == route.namespace and labels["name"] == NAME
    route.accuracy("primary", 0.95)
    wait_for(lambda: from_am("resolved"), timeout=30, what="Alertmanager webhook (resolved)")
