"""The I/O an evaluation may do: read (Prometheus, Kubernetes) and write (only while this replica leads).

A flow receives an :class:`Effects` and never the Reconciler: it can observe and act, but cannot reach
the evaluation's sequence, caches or status.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from typing import Any, Literal, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..act import kube
from ..act.outputs import AppliedOutputs
from ..act.status_client import StatusClient
from ..api.common import PrometheusRef
from ..api.conditions import EventReason
from ..core.errors import NotLeader, OutputError
from ..core.identity import Key, ObjectRef
from ..core.logref import about
from ..core.readings import Missing, Reading, Value
from ..observe.connections import Connections, InvalidConnection
from ..observe.freshness import probe
from ..observe.source import query_all

log = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K")

_STATUS_WRITE_TIMEOUT_SECONDS = 30.0
"""One status write's bound: kopf's own request timeout here (runtime/handlers.py)."""


class Effects:
    """Reads and guarded writes against Prometheus and the Kubernetes API."""

    def __init__(
        self,
        api: client.ApiClient,
        connections: Connections,
        executor: Executor,
        identity: str,
        may_write: Callable[[str], bool],
        freshness: bool = True,
    ) -> None:
        self.api = api
        # As many connections as the Kubernetes client's pool (one per worker: runtime/handlers.py).
        pool = api.configuration.connection_pool_maxsize or 16
        self._status = StatusClient(api.configuration, pool, _STATUS_WRITE_TIMEOUT_SECONDS)
        self.identity = identity
        """This replica's name, in Events (reportingInstance)."""
        self.outputs = AppliedOutputs()
        self._connections = connections
        self._executor = executor
        self._may_write = may_write
        self._freshness = freshness
        """Whether plans run now also ask when their series were refreshed (for scrape alignment)."""
        self._samples: dict[ObjectRef, tuple[float, float]] = {}
        self._fresh_after: dict[ObjectRef, float] = {}

    async def aclose(self) -> None:
        """Close the status writes' session (at shutdown)."""
        await self._status.aclose()

    def check_leader(self, namespace: str) -> None:
        """Raise :class:`NotLeader` unless this replica may write for the namespace's objects now (it holds
        their bucket; checked right before each write)."""
        if not self._may_write(namespace):
            raise NotLeader()

    async def blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking call (Kubernetes client, Secret reads) in the worker pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def mutate(self, namespace: str, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking write about the namespace's objects in the worker pool, only while this replica
        holds their bucket."""

        def guarded() -> T:
            # Checked again in the worker, right before the request: a replica paused (or starved) while
            # the call waited for a thread must not write once it wakes up without the Lease.
            self.check_leader(namespace)
            return fn(*args)

        self.check_leader(namespace)
        return await self.blocking(guarded)

    async def observe(
        self,
        ref: ObjectRef,
        prometheus: PrometheusRef | None,
        plan: Mapping[K, str],
        at: float | None = None,
    ) -> dict[K, Reading]:
        """Run a query plan (now, or at Unix time ``at``); a broken connection makes every reading missing.

        A plan run now also asks when its series were last refreshed (the scheduler aligns the next
        evaluation to it: :meth:`take_sample`).
        """
        try:
            # Known connections skip the thread hop (only a Secret read needs one).
            source = self._connections.at_hand(ref.namespace, prometheus)
            if source is None:
                source = await self.blocking(self._connections.for_object, ref.namespace, prometheus)
                await self._connections.release_retired()
        except (InvalidConnection, ApiException) as exc:
            # A broken connection is missing metrics like any other: the fail-safe applies.
            detail = str(exc) if isinstance(exc, InvalidConnection) else f"Prometheus Secret: {exc.reason}"
            return {key: Missing("error", detail) for key in plan}
        queries = list(plan.values())
        refreshed = probe(tuple(queries)) if at is None and self._freshness else None
        asked_at = time.time()
        fresh_after = self._fresh_after.get(ref) if at is None else None
        readings = await query_all(source, [*queries, refreshed] if refreshed else queries, at, fresh_after)
        if refreshed is not None and isinstance(sample := readings[refreshed], Value):
            # Several plans in one evaluation: the newest refresh among them.
            newest = max(sample.value, self._samples.get(ref, (sample.value, 0.0))[0])
            self._samples[ref] = (newest, asked_at)
        return {key: readings[query] for key, query in plan.items()}

    def need_fresh(self, ref: ObjectRef, after: float | None) -> None:
        """Make the object's next evaluation take no shared answer asked before the Unix time ``after``."""
        if after is None:
            self._fresh_after.pop(ref, None)
        else:
            self._fresh_after[ref] = after

    def take_sample(self, ref: ObjectRef) -> tuple[float, float] | None:
        """The newest sample time the object's last evaluation saw, and when it asked; then forgotten."""
        return self._samples.pop(ref, None)

    async def deployments(
        self, namespace: str, names: Mapping[str, str]
    ) -> dict[str, kube.DeploymentState | None]:
        """Read the Deployments ``names`` maps to (key -> Deployment name) at once; None where missing."""
        states = await asyncio.gather(
            *(self.blocking(kube.read_deployment, self.api, namespace, d) for d in names.values())
        )
        return dict(zip(names, states, strict=True))

    async def output_intact(self, key: Key, ref: ObjectRef, name: str, revision: int) -> bool:
        """Whether the object's ConfigMap still holds what was published: known from the watch, or, on the
        first evaluation after a start, from one read (the ConfigMap exists with the current revision)."""
        if self.outputs.current(key):
            return True
        if self.outputs.stale(key):
            return False
        try:
            existing = await self.blocking(kube.read_config_map, self.api, ref.namespace, name)
        except ApiException as exc:
            log.warning("%s/%s: reading ConfigMap %s: %s", ref.namespace, ref.name, name, exc.reason)
            return False
        if existing is None or existing.annotations.get(kube.REVISION_ANNOTATION) != str(revision):
            return False
        self.outputs.record(key, name, existing.data)
        return True

    async def secret_key(self, namespace: str, name: str, key: str) -> bytes:
        """One key of a Secret; :class:`OutputError` if the Secret lacks it."""
        secret = await self.blocking(kube.read_secret, self.api, namespace, name)
        if key not in secret:
            raise OutputError(f"key {key} not in Secret {name}", status=404)
        return secret[key]

    async def apply_config_map(
        self, key: Key, ref: ObjectRef, name: str, data: dict[str, str], revision: int
    ) -> None:
        """Server-side apply the object's ConfigMap, remembering what was applied for drift detection."""
        self.outputs.record(key, name, data)
        annotations = {kube.REVISION_ANNOTATION: str(revision)}
        try:
            await self.mutate(ref.namespace, kube.apply_config_map, self.api, ref, name, data, annotations)
        except BaseException:
            self.outputs.invalidate(key)
            raise

    async def annotate_deployment(self, namespace: str, name: str, checksum: str) -> bool:
        """Roll a Deployment by its config checksum annotation; False if it does not exist."""
        return await self.mutate(namespace, kube.annotate_deployment, self.api, namespace, name, checksum)

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> bool:
        """Set a Deployment's replicas; False if it does not exist."""
        return await self.mutate(namespace, kube.scale_deployment, self.api, namespace, name, replicas)

    async def write(self, ref: ObjectRef, what: str, action: Awaitable[None]) -> OutputError | None:
        """Run an output write; return what failed (for the Ready condition) instead of raising."""
        try:
            await action
        except ApiException as exc:
            error = OutputError(str(exc.reason), status=exc.status, what=what)
        except OutputError as exc:
            error = exc.about(what)
        else:
            return None
        log.warning(
            "%s/%s: %s", ref.namespace, ref.name, error, extra=about(ref.kind, ref.namespace, ref.name)
        )
        return error

    async def event(
        self, ref: ObjectRef, type_: Literal["Normal", "Warning"], reason: EventReason, message: str
    ) -> None:
        """Post an Event on the object; a failure is logged, never raised."""
        try:
            await self.mutate(
                ref.namespace, kube.post_event, self.api, ref, type_, str(reason), message, self.identity
            )
        except ApiException as exc:  # an Event is best effort; the status carries the same facts
            log.warning(
                "could not post %s event on %s/%s: %s",
                reason,
                ref.namespace,
                ref.name,
                exc.reason,
                extra=about(ref.kind, ref.namespace, ref.name),
            )

    async def write_status(self, ref: ObjectRef, status: dict[str, Any]) -> dict[str, Any]:
        """Replace the object's whole status (while leading); the object as the apiserver stored it."""
        return await self._status.write_status(ref, status, lambda: self.check_leader(ref.namespace))
