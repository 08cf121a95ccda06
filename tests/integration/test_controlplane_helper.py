"""The local control plane helper against the real etcd / kube-apiserver / kube-controller-manager."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from detection_testing.controlplane import ControlPlaneError, LocalControlPlane, missing_binaries

pytestmark = pytest.mark.integration

T = TypeVar("T")

_MISSING = missing_binaries(controller_manager=True)
needs_binaries = pytest.mark.skipif(
    bool(_MISSING), reason=f"control-plane binaries missing ({', '.join(_MISSING)}); run `make controlplane`"
)


def _eventually(fn: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited, which is what we care about.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line mentions ``text`` (our workdir): any leftover child would."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and _pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _deployment(name: str) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="x", image="registry.invalid/x:1")]
                ),
            ),
        ),
    )


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[LocalControlPlane]:
    cp = LocalControlPlane(tmp_path / "cp", controller_manager=True)
    try:
        yield cp
    finally:
        cp.stop()


@needs_binaries
def test_control_plane_serves_objects_runs_controllers_and_survives_apiserver_restart(
    plane: LocalControlPlane,
) -> None:
    plane.start()
    pids = plane.pids
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    assert plane.server.startswith("https://127.0.0.1:")
    for path in (plane.kubeconfig, plane.ca_file, plane.client_cert_file, plane.client_key_file):
        assert path.is_file() and path.is_relative_to(plane.workdir)

    api = config.new_client_from_config(config_file=str(plane.kubeconfig), context="local")
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="it")))
    core.create_namespaced_config_map(
        "it", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"k": "v"})
    )
    assert core.read_namespaced_config_map("cm", "it").data == {"k": "v"}

    dep = apps.create_namespaced_deployment("it", _deployment("web"))

    def owned_replicaset() -> str | None:
        for rs in apps.list_namespaced_replica_set("it").items:
            if any(ref.uid == dep.metadata.uid for ref in rs.metadata.owner_references or []):
                return str(rs.metadata.name)
        return None

    rs_name = _eventually(owned_replicaset, 60, "a ReplicaSet owned by the Deployment")

    old_apiserver = pids["kube-apiserver"]
    plane.restart_apiserver()
    assert not _pid_alive(old_apiserver)
    assert plane.pids["etcd"] == pids["etcd"]
    assert plane.pids["kube-controller-manager"] == pids["kube-controller-manager"]
    # Same port and CA: the kubeconfig written at start() still works.
    assert core.read_namespaced_config_map("cm", "it").data == {"k": "v"}
    assert apps.read_namespaced_replica_set(rs_name, "it").metadata.name == rs_name
    # The controller manager reconnects after the restart and keeps reconciling.
    dep2 = apps.create_namespaced_deployment("it", _deployment("web2"))
    _eventually(
        lambda: next(
            (
                rs
                for rs in apps.list_namespaced_replica_set("it").items
                if any(ref.uid == dep2.metadata.uid for ref in rs.metadata.owner_references or [])
            ),
            None,
        ),
        60,
        "a ReplicaSet for a Deployment created after the restart",
    )
    api.close()

    all_pids = plane.pids
    plane.stop()
    assert plane.pids == {}
    assert [pid for pid in all_pids.values() if _pid_alive(pid)] == []
    assert _processes_mentioning(str(plane.workdir)) == []


@needs_binaries
def test_configmap_round_trip_without_controller_manager(tmp_path: Path) -> None:
    with LocalControlPlane(tmp_path, controller_manager=False) as cp:
        assert set(cp.pids) == {"etcd", "kube-apiserver"}
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(cp.kubeconfig)))
        core.create_namespaced_config_map(
            "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"a": "b"})
        )
        assert core.read_namespaced_config_map("c", "default").data == {"a": "b"}
        with pytest.raises(ApiException) as err:
            core.read_namespaced_config_map("absent", "default")
        assert err.value.status == 404
    assert _processes_mentioning(str(tmp_path)) == []


def test_missing_binaries_name_the_make_target(tmp_path: Path) -> None:
    with pytest.raises(ControlPlaneError, match="make controlplane"):
        LocalControlPlane(tmp_path / "cp", bin_dir=tmp_path / "empty").start()


def _cli_up(workdir: Path) -> subprocess.Popen[str]:
    """Run ``controlplane up`` (no controller manager) and return once it printed the kubeconfig line."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "detection_testing.controlplane",
            "up",
            str(workdir),
            "--no-controller-manager",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the plane is ready (or the CLI failed)
        assert line.strip() == f"export KUBECONFIG={workdir.resolve() / 'kubeconfig'}", (
            proc.stderr and proc.stderr.read()
        )
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


@needs_binaries
def test_cli_up_prints_kubeconfig_and_stops_on_sigterm(tmp_path: Path) -> None:
    workdir = tmp_path / "cli"
    proc = _cli_up(workdir)
    try:
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(workdir / "kubeconfig")))
        assert core.read_namespace("default").metadata.name == "default"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _processes_mentioning(str(workdir)) == []


@needs_binaries
def test_children_die_with_a_sigkilled_parent(tmp_path: Path) -> None:
    # SIGKILL runs neither signal handlers nor atexit: only the kernel's parent-death signal, armed
    # by ManagedProcess, can take etcd and the apiserver down with the CLI.
    workdir = tmp_path / "cli"
    proc = _cli_up(workdir)
    assert _processes_mentioning(str(workdir)), "the control plane should be running"
    proc.kill()
    proc.wait()
    _eventually(lambda: _processes_mentioning(str(workdir)) == [] or None, 10, "children to die")
