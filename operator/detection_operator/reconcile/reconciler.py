"""One evaluation of one object: observe -> decide -> act -> notify -> record, written once.

This module sequences the steps and owns nothing but that; what differs by kind is a :class:`~.flow.Flow`,
found by kind in :data:`FLOWS`: its observe and act steps (through :class:`~.effects.Effects`) and the pure
parts between them (the decision from `decide`). The operator is the only writer of its objects' status,
so each evaluation writes the whole status, and the last written status is remembered to start the next one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from .. import telemetry
from ..act.outputs import AppliedOutputs
from ..api.common import AlertRecord, AlertSpec, ObjectStatus
from ..api.conditions import ConditionReason, ConditionType, EventReason
from ..api.kinds import by_plural
from ..api.validation import ValidatedSpecs, summary
from ..core.errors import NotLeader, OutputError
from ..core.identity import Key, ObjectRef
from ..core.logref import about
from ..core.times import duration
from ..decide.alerts import Alert, acknowledged_prefixes, plan_alerts
from ..notify.delivery import Notifier
from ..observe.connections import Connections
from ..record import conditions, status_writes
from ..record.status import fields as status_fields
from .context import Evaluation
from .effects import Effects
from .flow import Flow
from .policy_flow import PolicyFlow
from .route_flow import RouteFlow

log = logging.getLogger(__name__)

FLOWS: Mapping[str, Flow[Any, Any, Any, Any, Any]] = {flow.kind: flow for flow in (PolicyFlow(), RouteFlow())}
"""Kind name -> its flow."""


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
        may_write: Callable[[str], bool] = lambda _: True,
        status_refresh_seconds: float = 0.0,
    ) -> None:
        self.effects = Effects(api, connections, executor, identity, may_write)
        self.notifier = notifier
        self.series = telemetry.ObjectSeries()
        self._clock = clock
        self._written: dict[Key, tuple[str, dict[str, Any]]] = {}
        self._status_refresh = status_refresh_seconds
        self._persisted: dict[Key, tuple[str, dict[str, Any], float]] = {}
        """Per object: uid, settled status last written, and when (monotonic)."""
        self._decided_at: dict[Key, float] = {}
        self._specs = ValidatedSpecs()
        self.on_decided: Callable[[Key, float], None] | None = None
        """Called with ``time.perf_counter()`` when a decision is made; benchmarks time from it."""

    @property
    def outputs(self) -> AppliedOutputs:
        """What was applied to each owned ConfigMap (the ConfigMap watch reports drift to it)."""
        return self.effects.outputs

    def forget(self, key: Key) -> None:
        """Drop what is remembered about a deleted object, its metric series too."""
        self.series.forget(key)
        self.outputs.forget(key)
        self._decided_at.pop(key, None)
        self._specs.forget(key)
        self._persisted.pop(key, None)
        self._written.pop(key, None)
        self.notifier.outcomes.pop(ObjectRef(by_plural(key[0]).kind, key[1], key[2]), None)

    def reset(self, affected: Callable[[Key], bool] = lambda _: True) -> None:
        """Forget cached statuses and per-object series of the ``affected`` objects when they change hands
        (their bucket was gained or lost); the others' caches stay, so a move costs no extra writes.

        Another replica may have written since this one last did, so statuses are taken from the watch
        again; and only the owner exports per-object series, so dashboards see one value per object.
        """
        for cache in (self._written, self._persisted):
            for key in [key for key in cache if affected(key)]:
                del cache[key]
        self.series.clear(affected)

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
        ref = ObjectRef(kind.kind, meta["namespace"], meta["name"], meta["uid"])
        status = self._status(key, body)
        generation = meta.get("generation")
        model, errors = self._specs.validate(key, kind.spec, meta["uid"], generation, body.get("spec"))
        now = self._clock()
        if model is None:
            problems = summary(errors)
            previous = conditions.find(status.get("conditions"), ConditionType.INVALID_SPEC)
            if previous is None or previous.get("message") != problems:
                await self.effects.event(ref, "Warning", EventReason.INVALID_SPEC, problems)
            # The last good decision (status fields, ConfigMap) stays as it is: only conditions change.
            updates = conditions.spec_validity(problems, generation, now)
            fields = status_fields(ObjectStatus(observed_generation=generation))
            await self._record(key, ref, status, fields, updates)
            return "invalid"
        ev = Evaluation(key, ref, model, status, generation, meta.get("annotations") or {}, now)
        available = await self._run(FLOWS[kind.kind], ev)
        return "ok" if available else "metrics_unavailable"

    async def _run(self, flow: Flow[Any, Any, Any, Any, Any], ev: Evaluation[Any]) -> bool:
        """The skeleton; whether every needed metric answered."""
        fx = self.effects
        observation = await flow.observe(ev, fx)
        decision, pub = flow.decide(ev, observation)
        self._decided(ev.key)
        config_map = flow.config_map(ev)
        error: OutputError | None = None
        written = ev.status.get("configMap")
        if not ev.spec.dry_run:
            # Also re-applied when the ConfigMap was deleted or hand-edited (act/outputs.py).
            publish = (
                pub.changed
                or written != config_map
                or not await fx.output_intact(ev.key, ev.ref, config_map, pub.revision)
            )
            act = flow.act(ev, decision, pub, config_map, publish, fx)
            error = await fx.write(ev.ref, flow.output(config_map), act)
            written = config_map if error is None else written
            if error is None and publish:
                self._published(ev.key, ev.ref, config_map, pub.revision)
        memory = flow.memory(ev, decision, pub, error)
        for event in flow.events(ev, decision):
            await fx.event(ev.ref, event.type, event.reason, event.message)
        common = ObjectStatus(observed_generation=ev.generation, config_map=written)
        fields = {**status_fields(flow.status(ev, decision, memory)), **status_fields(common)}
        fields["memory"] = memory.model_dump(mode="json", by_alias=True, exclude_none=True)
        fields["alerts"], delivered = await self._alerts(ev, ev.spec.alerts, flow.alerts(ev, decision))
        await self._record(
            ev.key, ev.ref, ev.status, fields, [*flow.conditions(ev, decision, error), delivered]
        )
        for gauge, values in flow.series(ev, decision):
            self.series.publish(gauge, ev.key, values)
        if flow.switched(decision):
            self.series.switched(ev.ref.kind, ev.key)
        return bool(decision.metrics_available)

    def _decided(self, key: Key) -> None:
        """Mark the moment the decision of ``key``'s evaluation is known."""
        self._decided_at[key] = time.perf_counter()
        if self.on_decided is not None:
            self.on_decided(key, self._decided_at[key])

    def _published(self, key: Key, ref: ObjectRef, config_map: str, revision: int) -> None:
        """Account for the owned ConfigMap just applied: decision-to-patch time and one log line."""
        decided_at = self._decided_at.pop(key, None)
        if decided_at is not None:
            telemetry.DECISION_TO_PATCH.labels(ref.kind).observe(time.perf_counter() - decided_at)
        log.info(
            "applied ConfigMap %s revision %d",
            config_map,
            revision,
            extra=about(ref.kind, ref.namespace, ref.name, identity=self.effects.identity, write="configmap"),
        )

    async def _alerts(
        self, ev: Evaluation[Any], settings: AlertSpec, current: list[Alert]
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Plan and dispatch this evaluation's alerts; return the records for status and AlertsDelivered."""
        ref, now = ev.ref, ev.now
        records = []
        for raw in ev.status.get("alerts") or []:
            with contextlib.suppress(ValidationError):  # a damaged record is dropped, not fatal
                records.append(AlertRecord.model_validate(raw))
        cooldown = duration(settings.cooldown)
        plan = plan_alerts(ref, current, records, acknowledged_prefixes(ev.annotations), cooldown, now)
        # A notification is an action too: never sent by a replica without the Lease.
        self.effects.check_leader(ref.namespace)
        self.notifier.dispatch(ref, list(settings.receivers), plan.outgoing, cooldown, now)
        for item in plan.transitions:
            firing = item.status == "firing"
            reason = EventReason.ALERT_FIRING if firing else EventReason.ALERT_RESOLVED
            message = f"[{item.alert.severity}] {item.alert.summary} (fingerprint {item.fingerprint})"
            await self.effects.event(ref, "Warning" if firing else "Normal", reason, message)
        failures = self.notifier.outcomes.get(ref)
        failed = failures.failures if failures else {}
        delivered = conditions.condition(
            ConditionType.ALERTS_DELIVERED,
            not failed,
            ConditionReason.DELIVERY_FAILED if failed else ConditionReason.DELIVERED,
            "; ".join(
                f"receiver {name}: {error} ({self.notifier.failed_count(name)} failed deliveries so far)"
                for name, error in sorted(failed.items())
            ),
            ev.generation,
            now,
        )
        dumped = [r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in plan.records]
        return dumped, delivered

    async def _record(
        self,
        key: Key,
        ref: ObjectRef,
        status: Mapping[str, Any],
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
        sent = time.time()
        try:
            result = await self.effects.write_status(ref, new_status)
        except ApiException as exc:
            if exc.status != 404:
                raise
            # Deleted while it was being evaluated: nothing to record. What this evaluation remembered is
            # forgotten by the scheduler once the deletion is seen and the evaluation has ended.
            log.debug("%s/%s was deleted during its evaluation", ref.namespace, ref.name)
            return
        self._written[key] = (ref.uid, dict(result.get("status") or new_status))
        # One line per write, with who wrote: replicas' logs together show that no object had two writers.
        log.debug(
            "wrote status",
            extra=about(
                ref.kind, ref.namespace, ref.name, identity=self.effects.identity, write="status", sent=sent
            ),
        )
        self._persisted[key] = (ref.uid, status_writes.settled(new_status), time.monotonic())
