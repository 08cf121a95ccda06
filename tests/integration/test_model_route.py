"""ModelRoute end to end: real operator, apiserver (with Deployments), Prometheus and exporter.

Windows are scaled down to seconds; the semantics are those of a production route at 30 s / 5 m.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from detection_operator.api.base import GROUP, VERSION
from detection_operator.testing.exporter import MetricExporter
from detection_operator.testing.kube import wait_for
from detection_operator.testing.operator_process import OperatorProcess

REPO = Path(__file__).resolve().parents[2]
ROUTE_SCHEMA = json.loads((REPO / "docs/schemas/route.schema.json").read_text())
NAME = "classifier"
MODELS = ("nw-primary", "nw-backup1", "nw-backup2")
LABELS = '{namespace="$namespace",model="$model"}'
HEALTHY = {"accuracy": 0.95, "latency_p95_ms": 400, "success_rate": 0.99, "requests": 500}
WARNING = {**HEALTHY, "accuracy": 0.80}
CRITICAL = {**HEALTHY, "accuracy": 0.60}


def route(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "interval": "1s",
        "window": "30s",
        "models": [{"name": m, "deployment": m} for m in MODELS],
        "metrics": [
            {"name": "accuracy", "query": f"max(nw_accuracy{LABELS})"},
            {"name": "latencyP95Ms", "query": f"max(nw_latency_p95_ms{LABELS})"},
            {"name": "successRate", "query": f"max(nw_success_rate{LABELS})"},
            {"name": "requests", "query": f"max(nw_requests{LABELS})"},
        ],
        "minRequests": 50,
        "failureThreshold": 2,
        "maxFailoversPerHour": 5,
        "rollback": {"stableFor": "4s", "scaleDownAfter": "3s"},
    }
    spec.update(overrides)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelRoute",
        "metadata": {"name": NAME},
        "spec": spec,
    }


class Route:
    def __init__(self, kube: client.ApiClient, exporter: MetricExporter, namespace: str) -> None:
        self.exporter, self.namespace = exporter, namespace
        self.objects = client.CustomObjectsApi(kube)
        self.core = client.CoreV1Api(kube)
        self.apps = client.AppsV1Api(kube)
        for model in MODELS:
            self.set(model, HEALTHY)
            self.deployment(model)

    def deployment(self, name: str) -> None:
        labels = {"app": name}
        self.apps.create_namespaced_deployment(
            self.namespace,
            client.V1Deployment(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1DeploymentSpec(
                    replicas=1 if name == MODELS[0] else 0,
                    selector=client.V1LabelSelector(match_labels=labels),
                    template=client.V1PodTemplateSpec(
                        metadata=client.V1ObjectMeta(labels=labels),
                        spec=client.V1PodSpec(
                            containers=[client.V1Container(name="m", image="registry.invalid/m:1")]
                        ),
                    ),
                ),
            ),
        )

    def replicas(self, name: str) -> int:
        return int(self.apps.read_namespaced_deployment(name, self.namespace).spec.replicas)

    def set(self, model: str, values: dict[str, float]) -> None:
        for metric, value in values.items():
            self.exporter.set(f"nw_{metric}", value, {"namespace": self.namespace, "model": model})

    def create(self, body: dict[str, Any]) -> None:
        self.objects.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "modelroutes", body)

    def status(self) -> dict[str, Any]:
        obj = self.objects.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "modelroutes", NAME)
        return dict(obj.get("status") or {})

    def condition(self, type_: str) -> dict[str, Any] | None:
        return next((c for c in self.status().get("conditions", []) if c["type"] == type_), None)

    def published(self) -> dict[str, Any] | None:
        try:
            cm = self.core.read_namespaced_config_map(f"{NAME}-model-route", self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return json.loads((cm.data or {})["route.json"])

    def wait_active(self, model: str, timeout: float = 30) -> dict[str, Any]:
        def active() -> dict[str, Any] | None:
            doc = self.published()
            return doc if doc and doc["active"] == model else None

        document = wait_for(active, timeout=timeout, interval=0.2, what=f"route.json active={model}")
        # The ConfigMap is written before the status of the same evaluation: let the status catch up.
        wait_for(lambda: self.status().get("activeModel") == model, timeout=10, what=f"status active={model}")
        return document

    def events(self, reason: str) -> list[str]:
        return [
            e.message for e in self.core.list_namespaced_event(self.namespace).items if e.reason == reason
        ]


@pytest.fixture
def r(kube: client.ApiClient, exporter: MetricExporter, namespace: str) -> Route:
    return Route(kube, exporter, namespace)


def test_failover_chain_and_rollback(r: Route, operator: OperatorProcess) -> None:
    r.create(route())
    first = r.wait_active("nw-primary")
    jsonschema.validate(first, ROUTE_SCHEMA)
    assert first["state"] == "Primary" and [c["name"] for c in first["candidates"]] == list(MODELS)
    r.set("nw-primary", CRITICAL)
    failed_over = r.wait_active("nw-backup1")
    assert failed_over["state"] == "FailedOver" and "accuracy 0.6 past critical 0.75" in failed_over["reason"]
    jsonschema.validate(failed_over, ROUTE_SCHEMA)
    assert r.replicas("nw-backup1") == 1  # the backup serving traffic is scaled up
    r.set("nw-backup1", CRITICAL)
    assert r.wait_active("nw-backup2")["state"] == "FailedOver"
    r.set("nw-primary", HEALTHY)
    rolled = r.wait_active("nw-primary", timeout=30)
    assert rolled["state"] == "Primary" and "rolled back" in rolled["reason"]
    history = r.status()["switchHistory"]
    assert [(h["from"], h["to"]) for h in history] == [
        ("nw-primary", "nw-backup1"),
        ("nw-backup1", "nw-backup2"),
        ("nw-backup2", "nw-primary"),
    ]
    assert "rolledBackAt" in history[-2]
    assert len(r.events("ModelSwitched")) == 2 and len(r.events("ModelRolledBack")) == 1
    # Once the primary serves again, the warmed backups go back to zero after scaleDownAfter.
    wait_for(
        lambda: r.replicas("nw-backup1") == 0 and r.replicas("nw-backup2") == 0,
        timeout=20,
        what="backups scaled back down",
    )


def test_warning_prewarms_the_next_backup_before_any_switch(r: Route, operator: OperatorProcess) -> None:
    r.create(route())
    r.wait_active("nw-primary")
    assert r.replicas("nw-backup1") == 0
    r.set("nw-primary", WARNING)
    wait_for(lambda: r.replicas("nw-backup1") == 1, timeout=20, what="backup1 pre-warmed")
    assert r.published()["active"] == "nw-primary"  # type: ignore[index]
    assert r.status()["switchHistory"] == []
    assert any("pre-warm" in m for m in r.events("BackupScaled"))


def test_too_few_requests_makes_no_decision(r: Route, operator: OperatorProcess) -> None:
    r.set("nw-primary", {**CRITICAL, "requests": 10})
    r.create(route())
    insufficient = wait_for(
        lambda: (c := r.condition("InsufficientData")) and c["status"] == "True" and c,
        timeout=20,
        what="InsufficientData=True",
    )
    assert "minRequests 50" in insufficient["message"]
    for _ in range(3):
        evaluated = r.status()["lastEvaluated"]
        wait_for(lambda e=evaluated: r.status()["lastEvaluated"] > e, timeout=10, what="more evaluations")
    assert r.status()["activeModel"] == "nw-primary" and r.status()["switchHistory"] == []


def test_override_pins_a_model(r: Route, operator: OperatorProcess) -> None:
    r.set("nw-backup2", CRITICAL)
    r.create(route(override={"model": "nw-backup2", "reason": "canary of the new weights"}))
    doc = r.wait_active("nw-backup2")
    assert doc["state"] == "Overridden" and "canary" in doc["reason"]
    # The ConfigMap is written before the status of the same evaluation.
    wait_for(lambda: r.status().get("state") == "Overridden", timeout=10, what="status state Overridden")


def test_operator_restart_mid_failover_keeps_state_without_duplicates(
    r: Route, operator: OperatorProcess
) -> None:
    r.create(route(rollback={"stableFor": "1h", "scaleDownAfter": "1h"}))
    r.wait_active("nw-primary")
    r.set("nw-primary", CRITICAL)
    before = r.wait_active("nw-backup1")
    operator.kill()
    operator.start()
    for _ in range(3):  # a few evaluations by the restarted operator, still with the primary critical
        evaluated = r.status()["lastEvaluated"]
        wait_for(
            lambda e=evaluated: r.status()["lastEvaluated"] > e, timeout=15, what="evaluation after restart"
        )
    after = r.published()
    assert after is not None and after["active"] == "nw-backup1" and after["revision"] == before["revision"]
    assert len(r.status()["switchHistory"]) == 1
    assert len(r.events("ModelSwitched")) == 1
