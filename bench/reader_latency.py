"""Decision -> a data-plane reader calls back with the new document: API watch vs mounted volume.

On the real node (containerd + runc + kubelet with its default ``syncFrequency`` of 1 min), one Pod of
the operator image runs two :class:`~detection_operator.client.readers.ProfileReader` s on the same
ConfigMap: one following it through the Kubernetes API (``follow``), one polling the mounted volume
(``watch``, its default 1 s interval). Each callback POSTs (revision, reader, wall-clock time) to a
receiver on this machine (the Pod uses the host network, so loopback is shared, and so is the clock).

Per switch the clock starts just before the ConfigMap is written with a new revision (what the
operator's act step does once it decided) and stops at each reader's callback. The next switch comes a
uniformly random time after the volume reader saw the last one, so switches fall at random phases of
the kubelet's sync, as decisions do.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client

from detection_operator.api.contract import ProfileDocument
from detection_testing.controlplane import LocalControlPlane
from detection_testing.images import Images
from detection_testing.kube import api_client, wait_for
from detection_testing.node import LocalNode, node_address
from detection_testing.receiver import WebhookReceiver

NAMESPACE = "bench-readers"
CONFIG_MAP = "checkout-profile"
SWITCHES = 20
#: The kubelet's default syncFrequency: a volume refreshes at the latest one sync (plus jitter) later.
SYNC_SECONDS = 60.0
VOLUME_DEADLINE = 180.0

# The reader Pod's program: both readers, each reporting its callbacks to the receiver.
READER = """
import json, os, threading, time, urllib.request
from kubernetes import client, config
from detection_operator.client.readers import ProfileReader

config.load_incluster_config()
url, namespace, name = os.environ["REPORT_URL"], os.environ["NAMESPACE"], os.environ["CONFIG_MAP"]

def report(via):
    def on_change(document):
        body = json.dumps({"via": via, "revision": document.revision, "at": time.time()}).encode()
        urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=5).read()
    return on_change

ProfileReader().follow(client.ApiClient(), namespace, name, report("api"))
ProfileReader("/etc/detection").watch(report("volume"), threading.Event())
threading.Event().wait()
"""


def profile(revision: int) -> str:
    """A profile.json with ``revision``, decided now."""
    return ProfileDocument.model_validate(
        {
            "policy": {"namespace": NAMESPACE, "name": "checkout"},
            "profile": "paranoid" if revision % 2 else "lean",
            "revision": revision,
            "decidedAt": datetime.now(UTC),
            "reason": "bench",
            "contributors": [],
            "external": [],
            "expense": {},
            "reasons": [],
        }
    ).model_dump_json(by_alias=True)


def reader_pod(image: str, server: str, report_url: str) -> dict[str, Any]:
    """The reader Pod: host network (the receiver is on loopback), the ConfigMap mounted, RBAC'd SA."""
    parts = urlsplit(server)
    env = {
        "REPORT_URL": report_url,
        "NAMESPACE": NAMESPACE,
        "CONFIG_MAP": CONFIG_MAP,
        # No cluster DNS or Service routing is needed for the apiserver: its address, directly.
        "KUBERNETES_SERVICE_HOST": parts.hostname or "",
        "KUBERNETES_SERVICE_PORT": str(parts.port or 443),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "readers"},
        "spec": {
            "hostNetwork": True,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "readers",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", READER],
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "volumeMounts": [{"name": "profile", "mountPath": "/etc/detection", "readOnly": True}],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                    },
                }
            ],
            "volumes": [{"name": "profile", "configMap": {"name": CONFIG_MAP}}],
        },
    }


def _rbac(api: client.ApiClient) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    rule = client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list", "watch"])
    rbac.create_namespaced_role(
        NAMESPACE, client.V1Role(metadata=client.V1ObjectMeta(name="readers"), rules=[rule])
    )
    rbac.create_namespaced_role_binding(
        NAMESPACE,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="readers"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="readers"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="default", namespace=NAMESPACE)],
        ),
    )


@contextmanager
def _node_with_reader(workdir: Path, receiver: WebhookReceiver) -> Iterator[client.ApiClient]:
    images = Images()
    pause, operator, _ = images.all()
    with LocalControlPlane(
        workdir / "controlplane", controller_manager=True, node_address=node_address()
    ) as plane:
        api = api_client(plane.kubeconfig)
        # One node per machine: LocalNode waits for the host's lease while another run holds it.
        with LocalNode(workdir / "node", plane, [pause, operator]):
            core = client.CoreV1Api(api)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
            wait_for(
                lambda: core.list_namespaced_service_account(NAMESPACE).items,
                timeout=60,
                what="the default ServiceAccount",
            )
            _rbac(api)
            data = {"profile.json": profile(1)}
            core.create_namespaced_config_map(
                NAMESPACE, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=CONFIG_MAP), data=data)
            )
            pod = reader_pod(operator.name, plane.server, receiver.url)
            core.create_namespaced_pod(NAMESPACE, pod)  # type: ignore[arg-type]
            try:
                yield api
            finally:
                api.close()  # type: ignore[no-untyped-call]


def _describe(core: client.CoreV1Api) -> str:
    """The reader Pod's state and log, for a benchmark that could not start."""
    pod = core.read_namespaced_pod("readers", NAMESPACE)
    states = [(c.name, c.state, c.last_state) for c in (pod.status.container_statuses or [])]
    try:
        log = core.read_namespaced_pod_log("readers", NAMESPACE, tail_lines=30)
    except client.ApiException as exc:
        log = f"(no log: {exc.reason})"
    return f"pod phase {pod.status.phase}, containers {states}\n{log}"


def _reports(receiver: WebhookReceiver) -> dict[tuple[str, int], float]:
    seen: dict[tuple[str, int], float] = {}
    for request in receiver.requests:
        report = request.json()
        seen.setdefault((report["via"], report["revision"]), report["at"])
    return seen


def measure(workdir: Path, switches: int = SWITCHES) -> dict[str, list[float]]:
    """Latencies in seconds, per reader (``api``, ``volume``), over ``switches`` switches."""
    latencies: dict[str, list[float]] = {"api": [], "volume": []}
    rng = random.Random(20)
    with WebhookReceiver() as receiver, _node_with_reader(workdir, receiver) as api:
        core = client.CoreV1Api(api)
        try:
            wait_for(
                lambda: {("api", 1), ("volume", 1)} <= set(_reports(receiver)),
                timeout=120,
                what="both readers reporting the first document",
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{_describe(core)}") from exc
        for revision in range(2, switches + 2):
            time.sleep(rng.uniform(0, SYNC_SECONDS))  # a random phase of the kubelet's sync
            written = time.time()
            body = client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=CONFIG_MAP), data={"profile.json": profile(revision)}
            )
            core.replace_namespaced_config_map(CONFIG_MAP, NAMESPACE, body)
            wanted = {("api", revision), ("volume", revision)}

            def both(wanted: set[tuple[str, int]] = wanted) -> dict[tuple[str, int], float] | None:
                reports = _reports(receiver)
                return reports if wanted <= set(reports) else None

            seen = wait_for(both, timeout=VOLUME_DEADLINE, interval=0.05, what=f"revision {revision} read")
            for via in latencies:
                latencies[via].append(seen[(via, revision)] - written)
    return latencies


def _percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def section(workdir: Path) -> list[str]:
    """The RESULTS.md section."""
    started = time.monotonic()
    latencies = measure(workdir)
    minutes = (time.monotonic() - started) / 60

    def row(label: str, samples: list[float]) -> str:
        values = (statistics.median(samples), _percentile(samples, 0.95), min(samples), max(samples))
        return f"| {label} | " + " | ".join(_format(v) for v in values) + f" | {len(samples)} |"

    return [
        "## Decision -> reader callback: API watch vs mounted ConfigMap volume (real node)",
        "",
        "One Pod of the operator image on the local node runs two ProfileReaders on the same ConfigMap:",
        "`follow` (a watch through the Kubernetes API) and `watch` (polling the mounted volume every 1 s).",
        "From just before the ConfigMap write of a new revision to each reader's callback (wall clock,",
        "same machine). Switches at random phases of the kubelet's sync (default `syncFrequency` 1 min).",
        f"Run time {minutes:.0f} min.",
        "",
        "| reader | p50 | p95 | min | max | n |",
        "|---|---|---|---|---|---|",
        row("API watch (`follow`)", latencies["api"]),
        row("mounted volume (`watch`)", latencies["volume"]),
        "",
    ]


def _format(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"
