"""Kubernetes faults: the owned ConfigMap deleted or hand-edited, the apiserver restarted mid-evaluation, the
watch stream severed, a concurrent status writer. The operator keeps (or restores) the last good decision
and never adds a switch. A missing target Deployment is covered by tests/integration (DeploymentNotFound).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_testing.exporter import MetricExporter
from detection_testing.kube import wait_for
from detection_testing.node_client import DocumentFollower
from detection_testing.operator_process import OperatorProcess
from detection_testing.prometheus import PrometheusServer
from detection_testing.report import Report
from detection_testing.specs import LATENCY_METRIC, latency_policy
from detection_testing.tcpproxy import TcpProxy
from detection_testing.watched import Watched

REPO = Path(__file__).resolve().parents[2]
NAME = "detector"
CONFIG_MAP = f"{NAME}-detection-profile"


@pytest.fixture
def policy(
    kube: client.ApiClient, namespace: str, exporter: MetricExporter, prometheus: PrometheusServer
) -> Watched:
    """A policy whose metric says ``lean``, scraped before the policy exists."""
    exporter.set(LATENCY_METRIC, 300, {"namespace": namespace})
    prometheus.wait_for_series(f'{LATENCY_METRIC}{{namespace="{namespace}"}}', timeout=30)
    return Watched(kube, namespace, "DetectionPolicy", NAME, CONFIG_MAP)


def established(policy: Watched) -> dict[str, object]:
    """Create the policy and wait for its first decision (lean) in the ConfigMap and in status."""
    policy.create(latency_policy())
    wait_for(
        lambda: (d := policy.document("profile.json")) and d["profile"] == "lean", timeout=60, what="lean"
    )
    wait_for(lambda: policy.status().get("profile") == "lean", timeout=30, what="status lean")
    # The selection's Event follows its status write (it is delivered from the outbox).
    wait_for(lambda: policy.events("ProfileSelected"), timeout=30, what="the ProfileSelected Event")
    return policy.status()


def switch_count(policy: Watched) -> int:
    return len(policy.events("ProfileSwitched")) + len(policy.events("ProfileSelected"))


def assert_quiet_since(policy: Watched, before: dict[str, object], switches: int) -> None:
    """No new switch, revision or history entry since ``before``."""
    after = policy.status()
    assert (after["profile"], after["revision"], after["history"]) == (
        before["profile"],
        before["revision"],
        before["history"],
    )
    assert switch_count(policy) == switches


def test_deleted_and_hand_edited_config_map_is_restored(
    policy: Watched, operator: OperatorProcess, report: Report
) -> None:
    before = established(policy)
    switches = switch_count(policy)
    original = policy.config_map()
    assert original is not None
    published = dict(original.data or {})

    started = time.monotonic()
    policy.core.delete_namespaced_config_map(CONFIG_MAP, policy.namespace)
    restored = wait_for(policy.config_map, timeout=30, interval=0.1, what="ConfigMap restored")
    deleted_after = time.monotonic() - started
    assert restored.metadata.owner_references[0].name == NAME
    assert policy.document("profile.json") is not None

    started = time.monotonic()
    policy.core.patch_namespaced_config_map(
        CONFIG_MAP, policy.namespace, {"data": {"profile.json": '{"profile": "paranoid"}', "extra": "kept"}}
    )

    def repaired() -> dict[str, str] | None:
        config_map = policy.config_map()
        data = dict(config_map.data or {}) if config_map else {}
        return data if "lean" in data.get("profile.json", "") else None

    data = wait_for(repaired, timeout=30, interval=0.1, what="hand edit undone")
    edited_after = time.monotonic() - started
    assert data["extra"] == "kept"  # someone else's key is theirs: no fight over it
    document = policy.document("profile.json")
    assert document is not None and document["revision"] == before["revision"]
    assert set(published) <= set(data)
    policy.evaluations(3)
    assert_quiet_since(policy, before, switches)
    report.fault(
        "owned ConfigMap deleted / hand-edited",
        "restored promptly with the same decision and revision; other keys left alone; no switch",
        f"restored in {deleted_after:.1f} s / {edited_after:.1f} s, revision {document['revision']} kept, "
        "foreign key kept, no switch",
    )


def test_apiserver_restart_mid_evaluation(
    cluster: Any, policy: Watched, operator: OperatorProcess, report: Report
) -> None:
    plane = cluster.plane
    if plane is None:
        pytest.skip("restarting the apiserver needs the local control plane")
    before = established(policy)
    switches = switch_count(policy)
    started = time.monotonic()
    plane.restart_apiserver()  # evaluations run every second: one is always in flight or due
    down_for = time.monotonic() - started
    policy.evaluations(3, timeout=60)
    assert operator.alive()
    assert_quiet_since(policy, before, switches)
    # A spec change made after the restart is seen: the watch came back.
    policy.objects.patch_namespaced_custom_object(
        GROUP, VERSION, policy.namespace, "detectionpolicies", NAME, {"spec": {"defaultProfile": "paranoid"}}
    )
    generation = policy.objects.get_namespaced_custom_object(
        GROUP, VERSION, policy.namespace, "detectionpolicies", NAME
    )["metadata"]["generation"]
    wait_for(
        lambda: policy.status().get("observedGeneration") == generation,
        timeout=60,
        what="new generation seen",
    )
    report.fault(
        "apiserver restarted mid-evaluation",
        "operator survives, evaluations resume, no switch, later spec changes seen",
        f"apiserver down {down_for:.1f} s; operator alive; profile/revision/history unchanged; "
        "new generation observed",
    )


@pytest.fixture
def proxied_kubeconfig(cluster: Any, tmp_path: Path) -> Iterator[tuple[Path, TcpProxy]]:
    """A kubeconfig that reaches the apiserver through a severable TCP proxy."""
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    server = urlsplit(config["clusters"][0]["cluster"]["server"])
    if server.hostname not in ("127.0.0.1", "localhost") or server.port is None:
        pytest.skip("the watch-break test proxies a loopback apiserver")
    with TcpProxy(server.hostname, server.port) as proxy:
        config["clusters"][0]["cluster"]["server"] = f"https://{proxy.target}"
        path = tmp_path / "kubeconfig-via-proxy"
        path.write_text(yaml.safe_dump(config))
        yield path, proxy


def test_severed_watch_stream_is_noticed(
    policy: Watched,
    namespace: str,
    operator_env: dict[str, str],
    proxied_kubeconfig: tuple[Path, TcpProxy],
    tmp_path: Path,
    report: Report,
) -> None:
    kubeconfig, tcp = proxied_kubeconfig
    with OperatorProcess(kubeconfig, tmp_path / "operator.log", [namespace], operator_env) as operator:
        before = established(policy)
        switches = switch_count(policy)
        cut = tcp.sever()
        assert cut > 0
        started = time.monotonic()
        policy.objects.patch_namespaced_custom_object(
            GROUP, VERSION, policy.namespace, "detectionpolicies", NAME, {"spec": {"minDwell": "2s"}}
        )
        obj = policy.objects.get_namespaced_custom_object(
            GROUP, VERSION, policy.namespace, "detectionpolicies", NAME
        )
        wait_for(
            lambda: policy.status().get("observedGeneration") == obj["metadata"]["generation"],
            timeout=60,
            what="change after the break seen",
        )
        noticed_after = time.monotonic() - started
        assert operator.alive(), operator.log_tail()
        assert_quiet_since(policy, before, switches)
    report.fault(
        "watch stream severed (TCP reset between operator and apiserver)",
        "operator reconnects; a change made after the break is seen within 60 s; no switch",
        f"{cut} sockets reset; change seen after {noticed_after:.1f} s; no switch",
    )


def test_concurrent_status_writer_is_overwritten_with_the_right_status(
    policy: Watched, operator: OperatorProcess, report: Report
) -> None:
    before = established(policy)
    switches = switch_count(policy)
    # Someone else writes status between the operator's read and write: a wrong profile, lost memory.
    vandal = {"status": {"profile": "paranoid", "memory": None, "history": [], "reason": "edited by hand"}}
    policy.objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, policy.namespace, "detectionpolicies", NAME, vandal
    )
    wait_for(
        lambda: (s := policy.status())["profile"] == "lean" and s["history"] == before["history"],
        timeout=30,
        what="status corrected",
    )
    policy.evaluations(3)
    assert_quiet_since(policy, before, switches)
    document = policy.document("profile.json")
    assert document is not None and document["profile"] == "lean"
    report.fault(
        "concurrent status writer (another client edits status between reads and writes)",
        "the operator's status ends correct; no 409 can stall it; no switch",
        "status restored to lean with its history on the next evaluation; ConfigMap untouched; no switch",
    )


def test_typescript_reader_rides_out_an_apiserver_restart(
    cluster: Any, kube: client.ApiClient, namespace: str, tmp_path: Path, report: Report
) -> None:
    """The TypeScript client's API watch (a Node.js process) through an apiserver restart: it keeps the last
    good route.json while the apiserver is gone, lists again when it is back, and hands out the next one."""
    plane = cluster.plane
    if plane is None:
        pytest.skip("restarting the apiserver needs the local control plane")
    vectors = json.loads((REPO / "clients/vectors/documents.json").read_text())["vectors"]
    route = json.loads(next(v["payload"] for v in vectors if v["document"] == "route.json" and v["valid"]))
    core = client.CoreV1Api(kube)
    name = "classifier-model-route"

    def publish(revision: int) -> None:
        data = {"route.json": json.dumps({**route, "revision": revision})}
        core.patch_namespaced_config_map(name, namespace, {"data": data})

    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"route.json": json.dumps(route)}),
    )
    source = (kube, namespace, name)
    with DocumentFollower(tmp_path / "ts", "route.json", config_map=source) as ts:

        def revisions() -> list[int]:
            return [f.document["revision"] for f in ts.seen() if f.document]

        wait_for(lambda: revisions() == [route["revision"]], timeout=15, what="the first route.json")
        started = time.monotonic()
        plane.restart_apiserver()
        down_for = time.monotonic() - started
        publish(route["revision"] + 1)
        wait_for(
            lambda: revisions()[-1:] == [route["revision"] + 1],
            timeout=30,
            what="route.json after the restart",
        )
        seen_after = time.monotonic() - started - down_for
        assert ts.process.running()
        assert revisions() == [route["revision"], route["revision"] + 1]  # nothing handed out twice or lost
    report.fault(
        "apiserver restarted under the TypeScript reader's API watch",
        "the Node.js reader keeps the last good route.json, lists again, hands out the next revision",
        f"apiserver down {down_for:.1f} s; next revision handed out {seen_after:.1f} s after it was back",
    )
