"""Two operator replicas in active/standby mode (one bucket, so one Lease) against one apiserver: one leads
(holds the Lease) and is the only writer; when it is SIGKILLed the standby takes over within lease duration
+ retry period, and a graceful stop hands over at once. Real apiserver, Prometheus and operator processes.
Active-active replicas (several buckets) are in test_active_active.py.

Short Lease timings (duration 4 s, renew deadline 3 s, retry 1 s) keep it quick; production defaults are
15 / 10 / 2 s and the bound scales the same way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from detection_operator.api.base import GROUP, VERSION
from detection_testing.exporter import MetricExporter
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.prometheus import PrometheusServer

LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 4.0, 3.0, 1.0
TAKEOVER_BOUND = LEASE_DURATION + RETRY_PERIOD
"""The documented bound from the leader's death to the standby holding the Lease."""
SLACK = 3.0
"""API round trips on this shared, loaded machine come on top of the bound."""
NAMES = ("operator-a", "operator-b")
POLICY = "detector"


def policy() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DetectionPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "interval": "1s",
            "defaultProfile": "balanced",
            "stabilizationWindow": "3s",
            "minDwell": "1s",
            "profiles": [
                {"name": "lean", "latencyTargetMs": 50, "contributors": ["rules"]},
                {"name": "balanced", "latencyTargetMs": 150, "contributors": ["rules"]},
            ],
            "rules": [
                {
                    "name": "high-latency",
                    "query": 'max(ha_latency_p95_ms{namespace="$namespace"})',
                    "op": ">",
                    "threshold": 200,
                    "clearThreshold": 150,
                    "profile": "lean",
                    "reason": "high latency",
                }
            ],
            "contributors": [{"name": "rules", "expense": "light"}],
        },
    }


class Replicas:
    """Two operator processes with different identities, the Lease and what the policy shows."""

    def __init__(self, kube: client.ApiClient, exporter: MetricExporter, namespace: str) -> None:
        self.kube, self.exporter, self.namespace = kube, exporter, namespace
        self.processes: dict[str, OperatorProcess] = {}

    def latency(self, value: float) -> None:
        self.exporter.set("ha_latency_p95_ms", value, {"namespace": self.namespace})

    def holder(self) -> str | None:
        try:
            lease = client.CoordinationV1Api(self.kube).read_namespaced_lease(
                "detection-operator", self.namespace
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return lease.spec.holder_identity or None

    def leader_gauge(self, name: str) -> float:
        return self.processes[name].metrics()["detection_operator_leader"][frozenset()]

    def wait_leader(self, candidates: tuple[str, ...] = NAMES, timeout: float = 60) -> str:
        """Wait until one of ``candidates`` holds the Lease and says so on /metrics; return its name."""

        def settled() -> str | None:
            holder = self.holder()
            if holder not in candidates or self.leader_gauge(holder) != 1:
                return None
            return holder

        return wait_for(settled, timeout=timeout, interval=0.1, what=f"one of {candidates} leading")

    def status(self) -> dict[str, Any]:
        obj = client.CustomObjectsApi(self.kube).get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "detectionpolicies", POLICY
        )
        return dict(obj.get("status") or {})

    def wait_profile(self, profile: str, timeout: float = 60) -> None:
        wait_for(
            lambda: self.status().get("profile") == profile, timeout=timeout, what=f"status.profile={profile}"
        )

    def our_events(self) -> list[client.CoreV1Event]:
        events = client.CoreV1Api(self.kube).list_namespaced_event(self.namespace).items
        return [e for e in events if e.reporting_component == "detection-operator"]

    def switch_events(self) -> list[client.CoreV1Event]:
        return [e for e in self.our_events() if e.reason == "ProfileSwitched"]

    def configmap_writes(self, name: str) -> list[dict[str, Any]]:
        """The structured log lines of ConfigMap writes in one replica's log."""
        writes = []
        for line in self.processes[name].log_file.read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("write") == "configmap":
                    writes.append(record)
        return writes


@pytest.fixture
def replicas(
    cluster: Any,
    crds: list[str],
    kube: client.ApiClient,
    exporter: MetricExporter,
    namespace: str,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> Iterator[Replicas]:
    env = {
        "DETECTION_OPERATOR_PROMETHEUS_URL": prometheus.url,
        "DETECTION_OPERATOR_PROMETHEUS_TIMEOUT_SECONDS": "2",
        "DETECTION_OPERATOR_LEASE_DURATION_SECONDS": str(LEASE_DURATION),
        "DETECTION_OPERATOR_RENEW_DEADLINE_SECONDS": str(RENEW_DEADLINE),
        "DETECTION_OPERATOR_RETRY_PERIOD_SECONDS": str(RETRY_PERIOD),
        "DETECTION_OPERATOR_BUCKETS": "1",
    }
    replicas = Replicas(kube, exporter, namespace)
    try:
        for name in NAMES:
            process = OperatorProcess(
                cluster.kubeconfig,
                tmp_path / f"{name}.log",
                namespaces=[namespace],
                env=env,
                pod_name=name,
                log_format="json",
            )
            replicas.processes[name] = process
            process.start()
        yield replicas
    finally:
        for process in replicas.processes.values():
            process.stop()


def test_one_leader_writes_and_the_standby_takes_over_after_sigkill(replicas: Replicas) -> None:
    leader = replicas.wait_leader()
    standby = next(n for n in NAMES if n != leader)
    assert replicas.leader_gauge(standby) == 0
    replicas.latency(80)
    client.CustomObjectsApi(replicas.kube).create_namespaced_custom_object(
        GROUP, VERSION, replicas.namespace, "detectionpolicies", policy()
    )
    replicas.wait_profile("balanced")
    replicas.latency(300)
    replicas.wait_profile("lean")
    wait_for(lambda: len(replicas.switch_events()) == 1, timeout=30, what="the ProfileSwitched Event")

    # Only the leader wrote: every Event names it, and only its log has ConfigMap writes.
    assert {e.reporting_instance for e in replicas.our_events()} == {leader}
    assert replicas.configmap_writes(leader) and not replicas.configmap_writes(standby)
    assert {w["identity"] for w in replicas.configmap_writes(leader)} == {leader}
    assert replicas.configmap_writes(leader)[0]["object"]["name"] == POLICY

    killed_at = time.monotonic()
    replicas.processes[leader].kill()
    assert replicas.wait_leader((standby,), timeout=TAKEOVER_BOUND + 30) == standby
    takeover = time.monotonic() - killed_at
    print(f"\nHA takeover after SIGKILL: {takeover:.2f} s (bound {TAKEOVER_BOUND:g} s + API latency)")
    assert takeover <= TAKEOVER_BOUND + SLACK

    # The new leader carries on from the status the old one wrote: one more switch, no duplicate.
    replicas.latency(90)
    replicas.wait_profile("balanced")
    history = [h["to"] for h in replicas.status()["history"]]
    assert history == ["balanced", "lean", "balanced"], history
    wait_for(lambda: len(replicas.switch_events()) == 2, timeout=30, what="the second ProfileSwitched Event")
    switches = sorted(replicas.switch_events(), key=lambda e: e.metadata.creation_timestamp)
    assert [e.reporting_instance for e in switches] == [leader, standby]
    assert replicas.configmap_writes(standby)

    # The killed replica comes back as a standby: the live Lease is not taken from the new leader.
    replicas.processes[leader].start()
    wait_for(lambda: replicas.leader_gauge(leader) == 0, timeout=30, what="restarted replica on standby")
    revision = replicas.status()["revision"]
    deadline = time.monotonic() + 2 * LEASE_DURATION
    while time.monotonic() < deadline:
        assert replicas.holder() == standby
        time.sleep(0.5)
    assert replicas.status()["revision"] == revision
    assert len(replicas.switch_events()) == 2


def test_graceful_stop_hands_the_lease_over_at_once(replicas: Replicas) -> None:
    leader = replicas.wait_leader()
    standby = next(n for n in NAMES if n != leader)
    replicas.latency(80)
    client.CustomObjectsApi(replicas.kube).create_namespaced_custom_object(
        GROUP, VERSION, replicas.namespace, "detectionpolicies", policy()
    )
    replicas.wait_profile("balanced")

    stopped_at = time.monotonic()
    replicas.processes[leader].stop()
    stop_took = time.monotonic() - stopped_at
    replicas.wait_leader((standby,), timeout=LEASE_DURATION + 30)
    handover = time.monotonic() - stopped_at
    print(
        f"\nHA hand-over after SIGTERM: {handover:.2f} s (of which {stop_took:.2f} s for the process to exit)"
    )
    # Released, not expired: the standby needs about one retry period after the exit, not a lease duration.
    assert '"released lease' in replicas.processes[leader].log_tail(200)
    assert handover - stop_took <= RETRY_PERIOD + SLACK / 2

    replicas.latency(300)
    replicas.wait_profile("lean")
    # The switch's Event is delivered from the status outbox after the status write: wait for it.
    wait_for(lambda: len(replicas.switch_events()) == 1, timeout=30, what="the ProfileSwitched Event")
    switches = replicas.switch_events()
    assert [e.reporting_instance for e in switches] == [standby]


def test_a_paused_leader_loses_the_lease_and_never_writes_after_it_resumes(replicas: Replicas) -> None:
    leader = replicas.wait_leader()
    standby = next(n for n in NAMES if n != leader)
    replicas.latency(80)
    client.CustomObjectsApi(replicas.kube).create_namespaced_custom_object(
        GROUP, VERSION, replicas.namespace, "detectionpolicies", policy()
    )
    replicas.wait_profile("balanced")

    # A frozen leader (SIGSTOP: a stalled node, a long pause) cannot renew; the standby takes over.
    replicas.processes[leader].pause()
    writes_before = len(replicas.configmap_writes(leader))
    replicas.wait_leader((standby,), timeout=TAKEOVER_BOUND + 30)
    replicas.latency(300)
    replicas.wait_profile("lean")

    # Woken up, the old leader finds its renew deadline long past: it follows and writes nothing.
    replicas.processes[leader].resume()
    wait_for(
        lambda: '"lost bucket 0 of 1' in replicas.processes[leader].log_tail(400),
        timeout=30,
        what="the resumed replica to notice it lost the Lease",
    )
    assert replicas.leader_gauge(leader) == 0 and replicas.holder() == standby
    replicas.latency(90)
    replicas.wait_profile("balanced")
    assert len(replicas.configmap_writes(leader)) == writes_before
    wait_for(lambda: len(replicas.switch_events()) == 2, timeout=30, what="the second ProfileSwitched Event")
    switches = replicas.switch_events()
    assert [e.reporting_instance for e in switches] == [standby, standby], switches
