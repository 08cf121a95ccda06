"""The chart installed for real: the operator's image from our Dockerfile, running as Pods on a node.

What the manifest promises is observed from the running Pods: their uid, the read-only root filesystem,
the projected ServiceAccount token, the probes answering; the in-cluster operator evaluates a policy and a
route through the ``kubernetes`` Service (kube-proxy) and queries a Prometheus on this machine; of two
replicas (active-active) one holds the watched namespace's bucket Lease and the other takes it over when
the holder's Pod is deleted; ``helm upgrade`` with a changed value rolls the Pods. The optional
NetworkPolicy is installed too (admitted; the bridge CNI plugin does not enforce it).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from detection_operator.api.base import GROUP, VERSION
from detection_operator.runtime.buckets import bucket_of
from detection_operator.runtime.settings import LeaderElection
from detection_testing.charts import install, kubectl_binary, uninstall
from detection_testing.kube import wait_for
from detection_testing.prometheus import PrometheusServer
from detection_testing.specs import missing_metric_policy, simple_route

from ..conftest import Cluster, Node

pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "detection-operator"
RELEASE = "ops"
SELECTOR = "app.kubernetes.io/name=detection-operator"


@dataclass
class Release:
    namespace: str
    watched: str
    values: dict[str, Any]
    installed_in: float


def _ready(pod: Any) -> bool:
    conditions = {c.type: c.status for c in (pod.status.conditions or [])}
    return pod.metadata.deletion_timestamp is None and conditions.get("Ready") == "True"


def _pods(core: client.CoreV1Api, namespace: str) -> list[Any]:
    return list(core.list_namespaced_pod(namespace, label_selector=SELECTOR).items)


def _kubectl(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(kubectl_binary()), f"--kubeconfig={cluster.kubeconfig}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def release(
    cluster: Cluster,
    kube: client.ApiClient,
    crds: list[str],
    node: Node,
    node_prometheus: PrometheusServer,
) -> Iterator[Release]:
    core = client.CoreV1Api(kube)
    suffix = uuid.uuid4().hex[:8]
    namespace, watched = f"op-{suffix}", f"w-{suffix}"
    for name in (namespace, watched):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    image = node.operator_image
    values: dict[str, Any] = {
        "image": {"repository": image.repository, "tag": image.tag, "pullPolicy": "Never"},
        # Namespaced mode: the session's other tests run operators of their own in other namespaces.
        "watchNamespaces": [watched],
        "prometheus": {"url": f"http://{node.host_address}:{node_prometheus.port}", "timeoutSeconds": 2},
        "networkPolicy": {
            "enabled": True,
            "prometheus": {
                "to": [{"ipBlock": {"cidr": f"{node.host_address}/32"}}],
                "ports": [node_prometheus.port],
            },
        },
    }
    started = time.monotonic()
    install(cluster.kubeconfig, CHART, RELEASE, namespace, values, timeout=180)  # --wait: Pods Ready
    installed_in = time.monotonic() - started
    print(f"\nhelm install -> both operator Pods Ready: {installed_in:.1f}s")
    yield Release(namespace, watched, values, installed_in)
    uninstall(cluster.kubeconfig, RELEASE, namespace)
    for name in (watched, namespace):
        core.delete_namespace(name)


def test_the_operator_pods_run_as_the_chart_says(
    cluster: Cluster, kube: client.ApiClient, release: Release
) -> None:
    core = client.CoreV1Api(kube)
    pods = _pods(core, release.namespace)
    assert len(pods) == 2 and all(_ready(p) for p in pods), [p.status for p in pods]
    pod = pods[0]
    name, ns = pod.metadata.name, release.namespace

    def inside(*command: str) -> subprocess.CompletedProcess[str]:
        return _kubectl(cluster, "exec", "-n", ns, name, "--", *command)

    ids = inside("id")
    assert ids.returncode == 0, ids.stderr
    assert ids.stdout.startswith("uid=65532 gid=65532"), ids.stdout
    write = inside("sh", "-c", "echo x > /probe")
    assert write.returncode != 0 and "Read-only file system" in write.stderr, (write.stdout, write.stderr)
    mounts = {
        line.split()[1]: line.split() for line in inside("cat", "/proc/self/mounts").stdout.splitlines()
    }
    assert "ro" in mounts["/"][3].split(","), mounts["/"]
    assert "rw" in mounts["/tmp"][3].split(",")  # the emptyDir the chart mounts for CA bundles
    # The ServiceAccount token: a projected volume (tmpfs), a JWT the apiserver issued for this Pod.
    secrets = "/var/run/secrets/kubernetes.io/serviceaccount"
    # /var/run is a symlink to /run in Debian images: the kernel reports the resolved path.
    (mount,) = [m for path, m in mounts.items() if path.endswith("/run/secrets/kubernetes.io/serviceaccount")]
    assert mount[2] == "tmpfs", mount
    token = inside("cat", f"{secrets}/token").stdout
    assert token.count(".") == 2 and len(token) > 100
    # The probes' endpoints, asked at the Pod's address as the kubelet asks them.
    with httpx.Client(timeout=5, trust_env=False) as http:
        for path in ("/healthz", "/readyz"):
            assert http.get(f"http://{pod.status.pod_ip}:8080{path}").status_code == 200, path
        assert "detection_operator" in http.get(f"http://{pod.status.pod_ip}:8080/metrics").text
    # The kubelet ran the readiness probe: Ready came after the container started, not at creation.
    started_at = pod.status.container_statuses[0].state.running.started_at
    ready_at = next(c.last_transition_time for c in pod.status.conditions if c.type == "Ready")
    assert ready_at >= started_at
    assert client.NetworkingV1Api(kube).read_namespaced_network_policy(f"{RELEASE}-detection-operator", ns)


def test_the_operator_in_its_pod_evaluates_a_policy_and_a_route(
    kube: client.ApiClient, release: Release
) -> None:
    core, objects = client.CoreV1Api(kube), client.CustomObjectsApi(kube)
    ns = release.watched
    objects.create_namespaced_custom_object(
        GROUP, VERSION, ns, "detectionpolicies", missing_metric_policy("2s")
    )
    route = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelRoute",
        "metadata": {"name": "r"},
        "spec": simple_route(),
    }
    objects.create_namespaced_custom_object(GROUP, VERSION, ns, "modelroutes", route)

    def config_map(name: str) -> Any:
        found = core.list_namespaced_config_map(ns, field_selector=f"metadata.name={name}").items
        return found[0] if found else None

    profile = wait_for(
        lambda: config_map("p-detection-profile"), timeout=120, interval=0.5, what="profile ConfigMap"
    )
    assert '"balanced"' in profile.data["profile.json"]
    routed = wait_for(lambda: config_map("r-model-route"), timeout=60, interval=0.5, what="route ConfigMap")
    assert '"primary"' in routed.data["route.json"]

    def status_of(plural: str, name: str) -> Any:
        status = objects.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name).get("status") or {}
        return status if status.get("conditions") else None

    # The ConfigMap is written before the same evaluation's status: wait for the status to catch up.
    policy_status = wait_for(lambda: status_of("detectionpolicies", "p"), timeout=30, what="policy status")
    assert policy_status["observedGeneration"] == 1
    assert wait_for(lambda: status_of("modelroutes", "r"), timeout=30, what="route status")
    events = wait_for(
        lambda: [e for e in core.list_namespaced_event(ns).items if e.involved_object.name == "p"],
        timeout=30,
        what="an Event about the policy",
    )
    assert events


def test_another_replica_takes_over_when_the_leaders_pod_is_deleted(
    kube: client.ApiClient, release: Release
) -> None:
    core, leases = client.CoreV1Api(kube), client.CoordinationV1Api(kube)
    ns = release.namespace

    # The bucket of the watched namespace (the chart's default 12 buckets): its holder writes its objects.
    election = LeaderElection()
    lease = election.bucket_leases()[bucket_of(release.watched, election.buckets)]

    def holder() -> str | None:
        try:
            spec = leases.read_namespaced_lease(lease, ns).spec
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return spec.holder_identity or None

    leader = wait_for(holder, timeout=30, what="a Lease holder")
    pods = {p.metadata.name: p for p in _pods(core, ns)}
    assert leader in pods
    (standby,) = set(pods) - {leader}
    assert _ready(pods[standby])  # the other replica is Ready, and takes the bucket over
    started = time.monotonic()
    core.delete_namespaced_pod(leader, ns)
    # The leader releases the Lease on SIGTERM; the standby and the Pod that replaces the deleted one
    # race for it (both are legitimate successors), the deleted one must not hold it again.
    successor = wait_for(
        lambda: (h := holder()) not in (None, leader) and h,
        timeout=60,
        interval=0.1,
        what="a new Lease holder",
    )
    took = time.monotonic() - started
    who = "the standby" if successor == standby else "the replacement Pod"
    print(f"\nleader Pod deleted -> {who} holds the Lease: {took:.2f}s")
    # The Deployment replaces the deleted Pod with a new standby.
    wait_for(
        lambda: len([p for p in _pods(core, ns) if _ready(p)]) == 2,
        timeout=90,
        what="two Ready operator Pods again",
    )


def test_helm_upgrade_with_a_changed_value_rolls_the_pods(
    cluster: Cluster, kube: client.ApiClient, release: Release
) -> None:
    core = client.CoreV1Api(kube)
    before = {p.metadata.name for p in _pods(core, release.namespace)}
    values = {**release.values, "logFormat": "plain"}
    install(cluster.kubeconfig, CHART, RELEASE, release.namespace, values, timeout=180)

    def rolled() -> bool:
        pods = [p for p in _pods(core, release.namespace) if p.metadata.deletion_timestamp is None]
        return (
            len(pods) == 2
            and all(_ready(p) for p in pods)
            and not ({p.metadata.name for p in pods} & before)
            and all("--log-format=plain" in p.spec.containers[0].args for p in pods)
        )

    wait_for(rolled, timeout=120, interval=0.5, what="both Pods replaced by ones with --log-format=plain")
