"""One evaluation of one object: observe -> decide -> act -> notify -> record.

This module sequences the steps and owns nothing but that: queries come from `metrics`, the decision from
`decide` (pure), writes from `act`. The operator is the only writer of its objects' status, so each
evaluation writes the whole status, and the last written status is remembered to start the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from ..act import kube
from ..act.outputs import AppliedOutputs
from ..api.base import parse_duration
from ..api.common import AlertRecord, AlertSpec, PrometheusRef
from ..api.detection_policy import DetectionPolicySpec
from ..api.kinds import by_plural
from ..api.model_route import ModelRouteSpec
from ..api.validation import ValidatedSpecs, summary
from ..decide.alerts import Alert, ObjectKey, acknowledged_prefixes, plan_alerts
from ..notify.delivery import Notifier
from ..observe.connections import Connections, InvalidConnection
from ..observe.source import Missing, Reading, query_all
from ..record import conditions, status_writes
from ..runtime import telemetry
from ..runtime.election import NotLeader
from ..runtime.logref import about
from ..runtime.scheduler import Key
from .policy_flow import evaluate_policy
from .route_flow import evaluate_route

log = logging.getLogger(__name__)

ALERTS_DELIVERED = "AlertsDelivered"

T = TypeVar("T")
K = TypeVar("K")


class Reconciler:
    """Evaluates objects on behalf of the scheduler."""

    def __init__(
        self,
        api: client.ApiClient,
        connections: Connections,
        executor: Executor,
        notifier: Notifier,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        identity: str = "detection-operator",
        may_write: Callable[[], bool] = lambda: True,
        status_refresh_seconds: float = 0.0,
    ) -> None:
        self.api = api
        self.notifier = notifier
        self.identity = identity
        """This replica's name, in Events (reportingInstance) and in logs of writes."""
        self.series = telemetry.ObjectSeries()
        self._may_write = may_write
        self._connections = connections
        self._executor = executor
        self._clock = clock
        self._written: dict[Key, tuple[str, dict[str, Any]]] = {}
        self._status_refresh = status_refresh_seconds
        self._persisted: dict[Key, tuple[str, dict[str, Any], float]] = {}
        """Per object: uid, settled status last written, and when (monotonic)."""
        self._decided_at: dict[Key, float] = {}
        self._specs = ValidatedSpecs()
        self.outputs = AppliedOutputs()
        self.on_decided: Callable[[Key, float], None] | None = None
        """Called with ``time.perf_counter()`` when a decision is made; benchmarks time from it."""

    def decided(self, key: Key) -> None:
        """Mark the moment the decision of ``key``'s evaluation is known."""
        self._decided_at[key] = time.perf_counter()
        if self.on_decided is not None:
            self.on_decided(key, self._decided_at[key])

    def published(self, key: Key, ref: kube.ObjectRef, config_map: str, revision: int) -> None:
        """Account for the owned ConfigMap just applied: decision-to-patch time and one log line."""
        decided_at = self._decided_at.pop(key, None)
        if decided_at is not None:
            telemetry.DECISION_TO_PATCH.labels(ref.kind).observe(time.perf_counter() - decided_at)
        log.info(
            "applied ConfigMap %s revision %d",
            config_map,
            revision,
            extra=about(ref.kind, ref.namespace, ref.name, identity=self.identity, write="configmap"),
        )

    def forget(self, key: Key) -> None:
        """Drop what is remembered about a deleted object, its metric series too."""
        self.series.forget(key)
        self.outputs.forget(key)
        self._decided_at.pop(key, None)
        self._specs.forget(key)
        self._persisted.pop(key, None)
        self._written.pop(key, None)
        self.notifier.outcomes.pop(ObjectKey(by_plural(key[0]).kind, key[1], key[2]), None)

    def reset(self) -> None:
        """Forget cached statuses and per-object series when leadership changes hands.

        Another replica may have written since this one last did, so statuses are taken from the watch
        again; and only the leader exports per-object series, so dashboards see one value per object.
        """
        self._written.clear()
        self._persisted.clear()
        self.series.clear()

    def check_leader(self) -> None:
        """Raise :class:`NotLeader` unless this replica may write now (checked right before each write)."""
        if not self._may_write():
            raise NotLeader()

    async def mutate(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking write in the worker pool, only while this replica leads."""

        def guarded() -> T:
            # Checked again in the worker, right before the request: a replica paused (or starved) while
            # the call waited for a thread must not write once it wakes up without the Lease.
            self.check_leader()
            return fn(*args)

        self.check_leader()
        return await self.blocking(guarded)

    async def blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking call (Kubernetes client, Secret reads) in the worker pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def _status(self, key: Key, body: Mapping[str, Any]) -> dict[str, Any]:
        uid = body["metadata"]["uid"]
        written = self._written.get(key)
        if written is not None and written[0] == uid:
            return written[1]
        return dict(body.get("status") or {})

    async def __call__(self, key: Key, body: Mapping[str, Any]) -> None:
        """Evaluate one object now, counted and timed by kind and result."""
        kind = by_plural(key[0]).kind
        started = time.perf_counter()
        result = "error"
        try:
            result = await self._evaluate(key, body)
        except NotLeader:
            result = ""
            raise
        finally:
            if result:
                telemetry.EVALUATIONS.labels(kind, result).inc()
                telemetry.EVALUATION_DURATION.labels(kind).observe(time.perf_counter() - started)

    async def _evaluate(self, key: Key, body: Mapping[str, Any]) -> str:
        kind = by_plural(key[0])
        meta = body["metadata"]
        ref = kube.ObjectRef(kind.kind, kind.plural, meta["namespace"], meta["name"], meta["uid"])
        status = self._status(key, body)
        generation = meta.get("generation")
        model, errors = self._specs.validate(key, kind.spec, meta["uid"], generation, body.get("spec"))
        now = self._clock()
        if model is None:
            problems = summary(errors)
            previous = conditions.find(status.get("conditions"), conditions.INVALID_SPEC)
            if previous is None or previous.get("message") != problems:
                await self.event(ref, "Warning", conditions.INVALID_SPEC, problems)
            # The last good decision (status fields, ConfigMap) stays as it is: only conditions change.
            updates = conditions.spec_validity(problems, generation, now)
            await self.record(key, ref, status, {"observedGeneration": generation}, updates)
            return "invalid"
        annotations = meta.get("annotations")
        if isinstance(model, DetectionPolicySpec):
            available = await evaluate_policy(self, key, ref, annotations, model, status, generation, now)
        elif isinstance(model, ModelRouteSpec):
            available = await evaluate_route(self, key, ref, annotations, model, status, generation, now)
        else:
            raise TypeError(f"no evaluation for {type(model).__name__}")
        return "ok" if available else "metrics_unavailable"

    async def observe(
        self,
        ref: kube.ObjectRef,
        prometheus: PrometheusRef | None,
        plan: Mapping[K, str],
        at: float | None = None,
    ) -> dict[K, Reading]:
        """Run a query plan (now, or at Unix time ``at``); a broken connection makes every reading missing."""
        try:
            # Known connections skip the thread hop, as answers at hand do in query_all.
            source = self._connections.at_hand(ref.namespace, prometheus)
            if source is None:
                source = await self.blocking(self._connections.for_object, ref.namespace, prometheus)
        except (InvalidConnection, ApiException) as exc:
            # A broken connection is missing metrics like any other: the fail-safe applies.
            detail = str(exc) if isinstance(exc, InvalidConnection) else f"Prometheus Secret: {exc.reason}"
            return {key: Missing("error", detail) for key in plan}
        readings = await query_all(source, list(plan.values()), self._executor, at)
        return {key: readings[query] for key, query in plan.items()}

    async def output_intact(self, key: Key, ref: kube.ObjectRef, name: str, revision: int) -> bool:
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

    async def apply_config_map(
        self, key: Key, ref: kube.ObjectRef, name: str, data: dict[str, str], annotations: dict[str, str]
    ) -> None:
        """Server-side apply the object's ConfigMap, remembering what was applied for drift detection."""
        self.outputs.record(key, name, data)
        try:
            await self.mutate(kube.apply_config_map, self.api, ref, name, data, annotations)
        except BaseException:
            self.outputs.invalidate(key)
            raise

    async def write(self, ref: kube.ObjectRef, what: str, action: Awaitable[None]) -> str | None:
        """Run an output write; return what failed (for the Ready condition) instead of raising."""
        try:
            await action
        except ApiException as exc:
            error = f"writing {what}: {exc.status} {exc.reason}"
            log.warning(
                "%s/%s: %s", ref.namespace, ref.name, error, extra=about(ref.kind, ref.namespace, ref.name)
            )
            return error
        return None

    async def alerts(
        self,
        ref: kube.ObjectRef,
        annotations: Mapping[str, str] | None,
        settings: AlertSpec,
        current: list[Alert],
        status: Mapping[str, Any],
        generation: int | None,
        now: datetime,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Plan and dispatch this evaluation's alerts; return the records for status and AlertsDelivered."""
        obj = ObjectKey(ref.kind, ref.namespace, ref.name)
        records = []
        for raw in status.get("alerts") or []:
            with contextlib.suppress(ValidationError):  # a damaged record is dropped, not fatal
                records.append(AlertRecord.model_validate(raw))
        cooldown = timedelta(seconds=parse_duration(settings.cooldown))
        plan = plan_alerts(obj, current, records, acknowledged_prefixes(annotations), cooldown, now)
        self.check_leader()  # a notification is an action too: never sent by a replica that lost the Lease
        self.notifier.dispatch(obj, list(settings.receivers), plan.outgoing, cooldown, now)
        for item in plan.transitions:
            firing = item.status == "firing"
            reason = "AlertFiring" if firing else "AlertResolved"
            message = f"[{item.alert.severity}] {item.alert.summary} (fingerprint {item.fingerprint})"
            await self.event(ref, "Warning" if firing else "Normal", reason, message)
        failures = self.notifier.outcomes.get(obj)
        failed = failures.failures if failures else {}
        delivered = conditions.condition(
            ALERTS_DELIVERED,
            not failed,
            "DeliveryFailed" if failed else "Delivered",
            "; ".join(
                f"receiver {name}: {error} ({self.notifier.failed_count(name)} failed deliveries so far)"
                for name, error in sorted(failed.items())
            ),
            generation,
            now,
        )
        dumped = [r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in plan.records]
        return dumped, delivered

    async def event(self, ref: kube.ObjectRef, type_: str, reason: str, message: str) -> None:
        """Post an Event on the object; a failure is logged, never raised."""
        try:
            await self.mutate(kube.post_event, self.api, ref, type_, reason, message, self.identity)
        except ApiException as exc:  # an Event is best effort; the status carries the same facts
            log.warning(
                "could not post %s event on %s/%s: %s",
                reason,
                ref.namespace,
                ref.name,
                exc.reason,
                extra=about(ref.kind, ref.namespace, ref.name),
            )

    async def record(
        self,
        key: Key,
        ref: kube.ObjectRef,
        status: dict[str, Any],
        fields: dict[str, Any],
        updates: list[dict[str, Any]],
    ) -> None:
        """Write the whole status (old fields, then ``fields``, conditions merged) and remember it."""
        # Absent rather than null: the CRD schema declares no nullable fields.
        new_status = {k: v for k, v in {**status, **fields}.items() if v is not None}
        new_status["conditions"] = conditions.merge(status.get("conditions"), updates)
        persisted = self._persisted.get(key)
        previous, age = None, 0.0
        if persisted is not None and persisted[0] == ref.uid:
            previous, age = persisted[1], time.monotonic() - persisted[2]
        if not status_writes.must_write(previous, new_status, age, self._status_refresh):
            self._written[key] = (ref.uid, new_status)  # the next evaluation starts from the newest
            return
        try:
            result = await self.mutate(kube.write_status, self.api, ref, new_status)
        except ApiException as exc:
            if exc.status != 404:
                raise
            # Deleted while it was being evaluated: nothing to record. What this evaluation remembered is
            # forgotten by the scheduler once the deletion is seen and the evaluation has ended.
            log.debug("%s/%s was deleted during its evaluation", ref.namespace, ref.name)
            return
        self._written[key] = (ref.uid, dict(result.get("status") or new_status))
        self._persisted[key] = (ref.uid, status_writes.settled(new_status), time.monotonic())
