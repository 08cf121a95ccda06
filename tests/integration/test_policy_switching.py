"""DetectionPolicy end to end: the real operator, apiserver and Prometheus, metrics set through the exporter.

Intervals are scaled down (1 s evaluations, seconds-long windows) so each scenario takes seconds; the
semantics are the ones a production policy has at 30 s / 5 m.
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
from detection_operator.client.readers import ProfileReader
from detection_testing.exporter import MetricExporter
from detection_testing.kube import wait_for
from detection_testing.node_client import DocumentFollower
from detection_testing.operator_process import OperatorProcess
from detection_testing.prometheus import PrometheusServer

REPO = Path(__file__).resolve().parents[2]
PROFILE_SCHEMA = json.loads((REPO / "docs/schemas/profile.schema.json").read_text())
SCORECARD_SCHEMA = json.loads((REPO / "docs/schemas/scorecard.schema.json").read_text())
NAME = "detector"
EXTERNAL_LABELS = '{namespace="$namespace",service="$contributor"}'


def policy(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "interval": "1s",
        "defaultProfile": "balanced",
        "fallbackProfile": "balanced",
        "holdFor": "3s",
        "stabilizationWindow": "5s",
        "minDwell": "1s",
        "profiles": [
            {"name": "lean", "latencyTargetMs": 50, "contributors": ["rules"], "maxExpense": "light"},
            {"name": "balanced", "latencyTargetMs": 150, "contributors": ["rules", "reputation"]},
            {
                "name": "paranoid",
                "latencyTargetMs": 500,
                "contributors": ["rules", "reputation", "llm"],
                "allowExternal": True,
            },
        ],
        "rules": [
            {
                "name": "high-latency",
                "query": 'max(detector_latency_p95_ms{namespace="$namespace"})',
                "op": ">",
                "threshold": 200,
                "clearThreshold": 150,
                "for": 2,
                "profile": "lean",
                "reason": "high latency",
            },
            {
                "name": "high-cpu",
                "query": 'max(detector_cpu_ratio{namespace="$namespace"})',
                "op": ">",
                "threshold": 0.8,
                "profile": "lean",
                "reason": "CPU saturation",
            },
            {
                "name": "bot-surge",
                "query": 'max(detector_flagged_share{namespace="$namespace"})',
                "op": ">",
                "threshold": 0.2,
                "profile": "paranoid",
                "reason": "bot surge",
            },
        ],
        "contributors": [
            {"name": "rules", "expense": "light"},
            {"name": "reputation", "expense": "medium"},
            {"name": "llm", "expense": "heavy"},
        ],
        "externalContributors": {
            "circuit": {"maxErrorRate": 0.1, "coolDown": "3s"},
            "queries": {
                "errorRate": f"max(detector_external_error_rate{EXTERNAL_LABELS})",
                "accuracy": f"max(detector_external_accuracy{EXTERNAL_LABELS})",
            },
            "services": [
                {"name": "ip-intel", "endpoint": "https://ip-intel.example/v1", "signals": ["ip", "asn"]}
            ],
        },
    }
    spec.update(overrides)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DetectionPolicy",
        "metadata": {"name": NAME},
        "spec": spec,
    }


class Scenario:
    """Set metrics for one namespace and read back what the operator did."""

    def __init__(self, kube: client.ApiClient, exporter: MetricExporter, namespace: str) -> None:
        self.kube, self.exporter, self.namespace = kube, exporter, namespace
        self.objects = client.CustomObjectsApi(kube)
        self.core = client.CoreV1Api(kube)

    def metrics(self, **values: float) -> None:
        for name, value in values.items():
            self.exporter.set(f"detector_{name}", value, {"namespace": self.namespace})

    def external(self, error_rate: float, accuracy: float = 0.9) -> None:
        labels = {"namespace": self.namespace, "service": "ip-intel"}
        self.exporter.set("detector_external_error_rate", error_rate, labels)
        self.exporter.set("detector_external_accuracy", accuracy, labels)

    def create(self, body: dict[str, Any]) -> None:
        self.objects.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "detectionpolicies", body
        )

    def status(self) -> dict[str, Any]:
        obj = self.objects.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "detectionpolicies", NAME
        )
        return dict(obj.get("status") or {})

    def condition(self, type_: str) -> dict[str, Any] | None:
        return next((c for c in self.status().get("conditions", []) if c["type"] == type_), None)

    def config_map(self) -> dict[str, str] | None:
        try:
            cm = self.core.read_namespaced_config_map(f"{NAME}-detection-profile", self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(cm.data or {})

    def published_profile(self) -> dict[str, Any] | None:
        data = self.config_map()
        return json.loads(data["profile.json"]) if data else None

    def wait_profile(self, profile: str, timeout: float = 30) -> dict[str, Any]:
        """Wait until profile.json names ``profile``; return the document."""

        def published() -> dict[str, Any] | None:
            doc = self.published_profile()
            return doc if doc and doc["profile"] == profile else None

        document = wait_for(published, timeout=timeout, interval=0.2, what=f"profile.json to say {profile}")
        # The ConfigMap is written before the status of the same evaluation: let the status catch up.
        wait_for(
            lambda: self.status().get("profile") == profile, timeout=10, what=f"status.profile={profile}"
        )
        return document

    def switch_events(self) -> list[str]:
        events = self.core.list_namespaced_event(self.namespace).items
        return [e.message for e in events if e.reason == "ProfileSwitched"]


@pytest.fixture
def scenario(kube: client.ApiClient, exporter: MetricExporter, namespace: str) -> Scenario:
    return Scenario(kube, exporter, namespace)


CALM = {"latency_p95_ms": 80, "cpu_ratio": 0.3, "flagged_share": 0.05}


def test_high_latency_switches_to_lean_and_publishes_a_valid_contract(
    scenario: Scenario, operator: OperatorProcess, prometheus: PrometheusServer
) -> None:
    scenario.metrics(**CALM)
    scenario.external(0.01)
    scenario.create(policy())
    first = scenario.wait_profile("balanced")
    assert first["revision"] == 1
    scenario.metrics(latency_p95_ms=250)
    doc = scenario.wait_profile("lean")
    assert doc["reason"] == "high latency" and doc["revision"] > first["revision"]
    assert doc["contributors"] == ["rules"] and doc["latencyTargetMs"] == 50
    assert any("high-latency = 250" in r for r in doc["reasons"])
    data = scenario.config_map()
    assert data is not None
    jsonschema.validate(doc, PROFILE_SCHEMA)
    scorecard = json.loads(data["scorecard.json"])
    jsonschema.validate(scorecard, SCORECARD_SCHEMA)
    assert {r["name"]: r["verdict"] for r in scorecard["rules"]}["high-latency"] == "holds"
    wait_for(
        lambda: "Switched to lean profile due to high latency" in scenario.switch_events(),
        timeout=10,
        what="switch event",
    )
    status = scenario.status()
    assert status["profile"] == "lean" and status["history"][-1]["to"] == "lean"
    cm = scenario.core.read_namespaced_config_map(f"{NAME}-detection-profile", scenario.namespace)
    owner = cm.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("DetectionPolicy", NAME, True)


def test_cpu_saturation_switches_to_lean(scenario: Scenario, operator: OperatorProcess) -> None:
    scenario.metrics(**CALM)
    scenario.create(policy())
    scenario.wait_profile("balanced")
    scenario.metrics(cpu_ratio=0.93)
    assert scenario.wait_profile("lean")["reason"] == "CPU saturation"


def test_bot_surge_switches_to_paranoid_then_relaxes_after_the_window(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    scenario.metrics(**CALM)
    scenario.external(0.01)
    scenario.create(policy())
    scenario.wait_profile("balanced")
    scenario.metrics(flagged_share=0.35)
    doc = scenario.wait_profile("paranoid")
    assert doc["reason"] == "bot surge" and doc["contributors"] == ["rules", "reputation", "llm"]
    assert [e["enabled"] for e in doc["external"]] == [True]
    scenario.metrics(flagged_share=0.05)
    status = wait_for(
        lambda: (s := scenario.status()) and s.get("reason", "").startswith("rules clear, stabilizing") and s,
        timeout=15,
        what="stabilizing",
    )
    assert status["profile"] == "paranoid"
    relaxed = scenario.wait_profile("balanced", timeout=30)
    history = scenario.status()["history"]
    clear_seen = history[-2]["at"]
    assert history[-1]["to"] == "balanced" and history[-1]["at"] >= clear_seen
    assert relaxed["revision"] == doc["revision"] + 1


def test_prometheus_down_falls_back_then_recovers(
    scenario: Scenario, operator: OperatorProcess, prometheus: PrometheusServer
) -> None:
    scenario.metrics(**CALM)
    scenario.create(policy(defaultProfile="lean"))
    scenario.wait_profile("lean")
    prometheus.stop()
    try:
        unavailable = wait_for(
            lambda: (c := scenario.condition("MetricsAvailable")) and c["status"] == "False" and c,
            timeout=15,
            what="MetricsAvailable=False",
        )
        assert "rule high-latency" in unavailable["message"] and "error" in unavailable["message"]
        assert scenario.status()["profile"] == "lean"  # held for holdFor first
        doc = scenario.wait_profile("balanced", timeout=20)
        assert "metrics unavailable" in doc["reason"]
    finally:
        prometheus.start()
    wait_for(
        lambda: (c := scenario.condition("MetricsAvailable")) and c["status"] == "True",
        timeout=30,
        what="MetricsAvailable=True",
    )
    scenario.wait_profile("lean", timeout=30)


def test_operator_restart_mid_window_adds_no_switch(scenario: Scenario, operator: OperatorProcess) -> None:
    scenario.metrics(**CALM)
    scenario.create(policy(stabilizationWindow="8s"))
    scenario.wait_profile("balanced")
    scenario.metrics(latency_p95_ms=300)
    scenario.wait_profile("lean")
    scenario.metrics(latency_p95_ms=90)
    wait_for(
        lambda: scenario.status().get("memory", {}).get("clearSince"), timeout=10, what="clear window open"
    )
    operator.kill()
    operator.start()
    scenario.wait_profile("balanced", timeout=30)
    history = scenario.status()["history"]
    assert [h["to"] for h in history] == ["balanced", "lean", "balanced"], history
    # The switch's Event is delivered from the outbox after the status write: wait for it.
    wait_for(lambda: len(scenario.switch_events()) >= 2, timeout=30, what="the second ProfileSwitched Event")
    assert len(scenario.switch_events()) == 2, scenario.switch_events()
    # Quiet afterwards: no further switch while the metrics stay calm.
    revision = scenario.status()["revision"]
    wait_for(
        lambda: scenario.status()["lastEvaluated"] > history[-1]["at"], timeout=10, what="another evaluation"
    )
    assert scenario.status()["revision"] == revision


def test_external_service_errors_open_the_circuit_and_recovery_closes_it(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    scenario.metrics(**{**CALM, "flagged_share": 0.5})
    scenario.external(0.01)
    scenario.create(policy())
    doc = scenario.wait_profile("paranoid")
    assert doc["external"][0]["enabled"] and doc["external"][0]["weight"] == pytest.approx(1.69, abs=0.01)
    scenario.external(0.4)

    def external_state(enabled: bool) -> dict[str, Any] | None:
        current = scenario.published_profile()
        entry = current["external"][0] if current else None
        return entry if entry and entry["enabled"] is enabled else None

    opened = wait_for(lambda: external_state(False), timeout=20, what="circuit open")
    assert opened["circuit"] == "open" and opened["weight"] == 0
    # The ConfigMap is written before the status of the same evaluation: let the status catch up.
    reason = wait_for(
        lambda: scenario.status()["externalContributors"][0].get("reason"), timeout=10, what="circuit reason"
    )
    assert reason.startswith("error rate 40.0%")
    scenario.external(0.01)
    closed = wait_for(
        lambda: (e := external_state(True)) and e["circuit"] == "closed" and e,
        timeout=30,
        what="circuit closed",
    )
    assert closed["weight"] > 0

    def reasons() -> set[str]:
        return {e.reason for e in scenario.core.list_namespaced_event(scenario.namespace).items}

    # The circuit's Events are posted after the status write, which follows the ConfigMap: wait for them.
    wanted = {"ExternalServiceUnavailable", "ExternalServiceRecovered"}
    wait_for(lambda: wanted <= reasons(), timeout=30, what=f"the Events {sorted(wanted)}")


def test_dry_run_decides_but_writes_nothing(scenario: Scenario, operator: OperatorProcess) -> None:
    scenario.metrics(**{**CALM, "latency_p95_ms": 300})
    scenario.create(policy(dryRun=True))
    wait_for(lambda: scenario.status().get("profile") == "lean", timeout=20, what="dry-run decision")
    ready = scenario.condition("Ready")
    assert ready is not None and ready["reason"] == "DryRun"
    assert scenario.config_map() is None


def test_signed_profile_verifies_with_the_consumer_helper(
    scenario: Scenario, operator: OperatorProcess, tmp_path: Path
) -> None:
    key = b"not-a-real-key-but-a-test-one"
    scenario.core.create_namespaced_secret(
        scenario.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="profile-signing"), string_data={"hmac": key.decode()}
        ),
    )
    scenario.metrics(**CALM)
    scenario.create(policy(output={"signingKeyRef": {"name": "profile-signing", "key": "hmac"}}))
    scenario.wait_profile("balanced")
    data = scenario.config_map()
    assert data is not None and data["profile.json.sig"].startswith("sha256=")
    for name, text in data.items():  # what a ConfigMap volume mount would show the detector
        (tmp_path / name).write_text(text)
    reader = ProfileReader(tmp_path, key=key)
    assert reader.load().profile == "balanced"
    (tmp_path / "profile.json").write_text(data["profile.json"].replace("balanced", "lean"))
    with pytest.raises(ValueError, match="signature"):
        reader.load()


def test_signed_profile_through_the_typescript_reader_over_the_api(
    scenario: Scenario, operator: OperatorProcess, tmp_path: Path
) -> None:
    """The TypeScript client follows the operator's signed profile.json through its own API watch, as a
    ServiceAccount that may read only that ConfigMap: each new revision verifies with the operator's key,
    a hand edit is refused and the last good profile stays."""
    key = b"the-typescript-reader-verifies-this"
    scenario.core.create_namespaced_secret(
        scenario.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="profile-signing"), string_data={"hmac": key.decode()}
        ),
    )
    config_map = f"{NAME}-detection-profile"
    source = (scenario.kube, scenario.namespace, config_map)
    with DocumentFollower(tmp_path / "ts", key=key, config_map=source) as ts:
        scenario.metrics(**CALM)
        scenario.create(policy(output={"signingKeyRef": {"name": "profile-signing", "key": "hmac"}}))
        first = scenario.wait_profile("balanced")
        seen = wait_for(
            lambda: [f for f in ts.seen() if f.document], timeout=10, what="the TS reader's profile"
        )
        assert seen[0].document == first  # every field, as published and verified
        scenario.metrics(latency_p95_ms=250)
        lean = scenario.wait_profile("lean")
        wait_for(
            lambda: any(f.document == lean for f in ts.seen()),
            timeout=10,
            what="the TS reader's lean profile",
        )
        # A hand edit without the key: the reader refuses it and keeps serving lean.
        data = scenario.config_map()
        assert data is not None
        edited = data["profile.json"].replace('"lean"', '"paranoid"')
        scenario.core.patch_namespaced_config_map(
            config_map, scenario.namespace, {"data": {"profile.json": edited}}
        )
        refusal = wait_for(
            lambda: [f for f in ts.seen() if f.error], timeout=10, what="the TS reader's refusal"
        )
        assert "does not match its signature" in str(refusal[0].error)
        assert all(f.document is None or f.document["profile"] != "paranoid" for f in ts.seen())
        # The operator repairs the edit with its own signed document (same revision, a new decidedAt):
        # the reader hands that out, because it verifies.
        handed = [f.document for f in ts.seen() if f.document]
        assert [d["revision"] for d in handed][:2] == [first["revision"], lean["revision"]]
        assert {d["profile"] for d in handed[1:]} == {"lean"}


def test_detector_deployment_rolls_on_each_new_profile(scenario: Scenario, operator: OperatorProcess) -> None:
    apps = client.AppsV1Api(scenario.kube)
    labels = {"app": "detector"}
    apps.create_namespaced_deployment(
        scenario.namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="detector"),
            spec=client.V1DeploymentSpec(
                replicas=0,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[client.V1Container(name="d", image="registry.invalid/d:1")]
                    ),
                ),
            ),
        ),
    )
    scenario.metrics(**CALM)
    scenario.create(policy(output={"deployment": "detector"}))
    scenario.wait_profile("balanced")

    def checksum() -> str | None:
        template = apps.read_namespaced_deployment("detector", scenario.namespace).spec.template
        return (template.metadata.annotations or {}).get("detection.adaptive.io/config-checksum")

    first = wait_for(checksum, timeout=10, what="config checksum annotation")
    scenario.metrics(cpu_ratio=0.95)
    scenario.wait_profile("lean")
    second = wait_for(lambda: (c := checksum()) != first and c, timeout=10, what="a new checksum")
    assert len(second) == 64


def test_missing_detector_deployment_is_reported_not_fatal(
    scenario: Scenario, operator: OperatorProcess
) -> None:
    scenario.metrics(**CALM)
    scenario.create(policy(output={"deployment": "nowhere"}))
    scenario.wait_profile("balanced")

    def warning() -> list[str]:
        events = scenario.core.list_namespaced_event(scenario.namespace).items
        return [e.message for e in events if e.reason == "DeploymentNotFound"]

    assert "nowhere" in wait_for(warning, timeout=10, what="DeploymentNotFound event")[0]
    ready = scenario.condition("Ready")
    assert ready is not None and ready["status"] == "True"
