"""The real thing on kind: build the image, load it, install the chart, see a policy evaluated in-cluster.

Needs Docker and ``--kind`` (pytest-kind creates the cluster; the chart needs Kubernetes >= 1.30, so pick
a recent kind, e.g. ``KIND_VERSION=v0.27.0 .venv/bin/pytest tests/e2e --kind``). Skipped otherwise, which
is the case on machines without Docker, where ``make test`` still passes.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_testing.charts import install
from detection_testing.kube import api_client, wait_for
from detection_testing.specs import missing_metric_policy

REPO = Path(__file__).resolve().parents[2]
IMAGE_REPOSITORY, IMAGE_TAG = "detection-operator", "e2e"
IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_TAG}"
RELEASE_NAMESPACE = "detection-system"


def _docker_works() -> bool:
    docker = shutil.which("docker")
    return docker is not None and subprocess.run([docker, "info"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def kind_kubeconfig(request: pytest.FixtureRequest) -> Path:
    if not request.config.getoption("--kind"):
        pytest.skip("the kind e2e test runs with --kind (a kind cluster through pytest-kind)")
    if not _docker_works():
        pytest.skip("Docker is not available: cannot build the image or run kind")
    subprocess.run(["docker", "build", "-t", IMAGE, str(REPO)], check=True)
    kind = request.getfixturevalue("kind_cluster")
    kind.load_docker_image(IMAGE)
    return Path(kind.kubeconfig_path)


def test_chart_installs_and_the_operator_evaluates_a_policy(kind_kubeconfig: Path) -> None:
    with api_client(kind_kubeconfig) as kube:
        server = client.VersionApi(kube).get_code()
        if (int(server.major), int(server.minor.rstrip("+"))) < (1, 30):
            pytest.fail(f"kind runs Kubernetes {server.git_version}; the chart needs >= 1.30 (KIND_VERSION)")
        install(
            kind_kubeconfig,
            REPO / "charts" / "detection-operator",
            "detection-operator",
            RELEASE_NAMESPACE,
            {
                "image": {"repository": IMAGE_REPOSITORY, "tag": IMAGE_TAG, "pullPolicy": "Never"},
                # No Prometheus in this cluster: the policy's only rule counts as clear when it is missing.
                "prometheus": {"url": "http://prometheus.invalid:9090", "timeoutSeconds": 1},
            },
        )
        namespace = f"e2e-{uuid.uuid4().hex[:8]}"
        core, objects = client.CoreV1Api(kube), client.CustomObjectsApi(kube)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        try:
            objects.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "detectionpolicies", missing_metric_policy()
            )
            config_map = wait_for(
                lambda: _config_map(core, namespace), timeout=180, interval=1, what="the policy's ConfigMap"
            )
            assert '"balanced"' in config_map.data["profile.json"]
            # Two replicas, one leader: exactly one pod name holds the Lease.
            pods = core.list_namespaced_pod(
                RELEASE_NAMESPACE, label_selector="app.kubernetes.io/name=detection-operator"
            ).items
            leases = client.CoordinationV1Api(kube)
            lease = leases.read_namespaced_lease("detection-operator", RELEASE_NAMESPACE)
            assert lease.spec.holder_identity in {p.metadata.name for p in pods}
        finally:
            core.delete_namespace(namespace)


def _config_map(core: client.CoreV1Api, namespace: str) -> Any:
    found = core.list_namespaced_config_map(namespace, field_selector="metadata.name=p-detection-profile")
    return found.items[0] if found.items else None
