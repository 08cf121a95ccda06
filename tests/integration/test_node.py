"""The local node itself: Pods really run, Deployments become Available, and a node leaves nothing behind.

The teardown tests start a control plane and a node of their own in a child process (``python -m
detection_testing.node up``), run a Pod on it, and compare the host (mounts, iptables rules in
every table, links, sysctls, fixed directories, cgroups, node processes) before and after: once after a
clean stop (SIGINT, as Ctrl-C), once after SIGKILL, where only the next run's start-up sweep cleans up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from detection_testing.host import leftovers, snapshot
from detection_testing.images import Images
from detection_testing.kube import api_client, wait_for

from ..conftest import Cluster, Node

pytestmark = pytest.mark.timeout(600)


def model_server_deployment(
    name: str, image: str, model: str, replicas: int = 1, args: list[str] | None = None
) -> dict[str, Any]:
    """A Deployment of the standalone model server with a readiness probe and Prometheus annotations."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
                },
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": "model",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "args": ["--host", "0.0.0.0", "--port", "8080", "--model", model, *(args or [])],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 1,
                            },
                            "securityContext": {
                                "runAsNonRoot": True,
                                "readOnlyRootFilesystem": True,
                                "allowPrivilegeEscalation": False,
                            },
                        }
                    ],
                },
            },
        },
    }


def available(apps: client.AppsV1Api, namespace: str, name: str, replicas: int = 1) -> bool:
    """Whether the Deployment reports ``replicas`` available replicas (and its Available condition)."""
    status = apps.read_namespaced_deployment(name, namespace).status
    conditions = {c.type: c.status for c in (status.conditions or [])}
    return (status.available_replicas or 0) == replicas and conditions.get("Available") == "True"


def test_a_deployment_of_model_servers_becomes_available_and_serves_on_its_pod_ip(
    kube: client.ApiClient, namespace: str, node: Node
) -> None:
    apps, core = client.AppsV1Api(kube), client.CoreV1Api(kube)
    manifest = model_server_deployment("model-a", node.model_server_image.name, "model-a")
    started = time.monotonic()
    apps.create_namespaced_deployment(namespace, manifest)
    wait_for(lambda: available(apps, namespace, "model-a"), timeout=60, what="model-a Available")
    elapsed = time.monotonic() - started
    pod = core.list_namespaced_pod(namespace, label_selector="app=model-a").items[0]
    # The host routes to the Pod network: the Pod's own address answers, as Prometheus will scrape it.
    with httpx.Client(timeout=5, trust_env=False) as http:
        assert http.post(f"http://{pod.status.pod_ip}:8080/infer", content=b"{}").status_code == 200
        metrics = http.get(f"http://{pod.status.pod_ip}:8080/metrics").text
    assert 'neuroweaver_requests_total{model="model-a",outcome="success"} 1' in metrics
    print(f"\nDeployment create -> Available: {elapsed:.2f}s")


@pytest.fixture
def own_node_workdir(tmp_path: Path) -> Iterator[Path]:
    # The session's node would hold the machine's one node slot; these tests run first (own_node).
    yield tmp_path


def _start_node_process(workdir: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "detection_testing.node", "up", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=open(workdir / "node-up.log", "w"),  # noqa: SIM115 (the child owns it)
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "export KUBECONFIG=..." once the node is Ready
    if not line.startswith("export KUBECONFIG="):
        proc.kill()
        pytest.fail(f"the node did not come up:\n{(workdir / 'node-up.log').read_text()[-3000:]}")
    return proc, Path(line.strip().split("=", 1)[1])


def _run_a_pod(kubeconfig: Path) -> None:
    """A Pod of the pause image Running: a sandbox, a container, a network namespace, volume mounts."""
    pause = Images().pause()
    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        name = f"p-{uuid.uuid4().hex[:6]}"
        core.create_namespaced_pod(
            "default",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": pause.name, "imagePullPolicy": "Never"}]},
            },
        )

        def running() -> bool:
            return core.read_namespaced_pod(name, "default").status.phase == "Running"

        wait_for(running, timeout=60, what="a Pod Running")


@pytest.mark.own_node
def test_a_stopped_node_leaves_the_host_as_it_was(own_node_workdir: Path) -> None:
    before = snapshot()
    proc, kubeconfig = _start_node_process(own_node_workdir)
    _run_a_pod(kubeconfig)
    during = leftovers(before, snapshot())
    assert any(line.startswith("links: detop0") for line in during), during  # the check can see a node
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
    assert proc.wait(timeout=120) == 0
    assert leftovers(before, snapshot()) == []


@pytest.mark.own_node
def test_a_killed_run_is_swept_by_the_next(own_node_workdir: Path) -> None:
    before = snapshot()
    proc, kubeconfig = _start_node_process(own_node_workdir)
    _run_a_pod(kubeconfig)
    proc.kill()  # SIGKILL: no handler runs; the children die with it (PDEATHSIG), containers do not
    proc.wait()
    left = leftovers(before, snapshot())
    assert any("mounts:" in line for line in left) and any("links: detop0" in line for line in left), left
    done = subprocess.run(
        [sys.executable, "-m", "detection_testing.node", "sweep"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "deleted link detop0" in done.stdout
    assert leftovers(before, snapshot()) == []


def test_the_session_node_is_ready(cluster: Cluster, node: Node) -> None:
    if node.local is None:
        pytest.skip("only the local node reports its start-up phases")
    with api_client(cluster.kubeconfig) as api:
        status = client.CoreV1Api(api).read_node("local-node").status
    assert {c.type: c.status for c in status.conditions}["Ready"] == "True"
    print(f"\nnode start-up phases (s): {node.local.timings}; swept: {node.local.swept or 'nothing'}")
