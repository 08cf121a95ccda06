"""GitOps health of our objects, judged on status the real operator wrote on the real apiserver: the Argo CD
health Lua we ship (run by a Lua 5.1 interpreter, the dialect of Argo CD's gopher-lua) and kstatus, the
library behind Flux's health checks (built from sigs.k8s.io/cli-utils by `make kstatus`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_testing.exporter import MetricExporter
from detection_testing.health import argocd_health, kstatus
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess

REPO = Path(__file__).resolve().parents[2]
POLICY = yaml.safe_load((REPO / "examples/detection-policy.yaml").read_text())
MODELS = ("hl-primary", "hl-backup")
LABELS = '{namespace="$namespace",model="$model"}'


class Objects:
    """Reads one custom object and records every version of it the test judges."""

    def __init__(self, kube: client.ApiClient, namespace: str, plural: str, name: str) -> None:
        self.api = client.CustomObjectsApi(kube)
        self.namespace, self.plural, self.name = namespace, plural, name
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def get(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural, self.name
        )
        return obj

    def condition(self, obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
        """The condition of ``type_``, only if it was set for the object's current generation."""
        for c in (obj.get("status") or {}).get("conditions", []):
            if c["type"] == type_ and c.get("observedGeneration") == obj["metadata"]["generation"]:
                return dict(c)
        return None

    def when(self, label: str, type_: str, status: str, reason: str | None = None) -> dict[str, Any]:
        """Wait until the current generation's ``type_`` condition has ``status`` (and ``reason``)."""

        def reached() -> dict[str, Any] | None:
            obj = self.get()
            c = self.condition(obj, type_)
            return obj if c and c["status"] == status and reason in (None, c["reason"]) else None

        obj = wait_for(reached, timeout=60, interval=0.2, what=f"{type_}={status} ({label})")
        self.seen.append((label, obj))
        return obj

    def patch(self, label: str, spec: dict[str, Any]) -> None:
        # The patch response is the stored object right after the change, before the operator saw it.
        obj = self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural, self.name, {"spec": spec}
        )
        self.seen.append((label, obj))


def judged(seen: list[tuple[str, dict[str, Any]]]) -> dict[str, tuple[str, str]]:
    """label -> (Argo CD health, kstatus status) for every recorded object."""
    verdicts = kstatus([obj for _, obj in seen])
    return {
        label: (argocd_health(obj)["status"], v["status"])
        for (label, obj), v in zip(seen, verdicts, strict=True)
    }


def test_policy_health_through_its_lifecycle(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    body = dict(POLICY, metadata={"name": "health"})
    objects = Objects(kube, namespace, "detectionpolicies", "health")
    created = objects.api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "detectionpolicies", body
    )
    # As the apiserver returns it before any evaluation: status defaulted to observedGeneration 0.
    assert created["status"]["observedGeneration"] == 0, created.get("status")
    objects.seen.append(("created", created))
    objects.when("published", "Ready", "True")

    # Publishing into somebody else's immutable ConfigMap is refused: the old decision stays.
    core = client.CoreV1Api(kube)
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="health-elsewhere"), data={"a": "b"}, immutable=True
        ),
    )
    objects.patch("spec changed", {"output": {"configMapName": "health-elsewhere"}})
    output_failed = objects.when("output failed", "Ready", "False", "OutputFailed")
    assert "422" in (objects.condition(output_failed, "Ready") or {})["message"]

    objects.patch(
        "spec changed again", {"rules": [{**POLICY["spec"]["rules"][0], "query": "rate(x[${window}])"}]}
    )
    objects.when("invalid spec", "InvalidSpec", "True")

    assert judged(objects.seen) == {
        "created": ("Progressing", "InProgress"),
        "published": ("Healthy", "Current"),
        "spec changed": ("Progressing", "InProgress"),
        "output failed": ("Degraded", "InProgress"),  # Reconciling=True: the operator retries each interval
        "spec changed again": ("Progressing", "InProgress"),
        "invalid spec": ("Degraded", "Failed"),  # Stalled=True: only a spec change can help
    }


@pytest.fixture
def failing_models(exporter: MetricExporter, namespace: str) -> None:
    # Open loop on purpose: every model reports critical accuracy whether or not it serves, so that the
    # route runs out of healthy backups and reports Degraded; traffic realism is not what is judged here.
    for model in MODELS:
        for metric, value in {"accuracy": 0.3, "requests": 500}.items():
            exporter.set(f"hl_{metric}", value, {"namespace": namespace, "model": model})


def test_route_health_when_no_backup_is_healthy(
    kube: client.ApiClient, namespace: str, failing_models: None, operator: OperatorProcess
) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelRoute",
        "metadata": {"name": "health"},
        "spec": {
            "interval": "1s",
            "window": "30s",
            "models": [{"name": m} for m in MODELS],
            "metrics": [
                {"name": "accuracy", "query": f"max(hl_accuracy{LABELS})"},
                {"name": "requests", "query": f"max(hl_requests{LABELS})"},
            ],
            "failureThreshold": 1,
        },
    }
    objects = Objects(kube, namespace, "modelroutes", "health")
    objects.seen.append(
        (
            "created",
            objects.api.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelroutes", body),
        )
    )
    objects.when("degraded", "Degraded", "True")
    assert judged(objects.seen) == {
        "created": ("Progressing", "InProgress"),
        # Reconciled as the spec asks (kstatus Current), but nothing healthy to serve: Argo CD shows Degraded.
        "degraded": ("Degraded", "Current"),
    }
