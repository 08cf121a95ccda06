"""SIGKILL during a switch: the operator is killed the moment its new ConfigMap appears on a watch (before
or while it posts Events, dispatches the notice and writes status), then restarted. Status and ConfigMap
must end consistent, with one history entry, one Event and one webhook notice per switch.

SIGKILL mid-window (no switch yet) is covered by tests/integration/test_policy_switching.py.
"""

from __future__ import annotations

import json
import time

from kubernetes import client, watch

from detection_testing.exporter import MetricExporter
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.prometheus import PrometheusServer
from detection_testing.receiver import WebhookReceiver
from detection_testing.report import Report
from detection_testing.specs import LATENCY_METRIC, latency_policy
from detection_testing.watched import Watched

NAME = "detector"
CONFIG_MAP = f"{NAME}-detection-profile"


def kill_when_published(policy: Watched, operator: OperatorProcess, profile: str, timeout: int = 60) -> float:
    """SIGKILL the operator as soon as the watch shows ``profile`` in profile.json; return the latency."""
    stream = watch.Watch()
    for event in stream.stream(
        policy.core.list_namespaced_config_map,
        policy.namespace,
        field_selector=f"metadata.name={CONFIG_MAP}",
        timeout_seconds=timeout,
    ):
        data = event["object"].data or {}
        if json.loads(data.get("profile.json", "{}")).get("profile") == profile:
            seen = time.monotonic()
            operator.kill()
            stream.stop()
            return time.monotonic() - seen
    raise TimeoutError(f"profile.json never said {profile}")


def notices(receiver: WebhookReceiver) -> list[str]:
    return [
        alert["subject"]
        for request in receiver.requests
        for alert in request.json()["alerts"]
        if alert["type"] == "profile-switched"
    ]


def test_sigkill_during_a_switch_leaves_status_config_map_and_alerts_consistent(
    kube: client.ApiClient,
    namespace: str,
    exporter: MetricExporter,
    prometheus: PrometheusServer,
    receiver: WebhookReceiver,
    operator: OperatorProcess,
    report: Report,
) -> None:
    labels = {"namespace": namespace}
    exporter.set(LATENCY_METRIC, 300, labels)
    prometheus.wait_for_series(f'{LATENCY_METRIC}{{namespace="{namespace}"}}', timeout=30)
    policy = Watched(kube, namespace, "DetectionPolicy", NAME, CONFIG_MAP)
    policy.create(latency_policy())
    wait_for(lambda: policy.status().get("profile") == "lean", timeout=60, what="lean")
    observed: list[str] = []
    for latency, profile in ((100, "balanced"), (300, "lean"), (100, "balanced")):
        exporter.set(LATENCY_METRIC, latency, labels)
        kill_latency = kill_when_published(policy, operator, profile)
        # Whether the kill beat the status write: then the restarted operator must not switch again.
        lagging = policy.status().get("profile") != profile
        operator.start()
        wait_for(lambda p=profile: policy.status().get("profile") == p, timeout=60, what=f"status {profile}")
        policy.evaluations(2)
        state = "status not yet written" if lagging else "status already written"
        observed.append(f"killed {kill_latency * 1000:.0f} ms after {profile} was published ({state})")

    status = policy.status()
    document = policy.document("profile.json")
    assert document is not None
    assert (document["profile"], document["revision"]) == (status["profile"], status["revision"])
    assert [h["to"] for h in status["history"]] == ["lean", "balanced", "lean", "balanced"], status["history"]
    # The last switch's Event is delivered from the outbox after its status write: wait for it.
    wait_for(
        lambda: len(policy.events("ProfileSwitched")) >= 3, timeout=30, what="three ProfileSwitched Events"
    )
    switched = policy.events("ProfileSwitched")
    assert len(switched) == 3, switched
    wait_for(lambda: len(notices(receiver)) >= 3, timeout=30, what="three switch notices")
    assert notices(receiver) == ["lean->balanced", "balanced->lean", "lean->balanced"], notices(receiver)
    report.fault(
        "operator SIGKILLed during a switch (3 times), then restarted",
        "status = ConfigMap; one history entry, one Event, one webhook notice per switch",
        f"{'; '.join(observed)}; history, Events and notices each 3, revision {status['revision']} "
        "in both status and profile.json",
    )
