"""A real Kubernetes node on this machine: containerd + runc + kubelet, kube-scheduler and kube-proxy.

``LocalNode`` joins a :class:`~detection_testing.controlplane.LocalControlPlane` started with a
``node_address``. containerd runs with its own root, state and socket under ``workdir``; images are
imported from the archives :mod:`detection_testing.images` builds (there is no registry, so Pods
use ``imagePullPolicy: Never``); Pods get addresses on a CNI bridge (``detop0``, 10.244.0.0/24, no
masquerading) that the host routes to, so a Prometheus on the host scrapes Pod IPs. kube-proxy (iptables
mode) makes ClusterIP Services work, in particular ``kubernetes.default`` (10.0.0.1), which the
in-cluster configuration of the operator's Pod dials.

Everything the node changes outside ``workdir`` is recorded first and undone by :meth:`LocalNode.stop`
(see :mod:`detection_testing.host`); a run killed before it could clean up is swept by the
next one. Only one local node runs on a machine at a time; a second waits for the first.

Command line::

    python -m detection_testing.node up WORKDIR     # control plane + node until Ctrl-C
    python -m detection_testing.node sweep          # undo what a killed run left behind
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Final

import httpx
import yaml
from kubernetes import client

from .controlplane import LocalControlPlane, default_bin_dir
from .host import BRIDGE, HostLease, NodeRecord, restore
from .images import Image, Images
from .kube import api_client
from .lifecycle import Started
from .ports import free_port
from .processes import ManagedProcess

__all__ = ["NODE_NAME", "POD_SUBNET", "LocalNode", "NodeError", "main", "node_address"]

NODE_NAME: Final = "local-node"
POD_SUBNET: Final = "10.244.0.0/24"
_CNI_BIN: Final = "/usr/lib/cni"
_RUNC: Final = "/usr/sbin/runc"
_POLL: Final = 0.2
_LOCK_WAIT: Final = 1800.0


class NodeError(RuntimeError):
    """The node could not be started (the message carries the failing part's log) or left something behind."""


def node_address() -> str:
    """This machine's primary non-loopback IPv4 address (the source of its default route)."""
    done = subprocess.run(["ip", "-j", "-4", "route", "get", "1.1.1.1"], capture_output=True, text=True)
    if done.returncode == 0:
        routes = json.loads(done.stdout or "[]")
        if routes and routes[0].get("prefsrc"):
            return str(routes[0]["prefsrc"])
    addresses = json.loads(
        subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True).stdout or "[]"
    )
    for link in addresses:
        for info in link.get("addr_info", []):
            if info.get("scope") == "global":
                return str(info["local"])
    raise NodeError("this machine has no non-loopback IPv4 address for a node")


class LocalNode(Started):
    """One node named :data:`NODE_NAME` on this machine, registered with ``plane``.

    ``images`` are imported into containerd at start (the first must be the pause image). Files live in
    ``workdir``: ``containerd/``, ``kubelet/`` (its ``--root-dir``), ``cni/``, one ``<binary>.log`` each.
    """

    def __init__(
        self,
        workdir: Path,
        plane: LocalControlPlane,
        images: Sequence[Image],
        bin_dir: Path | None = None,
    ) -> None:
        """Prepare (but do not start) the node; ``bin_dir`` defaults to the control plane's."""
        if plane.node_address is None:
            raise NodeError("the control plane was started without node_address: no node can join it")
        if not images:
            raise NodeError("a node needs at least the pause image")
        self.workdir = Path(workdir).resolve()
        self.plane = plane
        self.images = list(images)
        self.bin_dir = Path(bin_dir) if bin_dir is not None else default_bin_dir()
        self.address = plane.node_address
        self._lease = HostLease()
        self._record: NodeRecord | None = None
        self._children: list[ManagedProcess] = []
        #: Seconds each phase of the last start() took (``containerd``, ``images``, ``kubelet``, ...).
        self.timings: dict[str, float] = {}
        #: What the start-up sweep removed of a killed earlier run (empty when there was none).
        self.swept: list[str] = []

    @property
    def containerd_socket(self) -> Path:
        """containerd's gRPC socket (``ctr --address``)."""
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        """The kubelet's ``--root-dir``."""
        return self.workdir / "kubelet"

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> None:
        """Start containerd, import the images, start kubelet, kube-scheduler, kube-proxy; wait for Ready."""
        missing = [
            b for b in ("kubelet", "kube-scheduler", "kube-proxy") if not os.access(self.bin_dir / b, os.X_OK)
        ]
        if missing:
            raise NodeError(f"missing node binaries in {self.bin_dir}: {', '.join(missing)}; run `make node`")
        self.timings = {}
        t0 = time.monotonic()
        self._lease.acquire(_LOCK_WAIT)
        self.swept = self._lease.swept
        self.timings["lock"] = round(time.monotonic() - t0, 3)
        deadline = time.monotonic() + timeout
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._record = NodeRecord.before_start(self.workdir, self.containerd_socket)
        self._lease.write(self._record)
        try:
            self._phase("containerd", lambda: self._start_containerd(deadline))
            self._phase("images", self._import_images)
            self._phase("kubelet", lambda: self._start_kubelet(deadline))
            self._phase("kube-scheduler", lambda: self._start_scheduler(deadline))
            self._phase("kube-proxy", lambda: self._start_proxy(deadline))
            self._phase("node-ready", lambda: self._wait_ready(deadline))
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = round(time.monotonic() - t0, 3)

    def stop(self) -> None:
        """Stop everything and restore the host (mounts, iptables, bridge, sysctls, cgroups, directories)."""
        for child in reversed(self._children):
            child.stop(grace=10)
        self._children = []
        if self._record is not None:
            problems = [line for line in restore(self._record) if line.startswith("error:")]
            self._record = None
            self._lease.release()
            if problems:
                raise NodeError("the node's teardown failed: " + "; ".join(problems))

    def check_running(self) -> None:
        """Raise :class:`NodeError` if a node process has exited."""
        for child in self._children:
            if child.exit_code is not None:
                raise NodeError(child.describe("exited unexpectedly"))

    def log(self, name: str) -> Path:
        """The log of ``containerd``, ``kubelet``, ``kube-scheduler`` or ``kube-proxy``."""
        return self.workdir / f"{name}.log"

    # ---- parts -----------------------------------------------------------------------------------

    def _phase(self, name: str, run: Callable[[], None]) -> None:
        t0 = time.monotonic()
        run()
        self.timings[name] = round(time.monotonic() - t0, 3)

    def _child(self, name: str, argv: list[str]) -> ManagedProcess:
        child = ManagedProcess(name, argv, self.log(name), cwd=self.workdir)
        self._children.append(child)
        child.start()
        if self._record is not None and child.pid is not None:
            self._record.pids.append(child.pid)
            self._lease.write(self._record)
        return child

    def _wait(
        self, child: ManagedProcess, deadline: float, what: str, probe: Callable[[], str | None]
    ) -> None:
        reason = "not probed yet"
        while True:
            if not child.running():
                raise NodeError(child.describe(f"exited while waiting for {what}"))
            try:
                result = probe()
            except (httpx.HTTPError, OSError, ValueError, client.ApiException) as exc:
                result = f"{type(exc).__name__}: {exc}"
            if result is None:
                return
            reason = result
            if time.monotonic() > deadline:
                raise NodeError(child.describe(f"not ready in time ({what}: {reason})"))
            time.sleep(_POLL)

    def _wait_healthz(self, child: ManagedProcess, deadline: float, url: str) -> None:
        # verify=False: the components' serving certificates are self-signed; only the status matters.
        with httpx.Client(timeout=2.0, trust_env=False, verify=False) as http:

            def probe() -> str | None:
                resp = http.get(url)
                return None if resp.status_code == 200 else f"{url} -> {resp.status_code}"

            self._wait(child, deadline, url, probe)

    def _start_containerd(self, deadline: float) -> None:
        base = self.workdir / "containerd"
        cni = self.workdir / "cni"
        (cni / "conf").mkdir(parents=True, exist_ok=True)
        (cni / "conf" / "10-detection-operator.conflist").write_text(json.dumps(self._cni_config(cni)))
        config = base / "config.toml"
        base.mkdir(parents=True, exist_ok=True)
        config.write_text(self._containerd_config(base, cni))
        child = self._child("containerd", ["containerd", f"--config={config}"])

        def probe() -> str | None:
            done = subprocess.run(self._ctr("version"), capture_output=True, text=True)
            return None if done.returncode == 0 else done.stderr.strip()[:200]

        self._wait(child, deadline, "its socket", probe)

    def _ctr(self, *args: str) -> list[str]:
        return ["ctr", f"--address={self.containerd_socket}", "--namespace=k8s.io", *args]

    def _containerd_config(self, base: Path, cni: Path) -> str:
        pause = self.images[0].reference
        # Settings from a probe on this kind of machine: no CAP_SYS_RESOURCE (restrict_oom_score_adj),
        # cgroup v1 with the cgroupfs driver, Debian's runc; everything that has a path is private.
        return f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{self.containerd_socket}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{_RUNC}"
        Root = "{base / "runc"}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{_CNI_BIN}"
    conf_dir = "{cni / "conf"}"
    max_conf_num = 1
"""

    def _cni_config(self, cni: Path) -> dict[str, object]:
        # No ipMasq (it would add CNI-* chains): Pods only talk to this host and to each other.
        return {
            "cniVersion": "1.0.0",
            "name": "detection-operator",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(cni / "ipam"),
                    },
                }
            ],
        }

    def _import_images(self) -> None:
        for image in self.images:
            done = subprocess.run(
                self._ctr("images", "import", str(image.archive)), capture_output=True, text=True
            )
            if done.returncode != 0:
                raise NodeError(f"importing {image.archive} into containerd failed: {done.stderr.strip()}")

    def _start_kubelet(self, deadline: float) -> None:
        plane = self.plane
        kubeconfig = plane.client_kubeconfig("kubelet", f"system:node:{NODE_NAME}", ["system:nodes"])
        port, healthz = free_port(), free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(plane.ca_file)},
            },
            "authorization": {"mode": "Webhook"},
            "address": self.address,
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "cgroupDriver": "cgroupfs",
            # This machine mounts cgroup v1; kubelet 1.35+ refuses it unless told otherwise.
            "failCgroupV1": False,
            "failSwapOn": False,
            "podLogsDir": str(self.workdir / "pod-logs"),
            "volumePluginDir": str(self.workdir / "volume-plugins"),
            # A shared CI disk may be fuller than the defaults allow; images come from archives, so
            # image garbage collection would delete what cannot be pulled back.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "clusterDomain": "cluster.local",
            "resolvConf": "/etc/resolv.conf",
            "serializeImagePulls": False,
            "maxPods": 60,
        }
        config_path = self.workdir / "kubelet-config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        child = self._child(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={config_path}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.kubelet_root}",
                f"--cert-dir={self.workdir / 'kubelet-pki'}",
                f"--node-ip={self.address}",
                f"--hostname-override={NODE_NAME}",
                "--v=1",
            ],
        )
        self._wait_healthz(child, deadline, f"http://127.0.0.1:{healthz}/healthz")

    def _start_scheduler(self, deadline: float) -> None:
        port = free_port()
        kubeconfig = str(self.plane.kubeconfig)
        child = self._child(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--authentication-skip-lookup=true",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'kube-scheduler-pki'}",
            ],
        )
        # /healthz is an always-allowed path; its serving cert is self-signed.
        self._wait_healthz(child, deadline, f"https://127.0.0.1:{port}/healthz")

    def _start_proxy(self, deadline: float) -> None:
        healthz, metrics = free_port(), free_port()
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.plane.kubeconfig)},
            "mode": "iptables",
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": POD_SUBNET,
            "healthzBindAddress": f"127.0.0.1:{healthz}",
            "metricsBindAddress": f"127.0.0.1:{metrics}",
            # Leave the host's conntrack table and timeouts as they are (0 = do not touch), and do not
            # set route_localnet for NodePorts on 127.0.0.1.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"localhostNodePorts": False},
        }
        config_path = self.workdir / "kube-proxy-config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        child = self._child("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={config_path}"])
        # Its /healthz turns 200 once the first sync of the rules is done.
        self._wait_healthz(child, deadline, f"http://127.0.0.1:{healthz}/healthz")

    def _wait_ready(self, deadline: float) -> None:
        kubelet = next(c for c in self._children if c.name == "kubelet")
        with api_client(self.plane.kubeconfig) as api:
            core = client.CoreV1Api(api)

            def probe() -> str | None:
                node = core.read_node(NODE_NAME)
                conditions = (node.status.conditions if node.status else None) or []
                ready = [c for c in conditions if c.type == "Ready"]
                if ready and ready[0].status == "True":
                    return None
                return f"Ready={ready[0].status} ({ready[0].message})" if ready else "no Ready condition"

            self._wait(kubelet, deadline, f"Node {NODE_NAME} Ready", probe)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``up WORKDIR``: a control plane and a node until SIGINT/SIGTERM. ``sweep``: clean a killed run."""
    parser = argparse.ArgumentParser(prog="python -m detection_testing.node")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a control plane and a node, stay up until interrupted")
    up.add_argument("workdir", type=Path)
    sub.add_parser("sweep", help="undo what a killed run left on the host (waits for a running node)")
    args = parser.parse_args(argv)
    if args.command == "sweep":
        lease = HostLease()
        lease.acquire(timeout=60)
        lease.release()
        print("\n".join(lease.swept) or "nothing to sweep")
        return 0

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    images = Images().all()
    plane = LocalControlPlane(
        args.workdir / "controlplane", controller_manager=True, node_address=node_address()
    )
    node = LocalNode(args.workdir / "node", plane, [i for i in images if "pause" in i.repository] + images)
    with plane:
        try:
            node.start()
        except NodeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        try:
            print(f"node {NODE_NAME} Ready in {node.timings['total']:.1f}s", file=sys.stderr)
            print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
            while not stop.wait(1.0):
                node.check_running()
                plane.check_running()
        finally:
            node.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
