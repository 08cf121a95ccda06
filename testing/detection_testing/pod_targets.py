"""Prometheus scrape targets for Pods, kept in a ``file_sd_configs`` file from the cluster's Pod list.

Debian's Prometheus is built without Kubernetes service discovery, so this stands in for
``kubernetes_sd_configs: [{role: pod}]`` with the usual annotation convention: Running Pods annotated
``prometheus.io/scrape: "true"`` are scraped at ``<Pod IP>:<prometheus.io/port>``, labelled with
``namespace`` and ``pod``. A Pod that is deleted or stops running leaves the file, and its series go
stale in Prometheus as they would with the real discovery.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Final

from kubernetes import client

from .kube import api_client
from .lifecycle import PollingPods

__all__ = ["PodTargets"]

_INTERVAL: Final = 0.5


class PodTargets(PollingPods):
    """Polls the Pods of the cluster behind ``kubeconfig`` and rewrites ``path`` when their targets change."""

    def __init__(self, kubeconfig: Path, path: Path) -> None:
        """Prepare; :meth:`start` writes the file once and then keeps it current from a thread."""
        self.kubeconfig = kubeconfig
        self.path = path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._interval = _INTERVAL
        self._written: list[dict[str, Any]] | None = None

    @property
    def scrape_config(self) -> dict[str, Any]:
        """The Prometheus scrape job that reads the file."""
        discovery = {"files": [str(self.path)], "refresh_interval": "1s"}
        return {"job_name": "pods", "file_sd_configs": [discovery]}

    def start(self) -> None:
        """Write the current targets, then follow changes until :meth:`stop`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._api = api_client(self.kubeconfig)
        self._sync()
        self._start_loop("pod-targets")

    def stop(self) -> None:
        """Stop following (the file stays as last written)."""
        self._stop_loop(timeout=10)
        self._api.close()  # type: ignore[no-untyped-call]

    def _sync(self) -> None:
        core = client.CoreV1Api(self._api)
        pods: Any = core.list_pod_for_all_namespaces(field_selector="status.phase=Running")
        groups: list[dict[str, Any]] = []
        for pod in pods.items:
            annotations = pod.metadata.annotations or {}
            port = annotations.get("prometheus.io/port")
            if annotations.get("prometheus.io/scrape") != "true" or not port or not pod.status.pod_ip:
                continue
            if pod.metadata.deletion_timestamp is not None:
                continue
            labels = {"namespace": pod.metadata.namespace, "pod": pod.metadata.name}
            groups.append({"targets": [f"{pod.status.pod_ip}:{port}"], "labels": labels})
        groups.sort(key=lambda g: str(g["targets"]))
        if groups != self._written:
            partial = self.path.with_suffix(".partial")
            partial.write_text(json.dumps(groups))
            partial.rename(self.path)  # atomic: Prometheus never reads half a file
            self._written = groups
