"""The URLs of a model's Ready Pods, kept current from the cluster's Pod list, for the router.

A router that balances per request (Envoy with endpoint discovery, a mesh sidecar) sends to Pod IPs, not
through a ClusterIP: its upstreams are the Pods that are Ready and not terminating, the facts a Service's
EndpointSlices publish. :class:`ReadyPods` reads them from the Pods themselves (label ``app=<model>``, as
the model Deployments are labelled), so the test needs no Service per model. A Pod that is deleted,
terminating or not Ready leaves the list within one poll (0.2 s).
"""

from __future__ import annotations

import threading
from typing import Any, Final

from kubernetes import client

from .lifecycle import PollingPods

__all__ = ["ReadyPods"]

_INTERVAL: Final = 0.2


class ReadyPods(PollingPods):
    """Model -> ``http://<Pod IP>:<port>`` of its Ready Pods in ``namespace``; call it with a model name."""

    def __init__(self, kube: client.ApiClient, namespace: str, port: int = 8080, label: str = "app") -> None:
        """Prepare; :meth:`start` reads the Pods once and then follows them from a thread."""
        self.core = client.CoreV1Api(kube)
        self.namespace, self.port, self.label = namespace, port, label
        self._urls: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._interval = _INTERVAL

    def __call__(self, model: str) -> list[str]:
        """The current URLs of ``model``'s Ready Pods (empty when it has none)."""
        with self._lock:
            return list(self._urls.get(model, ()))

    def start(self) -> None:
        """Read the Pods, then keep following them until :meth:`stop`."""
        self._sync()
        self._start_loop("ready-pods")

    def stop(self) -> None:
        """Stop following (the last list stays)."""
        self._stop_loop(timeout=10)

    def _sync(self) -> None:
        pods: Any = self.core.list_namespaced_pod(self.namespace, label_selector=self.label)
        urls: dict[str, list[str]] = {}
        for pod in pods.items:
            conditions = pod.status.conditions or []
            ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
            if ready and pod.metadata.deletion_timestamp is None and pod.status.pod_ip:
                model = pod.metadata.labels[self.label]
                urls.setdefault(model, []).append(f"http://{pod.status.pod_ip}:{self.port}")
        with self._lock:
            self._urls = {model: sorted(found) for model, found in urls.items()}
