"""DetectionPolicy in the closed loop: the detector runs the profile.json the operator publishes, so a
switch changes the latency the policy's rule reads (testing/policy_loop.py describes the loop).

Two policies see the same load burst side by side, one without a stabilization window and one with a
window longer than the burst: the first oscillates between lean and balanced for as long as the burst
lasts, the second escalates once and relaxes once, after the burst.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_testing.detector import ProfiledDetector
from detection_testing.exporter import MetricExporter
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.policy_loop import (
    BURST,
    CALM,
    CONFIG_MAP,
    COSTS,
    NAME,
    ProfilesRun,
    loop_policy,
    switches,
)
from detection_testing.prometheus import PrometheusServer

BURST_SECONDS = 40


def status(kube: client.ApiClient, namespace: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "detectionpolicies", NAME
    )
    return dict(obj.get("status") or {})


def test_stabilization_keeps_lean_through_a_burst_that_lean_itself_hides(
    kube: client.ApiClient,
    cluster: Any,
    crds: list[str],
    namespace: str,
    exporter: MetricExporter,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(kube)
    second = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=second)))
    windows = {namespace: "0s", second: "60s"}
    env = {"DETECTION_OPERATOR_PROMETHEUS_URL": prometheus.url}
    try:
        with (
            OperatorProcess(cluster.kubeconfig, tmp_path / "operator.log", [namespace, second], env=env),
            _detectors(kube, exporter, list(windows)) as detectors,
        ):
            for ns, window in windows.items():
                client.CustomObjectsApi(kube).create_namespaced_custom_object(
                    GROUP, VERSION, ns, "detectionpolicies", loop_policy(window)
                )
            for ns, detector in detectors.items():
                wait_for(
                    lambda d=detector: d.profile and d.profile.profile == "balanced",
                    timeout=30,
                    what=f"{ns}: balanced",
                )
            seen = {ns: ProfilesRun(d) for ns, d in detectors.items()}
            for detector in detectors.values():
                detector.world(BURST)
            time.sleep(BURST_SECONDS)  # the burst's length is the scenario, not a wait for a condition
            for detector in detectors.values():
                detector.world(CALM)
            stable = wait_for(
                lambda: (h := switches(status(kube, second)))[-1:] == ["balanced"] and len(h) > 1 and h,
                timeout=90,
                what="the stabilized policy relaxed after the burst",
            )
            # Status says relaxed once the ConfigMap is written; the detector runs it when its watch
            # delivers the change, which can come a little later.
            wait_for(
                lambda: seen[second].profiles[-1:] == ["balanced"],
                timeout=30,
                what="the stabilized detector running balanced again",
            )
            for watcher in seen.values():
                watcher.stop()
    finally:
        core.delete_namespace(second)
    oscillating = seen[namespace].profiles
    assert oscillating.count("lean") >= 2, oscillating  # lean hid the burst, relaxing brought it back
    assert stable == ["balanced", "lean", "balanced"], stable
    assert seen[second].profiles == ["balanced", "lean", "balanced"]  # what the detector ran


class _detectors:
    """One closed-loop detector per namespace, following that namespace's policy."""

    def __init__(self, kube: client.ApiClient, exporter: MetricExporter, namespaces: list[str]) -> None:
        self.running = {
            ns: ProfiledDetector(kube, ns, CONFIG_MAP, exporter, base=CALM, costs=COSTS, startup=list(COSTS))
            for ns in namespaces
        }

    def __enter__(self) -> dict[str, ProfiledDetector]:
        for detector in self.running.values():
            detector.start()
        return self.running

    def __exit__(self, *exc: object) -> None:
        for detector in self.running.values():
            detector.stop()
