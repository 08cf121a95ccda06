"""Both CRDs on a real apiserver with the real operator: valid objects become Ready; every malformed one is
rejected at admission or marked InvalidSpec naming the field, and the operator keeps running."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from detection_operator.api.base import GROUP, VERSION
from detection_operator.api.kinds import by_kind
from detection_testing.documents import edited
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess

REPO = Path(__file__).resolve().parents[2]
MALFORMED: list[dict[str, Any]] = yaml.safe_load((REPO / "tests/data/malformed.yaml").read_text())


def load(path: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / path).read_text())
    return doc


def create(kube: client.ApiClient, namespace: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Create like `kubectl apply` does: unknown fields are an error, not silently pruned."""
    plural = by_kind(doc["kind"]).plural
    created: dict[str, Any] = client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, doc, field_validation="Strict"
    )
    return created


def condition(
    kube: client.ApiClient, namespace: str, doc: dict[str, Any], type_: str
) -> dict[str, Any] | None:
    obj = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, namespace, by_kind(doc["kind"]).plural, doc["metadata"]["name"]
    )
    found = [c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_]
    if found and found[0].get("observedGeneration") == obj["metadata"]["generation"]:
        return dict(found[0])
    return None


@pytest.mark.parametrize("example", ["detection-policy.yaml", "model-route.yaml"])
def test_valid_object_becomes_ready(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess, example: str
) -> None:
    doc = load(f"examples/{example}")
    create(kube, namespace, doc)
    ready = wait_for(lambda: condition(kube, namespace, doc, "Ready"), timeout=30, what="Ready condition")
    assert ready["status"] == "True", ready
    invalid = condition(kube, namespace, doc, "InvalidSpec")
    assert invalid is not None and invalid["status"] == "False"


def test_api_defaults_match_the_models(kube: client.ApiClient, namespace: str, crds: list[str]) -> None:
    created = create(kube, namespace, load("examples/model-route.yaml"))
    spec = created["spec"]
    assert spec["rollback"] == {
        "enabled": True,
        "stableFor": "5m",
        "scaleDownAfter": "10m",
        "trafficPercent": 5,
    }
    assert spec["backupTrafficPercent"] == 0
    assert spec["dryRun"] is False and spec["alerts"]["cooldown"] == "15m"
    assert spec["models"][0]["prewarmReplicas"] == 1


def test_malformed_objects_are_rejected_or_marked_invalid(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    outcomes: dict[str, str] = {}
    for index, case in enumerate(MALFORMED):
        doc = edited(load(case["base"]), case.get("set"), case.get("delete", ()))
        doc["metadata"] = {"name": f"bad-{index}"}
        try:
            create(kube, namespace, doc)
        except ApiException as exc:
            # 422 for schema/CEL violations; 400 for strict decoding (an unknown field, as kubectl sends).
            assert exc.status in (400, 422), f"{case['name']}: {exc.status} {exc.body}"
            assert case["field"] in exc.body, (
                f"{case['name']}: error does not name {case['field']}: {exc.body}"
            )
            outcomes[case["name"]] = "admission"
            continue
        invalid = wait_for(
            lambda doc=doc: condition(kube, namespace, doc, "InvalidSpec"),  # type: ignore[misc]
            timeout=30,
            what=f"InvalidSpec on {case['name']}",
        )
        assert invalid["status"] == "True", f"{case['name']}: accepted by the operator: {invalid}"
        assert case["field"] in invalid["message"], f"{case['name']}: {invalid['message']}"
        ready = condition(kube, namespace, doc, "Ready")
        assert ready is not None and ready["status"] == "False"
        outcomes[case["name"]] = "operator"
    assert outcomes == {c["name"]: c["stage"] for c in MALFORMED}
    assert len(outcomes) >= 15
    assert operator.alive(), operator.log_tail()


def test_invalid_spec_is_reported_as_event(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    case = next(c for c in MALFORMED if c["stage"] == "operator")
    doc = edited(load(case["base"]), case.get("set"), case.get("delete", ()))
    create(kube, namespace, doc)

    def warning_event() -> list[Any]:
        events = client.CoreV1Api(kube).list_namespaced_event(namespace).items
        return [e for e in events if e.reason == "InvalidSpec" and e.type == "Warning"]

    events = wait_for(warning_event, timeout=30, what="InvalidSpec event")
    assert case["field"] in events[0].message


def test_fixing_the_spec_clears_invalid_spec(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    good = load("examples/detection-policy.yaml")
    bad = edited(good, {"spec.rules[0].query": "rate(x[$windw])"})
    create(kube, namespace, bad)
    wait_for(
        lambda: (c := condition(kube, namespace, bad, "InvalidSpec")) and c["status"] == "True",
        timeout=30,
        what="InvalidSpec=True",
    )
    client.CustomObjectsApi(kube).patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "detectionpolicies",
        bad["metadata"]["name"],
        {"spec": {"rules": good["spec"]["rules"]}},
    )
    ready = wait_for(
        lambda: (c := condition(kube, namespace, bad, "Ready")) and c["status"] == "True" and c,
        timeout=30,
        what="Ready=True after the fix",
    )
    assert ready["reason"] != "InvalidSpec"
    invalid = condition(kube, namespace, bad, "InvalidSpec")
    assert invalid is not None and invalid["status"] == "False"
