"""Follow one ConfigMap through the Kubernetes API (list, then watch from its resourceVersion), as a
data-plane service that reads the operator's output without a volume mount would."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from .lifecycle import Looping

__all__ = ["ConfigMapWatch"]

_WATCH_SECONDS = 30
_RETRY_SECONDS = 0.5


class ConfigMapWatch(Looping):
    """Call ``on_data`` with the ConfigMap's data each time it is created or changes (``None`` when deleted).

    Errors of the apiserver (restarts, expired resource versions) restart the list-then-watch after a
    short pause; nothing is lost because each restart begins with a fresh read.
    """

    def __init__(
        self,
        kube: client.ApiClient,
        namespace: str,
        name: str,
        on_data: Callable[[Mapping[str, str] | None], None],
    ) -> None:
        """Prepare a stopped watch of ConfigMap ``namespace/name``."""
        self.core = client.CoreV1Api(kube)
        self.namespace, self.name, self.on_data = namespace, name, on_data
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: watch.Watch | None = None

    def start(self) -> None:
        """Start following the ConfigMap in a daemon thread; no-op if running."""
        self._start_loop(f"watch-{self.name}")

    def stop(self) -> None:
        """Stop following (within one watch timeout at worst; the watch is asked to end at once)."""
        if self._watch is not None:
            self._watch.stop()  # type: ignore[no-untyped-call]
        self._stop_loop(timeout=_WATCH_SECONDS + 5)

    def _run(self) -> None:
        selector = f"metadata.name={self.name}"
        while not self._stop.is_set():
            try:
                listed = self.core.list_namespaced_config_map(self.namespace, field_selector=selector)
                items = listed.items or []
                self.on_data(dict(items[0].data or {}) if items else None)
                version = listed.metadata.resource_version if listed.metadata else None
                self._watch = watch.Watch()  # type: ignore[no-untyped-call]
                for event in self._watch.stream(  # type: ignore[no-untyped-call]
                    self.core.list_namespaced_config_map,
                    self.namespace,
                    field_selector=selector,
                    resource_version=version,
                    timeout_seconds=_WATCH_SECONDS,
                ):
                    if self._stop.is_set():
                        break
                    kind, obj = event["type"], event["object"]
                    if kind in ("ADDED", "MODIFIED"):
                        self.on_data(dict(obj.data or {}))
                    elif kind == "DELETED":
                        self.on_data(None)
                    else:  # ERROR, e.g. 410 Gone: the resource version expired; list again
                        break
            except (ApiException, HTTPError, OSError, ValueError):
                self._stop.wait(_RETRY_SECONDS)
