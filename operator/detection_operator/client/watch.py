"""Follow one ConfigMap through the Kubernetes API: list it once, then watch it from its resourceVersion.

A data-plane service that follows the operator's ConfigMap this way sees a new document within
milliseconds of the write, where a mounted volume waits for the kubelet's next sync (up to a minute
and more). It needs RBAC to ``get``, ``list`` and ``watch`` ConfigMaps in its namespace (the watch is
narrowed to the one ConfigMap by a field selector, not by RBAC: ``resourceNames`` cannot restrict a
list).

The watch resumes from the last resourceVersion it saw (bookmarks keep it fresh) when the server ends
a watch or the connection drops, so nothing is replayed; it lists again only when the server says that
version is gone (410), so nothing is missed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

__all__ = ["ConfigMapWatch", "OnData"]

OnData = Callable[[Mapping[str, str] | None], None]
"""Receives the ConfigMap's ``data`` each time it is listed, created or changed; None when it is deleted
or does not exist."""

_GONE = 410


class ConfigMapWatch:
    """Call ``on_data`` with ConfigMap ``namespace/name``'s data from a daemon thread, until :meth:`stop`.

    ``resource_version`` starts the watch from a version the caller already has (it then skips the
    first list); ``watch_seconds`` is how long the server keeps one watch open before it is resumed.
    ``on_error`` hears every failure the watch recovers from (each is retried after ``retry_seconds``).
    """

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        on_data: OnData,
        *,
        on_error: Callable[[Exception], None] | None = None,
        resource_version: str | None = None,
        watch_seconds: int = 300,
        retry_seconds: float = 1.0,
    ) -> None:
        """Prepare a stopped watch; :meth:`start` begins it."""
        self.core = client.CoreV1Api(api)
        self.namespace, self.name = namespace, name
        self.on_data, self.on_error = on_data, on_error
        self.watch_seconds, self.retry_seconds = watch_seconds, retry_seconds
        #: The last resourceVersion seen (None: list next).
        self.resource_version = resource_version
        #: How many times the watch listed the ConfigMap (the first read, then once per 410).
        self.lists = 0
        #: How many times a watch was resumed from a resourceVersion without listing.
        self.resumes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: watch.Watch | None = None
        self._selector = f"metadata.name={name}"

    def start(self) -> ConfigMapWatch:
        """Start following in a daemon thread (no-op if running); returns self."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"watch-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following; the open watch is closed at once."""
        self._stop.set()
        current = self._watch
        if current is not None:
            current.stop()  # type: ignore[no-untyped-call]
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _list(self) -> None:
        listed = self.core.list_namespaced_config_map(self.namespace, field_selector=self._selector)
        self.lists += 1
        items = listed.items or []
        self.on_data(dict(items[0].data or {}) if items else None)
        self.resource_version = listed.metadata.resource_version if listed.metadata else None

    def _follow(self) -> None:
        self._watch = current = watch.Watch()  # type: ignore[no-untyped-call]
        events: Any = current.stream(  # type: ignore[no-untyped-call]
            self.core.list_namespaced_config_map,
            self.namespace,
            field_selector=self._selector,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_seconds,
            # A connection that dies silently must not hang the watch: the server sends a bookmark or
            # ends the watch well within this.
            _request_timeout=(10, self.watch_seconds + 30),
        )
        for event in events:
            if self._stop.is_set():
                return
            kind, obj = event["type"], event["object"]
            version = getattr(getattr(obj, "metadata", None), "resource_version", None)
            if kind in ("ADDED", "MODIFIED"):
                self.on_data(dict(obj.data or {}))
            elif kind == "DELETED":
                self.on_data(None)
            if version:
                self.resource_version = version

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self._list()
                else:
                    self.resumes += 1
                self._follow()
            except ApiException as exc:
                if exc.status == _GONE:
                    self.resource_version = None  # the version expired: list again, then watch
                    continue
                self._failed(exc)
            except (HTTPError, OSError, ValueError) as exc:
                self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        if self._stop.is_set():
            return
        if self.on_error is not None:
            self.on_error(exc)
        self._stop.wait(self.retry_seconds)
