"""For data-plane services: read the documents the operator published, verify them, follow changes.

Follow the policy's (or route's) ConfigMap through the Kubernetes API (fast: a watch sees a write within
milliseconds) or, where the service may not read the API, mount it as a volume (the kubelet refreshes a
volume on its next sync: up to a minute or more)::

    key = open("/etc/detection-key/hmac", "rb").read()
    reader = ProfileReader(key=key)
    following = reader.follow(kubernetes.client.ApiClient(), "shop", "checkout-profile", detector.apply)
    ...
    following.stop()

    reader = ProfileReader("/etc/detection", key=key)       # the mounted ConfigMap
    reader.watch(detector.apply, stop=shutdown_event)

    routes = RouteReader("/etc/model-route")
    routes.watch(lambda r: None, stop=shutdown_event)
    for model in routes.attempts():  # the model route.json's weights chose, then its fallbacks
        if send(model):
            break

A document that fails its signature or does not validate is reported to ``on_error`` and not applied:
the reader keeps the last good one. Kubernetes updates ConfigMap volumes by swapping a symlink, so a read
never sees half a file.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Generic, TypeVar

from kubernetes import client
from pydantic import BaseModel, ValidationError

from ..api.contract import ProfileDocument, RouteDocument
from ..core.signing import verify
from .routing import EvenSequence, attempts, choose
from .watch import ConfigMapWatch

PROFILE = "profile.json"
ROUTE = "route.json"
SIGNATURE_SUFFIX = ".sig"

log = logging.getLogger(__name__)

D = TypeVar("D", bound=BaseModel)


class DocumentError(ValueError):
    """A document the reader refused: missing, unsigned, not matching its signature, or not valid."""


class _DocumentReader(Generic[D]):
    """Loads one JSON document (optionally HMAC-signed) from a directory; keeps the last good one."""

    document_type: type[D]
    file_name: str

    def __init__(self, directory: str | Path | None = None, key: bytes | None = None) -> None:
        self.directory = None if directory is None else Path(directory)
        self.key = key
        self._last_digest: str | None = None
        self._lock = threading.Lock()
        self._current: D | None = None

    @property
    def current(self) -> D | None:
        """The last document that verified and validated (None before the first)."""
        with self._lock:
            return self._current

    def _path(self, name: str) -> Path:
        if self.directory is None:
            raise ValueError("this reader has no directory: hand it payloads with accept()")
        return self.directory / name

    def accept(self, payload: bytes, signature: str | None = None) -> D:
        """Verify (when a key is set) and validate ``payload``, and keep it as the current document.

        Raises DocumentError (a ValueError) when it is not acceptable; the current document then stays.
        """
        if self.key is not None:
            if signature is None:
                raise DocumentError(f"{self.file_name} has no signature but a key is configured")
            if not verify(self.key, payload, signature):
                raise DocumentError(f"{self.file_name} does not match its signature: refusing it")
        try:
            # By alias only: the schema's keys are camelCase, and pydantic would also take field names.
            document = self.document_type.model_validate_json(
                payload, strict=True, by_alias=True, by_name=False
            )
        except ValidationError as exc:
            raise DocumentError(f"{self.file_name} is not a valid document: {exc}") from exc
        with self._lock:
            self._last_digest = hashlib.sha256(payload).hexdigest()
            self._current = document
        return document

    def load(self) -> D:
        """Read, verify (when a key is set) and validate the file. Raises ValueError when it is not."""
        payload = self._path(self.file_name).read_bytes()
        signature = None
        if self.key is not None:
            signature_file = self._path(self.file_name + SIGNATURE_SUFFIX)
            if not signature_file.exists():
                missing = signature_file.name
                raise DocumentError(
                    f"{self.file_name} has no signature ({missing} missing) but a key is configured"
                )
            signature = signature_file.read_text()
        return self.accept(payload, signature)

    def reload_if_changed(self) -> D | None:
        """The document if its file changed since the last successful load, else None."""
        digest = hashlib.sha256(self._path(self.file_name).read_bytes()).hexdigest()
        return None if digest == self._last_digest else self.load()

    def offer(self, data: Mapping[str, str]) -> D | None:
        """Accept the document in a ConfigMap's ``data`` if it changed since the last accepted one.

        Returns the new document, or None when it is the one already current. Raises ValueError when the
        ConfigMap lacks the document or it is not acceptable (the current document then stays).
        """
        payload = data.get(self.file_name)
        if payload is None:
            raise DocumentError(f"the ConfigMap has no {self.file_name} (keys: {sorted(data)})")
        encoded = payload.encode()
        with self._lock:
            unchanged = hashlib.sha256(encoded).hexdigest() == self._last_digest
        return None if unchanged else self.accept(encoded, data.get(self.file_name + SIGNATURE_SUFFIX))

    def follow(
        self,
        api: client.ApiClient,
        namespace: str,
        config_map: str,
        on_change: Callable[[D], None],
        on_error: Callable[[Exception], None] | None = None,
        *,
        resource_version: str | None = None,
        watch_seconds: int = 300,
    ) -> ConfigMapWatch:
        """Follow ConfigMap ``namespace/config_map`` through the Kubernetes API; call ``on_change`` (from
        the watch's thread) with each new valid document. Returns the started
        :class:`~detection_operator.client.watch.ConfigMapWatch`: ``stop()`` it when done.

        A deleted ConfigMap keeps the last good document. Errors go to ``on_error`` (or to the log when
        it is None): a :class:`DocumentError` for a refused document, the exception of a failing
        ``on_change``, or the API error of a watch that is being retried (a 403 means missing RBAC).
        ``resource_version`` and ``watch_seconds`` are
        :class:`~detection_operator.client.watch.ConfigMapWatch`'s.
        """
        report = on_error or (lambda exc: log.warning("%s: %s", self.file_name, exc))

        def on_data(data: Mapping[str, str] | None) -> None:
            if data is None:
                return  # deleted or not written yet: keep what we have
            try:
                document = self.offer(data)
                if document is not None:
                    on_change(document)
            except Exception as exc:  # a callback's bug must not end the watch
                report(exc)

        watcher = ConfigMapWatch(
            api,
            namespace,
            config_map,
            on_data,
            on_error=report,
            resource_version=resource_version,
            watch_seconds=watch_seconds,
        )
        return watcher.start()

    def watch(
        self,
        on_change: Callable[[D], None],
        stop: threading.Event,
        interval: float = 1.0,
        on_error: Callable[[Exception], None] | None = None,
    ) -> threading.Thread:
        """Poll the mounted directory in a daemon thread every ``interval`` seconds and call ``on_change``
        with each new valid document until ``stop`` is set.

        A document that fails verification is reported to ``on_error`` and not applied: the service keeps
        the last good one.
        """

        def loop() -> None:
            while not stop.is_set():
                try:
                    changed = self.reload_if_changed()
                except (OSError, ValueError) as exc:
                    if on_error is not None:
                        on_error(exc)
                else:
                    if changed is not None:
                        on_change(changed)
                stop.wait(interval)

        thread = threading.Thread(target=loop, name=f"{self.file_name}-watch", daemon=True)
        thread.start()
        return thread


class ProfileReader(_DocumentReader[ProfileDocument]):
    """Loads ``profile.json`` from a mounted ConfigMap directory."""

    document_type = ProfileDocument
    file_name = PROFILE


class RouteReader(_DocumentReader[RouteDocument]):
    """Loads ``route.json`` and chooses a model per request by its ``traffic`` weights.

    :meth:`choose` feeds :func:`~detection_operator.client.routing.choose` from an
    :class:`~detection_operator.client.routing.EvenSequence`: over any 100 consecutive choices each model
    gets exactly its percent, spread out (a 5 % trickle is one request in about twenty, not a burst).
    """

    document_type = RouteDocument
    file_name = ROUTE

    def __init__(self, directory: str | Path | None = None, key: bytes | None = None) -> None:
        super().__init__(directory, key)
        self._sequence = EvenSequence()

    def choose(self, r: float | None = None) -> str | None:
        """The model for the next request (None before the first document); ``r`` in [0, 1) overrides the
        even sequence (pass ``random.random()`` for independent draws)."""
        document = self.current
        if document is None:
            return None
        return choose(document.traffic, document.active, self._sequence.next() if r is None else r)

    def attempts(self, r: float | None = None) -> list[str]:
        """The models to try for the next request, in order: the chosen one, then the active model if it
        was not chosen, then the fallbacks. Empty before the first document."""
        document = self.current
        if document is None:
            return []
        r = self._sequence.next() if r is None else r
        return attempts(document.traffic, document.active, document.fallbacks, r)
