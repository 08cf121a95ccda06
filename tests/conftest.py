"""Command-line options and the real parts every integration and reliability test uses.

Real parts: a Kubernetes API server, Prometheus, the operator as a process. The cluster is chosen in this
order: `--existing-cluster` ($KUBECONFIG), `--kind` (pytest-kind), else a local control plane (etcd +
kube-apiserver + kube-controller-manager built by `make controlplane`). The operator always runs on this
machine, so the same tests run unchanged on all three. The fixtures live here, not in one suite's
conftest, so both suites share one session's control plane and Prometheus.

Tests that need Pods ask for `node` (marked `node` automatically): on the local control plane a
LocalNode (containerd + kubelet, `make node`) joins it once per session; on kind or an existing cluster
that cluster's nodes run the same Pods (the images are loaded with kind's loader, or must be there).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from detection_testing.controlplane import LocalControlPlane
from detection_testing.exporter import MetricExporter
from detection_testing.images import Image, Images
from detection_testing.kube import api_client, install_crds
from detection_testing.node import LocalNode, node_address
from detection_testing.operator_process import OperatorProcess
from detection_testing.pod_targets import PodTargets
from detection_testing.postgres import PostgresServer
from detection_testing.prometheus import PrometheusServer

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("detection-operator")
    group.addoption(
        "--existing-cluster",
        action="store_true",
        help="run integration tests against the cluster in $KUBECONFIG instead of a local control plane",
    )
    group.addoption(
        "--kind",
        action="store_true",
        help="run integration tests on a kind cluster created through pytest-kind (needs Docker)",
    )


@dataclass(frozen=True)
class Cluster:
    """Where the tests run: a kubeconfig and what kind of cluster is behind it."""

    kubeconfig: Path
    flavour: str
    plane: LocalControlPlane | None = None
    """The local control plane, when that is where the tests run (to restart its apiserver)."""


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if request.config.getoption("--existing-cluster"):
        path = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
        yield Cluster(path, "existing")
    elif request.config.getoption("--kind"):
        kind = request.getfixturevalue("kind_cluster")  # provided by pytest-kind
        yield Cluster(Path(kind.kubeconfig_path), "kind")
    else:
        # With the node's flags, so that a LocalNode can join once a test asks for Pods.
        workdir = tmp_path_factory.mktemp("controlplane")
        with LocalControlPlane(workdir, controller_manager=True, node_address=node_address()) as plane:
            yield Cluster(plane.kubeconfig, "local", plane)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "node: runs Pods on a node (a LocalNode locally; `make node-tests`)")
    config.addinivalue_line("markers", "own_node: starts a node of its own (runs before the session's node)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "node" in getattr(item, "fixturenames", ()) or item.get_closest_marker("own_node"):
            item.add_marker(pytest.mark.node)
    # Tests that start a node of their own go first: one node per machine, and the session's would
    # hold it until the end.
    items.sort(key=lambda item: item.get_closest_marker("own_node") is None)


@dataclass(frozen=True)
class Node:
    """Where Pods run: the images built for them and the address at which a Pod reaches this machine."""

    operator_image: Image
    model_server_image: Image
    host_address: str
    """Pods reach servers on this machine (Prometheus, receivers) here; they must listen on it."""
    local: LocalNode | None = None


@pytest.fixture(scope="session")
def node(
    cluster: Cluster, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    images = Images()
    pause, operator_image, model_server = images.all()
    found = Node(operator_image, model_server, node_address())
    if cluster.plane is not None:
        with LocalNode(
            tmp_path_factory.mktemp("node"), cluster.plane, [pause, operator_image, model_server]
        ) as local:
            yield Node(operator_image, model_server, found.host_address, local)
        return
    if cluster.flavour == "kind":
        kind = request.getfixturevalue("kind_cluster")
        for image in (operator_image, model_server):
            subprocess.run(
                [str(kind.kind_path), "load", "image-archive", str(image.archive), "--name", kind.name],
                check=True,
            )
    # An existing cluster: its nodes must already have both images (docs/development.md, "A real node").
    yield found


@pytest.fixture(scope="session")
def node_prometheus(
    cluster: Cluster, node: Node, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """A Prometheus that Pods reach at ``node.host_address`` and that scrapes Pods by annotation.

    It discovers Pods through the cluster's API (PodTargets, as Kubernetes service discovery would) and
    scrapes the Pod IP at ``prometheus.io/port`` of Running Pods annotated ``prometheus.io/scrape: "true"``.
    """
    workdir = tmp_path_factory.mktemp("node-prometheus")
    with PodTargets(cluster.kubeconfig, workdir / "pods.json") as pods:
        scrape = [pods.scrape_config]
        with PrometheusServer(workdir, targets=[], listen_host="0.0.0.0", scrape_configs=scrape) as prom:
            yield prom


@pytest.fixture(scope="session")
def kube(cluster: Cluster) -> Iterator[client.ApiClient]:
    api = api_client(cluster.kubeconfig)
    yield api
    api.close()


@pytest.fixture(scope="session")
def crds(kube: client.ApiClient) -> list[str]:
    return install_crds(kube, REPO / "crds")


@pytest.fixture
def namespace(kube: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture
def operator_env() -> dict[str, str]:
    """Extra environment for the operator; a test module overrides this fixture to add settings."""
    return {}


@pytest.fixture
def operator(
    cluster: Cluster,
    crds: list[str],
    namespace: str,
    prometheus: PrometheusServer,
    operator_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    """The real operator, as a separate process watching the test's namespace and the real Prometheus."""
    env = {
        "DETECTION_OPERATOR_PROMETHEUS_URL": prometheus.url,
        "DETECTION_OPERATOR_PROMETHEUS_TIMEOUT_SECONDS": "2",
        **operator_env,
    }
    log = tmp_path / "operator.log"
    with OperatorProcess(cluster.kubeconfig, log, namespaces=[namespace], env=env) as proc:
        yield proc
        if not proc.alive():
            pytest.fail(f"operator died during the test:\n{proc.log_tail()}")


@pytest.fixture(scope="session")
def exporter() -> Iterator[MetricExporter]:
    with MetricExporter() as exp:
        yield exp


@pytest.fixture(scope="session")
def prometheus(
    exporter: MetricExporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    with PrometheusServer(tmp_path_factory.mktemp("prometheus"), targets=[exporter.target]) as prom:
        yield prom


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A real PostgreSQL shared by the session; a test that stops it asks for ``own_postgres`` instead."""
    with PostgresServer(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL of the test's own, for outages (``stop()`` then ``start()``: same port, same data)."""
    with PostgresServer(tmp_path / "postgres") as server:
        yield server
