"""One evaluation of one object: observe -> decide -> act -> notify -> record, written once.

This module sequences the steps and owns nothing but that; what differs by kind is a :class:`~.flow.Flow`,
found by kind in :data:`FLOWS`: its observe and act steps (through :class:`~.effects.Effects`) and the pure
parts between them (the decision from `decide`). The operator is the only writer of its objects' status,
so each evaluation writes the whole status, and the last written status is remembered to start the next one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .. import telemetry
from ..act.outputs import AppliedOutputs
from ..api.common import AlertRecord, AlertSpec, ObjectStatus
from ..api.conditions import ConditionReason, ConditionType, EventReason
from ..api.kinds import by_plural
from ..api.records import AuditRecord, Outbox
from ..api.validation import ValidatedSpecs, summary
from ..core.errors import NotLeader, OutputError
from ..core.identity import Key, ObjectRef
from ..core.logref import about
from ..core.times import duration
from ..decide.alerts import Alert, acknowledged_prefixes, plan_alerts
from ..notify.delivery import Deliverer
from ..observe.connections import Connections
from ..record import conditions, outbox, status_writes
from ..record.audit import Origin, alert_records
from ..record.status import entries
from ..record.status import fields as status_fields
from .context import Evaluation
from .effects import Effects
from .events import RecordEvents
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
        notifier: Deliverer,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        identity: str = "detection-operator",
        may_write: Callable[[str], bool] = lambda _: True,
        status_refresh_seconds: float = 0.0,
        scrape_alignment: bool = True,
    ) -> None:
        self.effects = Effects(api, connections, executor, identity, may_write, freshness=scrape_alignment)
        self.notifier = notifier
        notifier.add(RecordEvents(self.effects))
        self.series = telemetry.ObjectSeries()
        self._clock = clock
        self._written: dict[Key, tuple[str, dict[str, Any]]] = {}
        self._status_refresh = status_refresh_seconds
        self._persisted: dict[Key, tuple[str, bytes, float]] = {}
        """Per object: uid, the fingerprint of the status last written, and when (monotonic)."""
        self._decided_at: dict[Key, float] = {}
        self._specs = ValidatedSpecs()
        self.on_decided: Callable[[Key, float], None] | None = None
        """Called with ``time.perf_counter()`` when a decision is made; benchmarks time from it."""
        self.on_evaluated: Callable[[ObjectRef, datetime, int | None, object], None] | None = None
        """Called with (object, time, generation, decision) after each evaluation's status write."""

    @property
    def outputs(self) -> AppliedOutputs:
        """What was applied to each owned ConfigMap (the ConfigMap watch reports drift to it)."""
        return self.effects.outputs

    async def aclose(self) -> None:
        """Close the clients opened on the event loop (at shutdown)."""
        await self.effects.aclose()

    def need_fresh(self, key: Key, after: float | None) -> None:
        """The object's next evaluation is due right after a refresh at about ``after`` (Unix time): it
        must read answers asked since (None: any answer the coalescing window allows)."""
        self.effects.need_fresh(_ref(key), after)

    def take_sample(self, key: Key) -> tuple[float, float] | None:
        """When the data the object's last evaluation read was refreshed, and when it asked (Unix times)."""
        return self.effects.take_sample(_ref(key))

    def forget(self, key: Key) -> None:
        """Drop what is remembered about a deleted object, its metric series too."""
        self.series.forget(key)
        self.outputs.forget(key)
        self._decided_at.pop(key, None)
        self._specs.forget(key)
        self._persisted.pop(key, None)
        self._written.pop(key, None)
        self.effects.take_sample(_ref(key))
        self.effects.need_fresh(_ref(key), None)
        self.notifier.forget(_ref(key))

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
        # The scheduler keeps a watched status as its JSON text (runtime/handlers.py, track).
        status = body.get("status")
        return json.loads(status) if isinstance(status, str) else dict(status or {})

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
        common = ObjectStatus(observed_generation=ev.generation, config_map=written)
        fields = {**status_fields(flow.status(ev, decision, memory)), **status_fields(common)}
        fields["memory"] = memory.model_dump(mode="json", by_alias=True, exclude_none=True)
        origin = Origin(ev.ref, ev.generation, fx.identity, ev.now)
        current = flow.alerts(ev, decision)
        fields["alerts"], alert_records = self._alerts(ev, ev.spec.alerts, current, origin)
        box, delivered = self._outbox(ev, [*flow.records(ev, decision, origin), *alert_records])
        fields["outbox"] = outbox.dump(box)
        written_ok = await self._record(
            ev.key, ev.ref, ev.status, fields, [*flow.conditions(ev, decision, error), *delivered]
        )
        if written_ok:
            # Only now: what the status holds survives a kill, so nothing sent below can be lost or, once
            # settled, sent again; a kill before the write posts nothing (the next evaluation decides again).
            for event in flow.events(ev, decision):
                await fx.event(ev.ref, event.type, event.reason, event.message)
            self._deliver(ev.ref, box, ev.now)
            if self.on_evaluated is not None:
                self.on_evaluated(ev.ref, ev.now, ev.generation, decision)
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

    def _alerts(
        self, ev: Evaluation[Any], settings: AlertSpec, current: list[Alert], origin: Origin
    ) -> tuple[list[dict[str, Any]], list[AuditRecord]]:
        """Plan this evaluation's alerts: the alert list for status and the records of what is sent."""
        records = entries(ev.status.get("alerts"), AlertRecord)
        acks = acknowledged_prefixes(ev.annotations)
        plan = plan_alerts(ev.ref, current, records, acks, duration(settings.cooldown), ev.now)
        dumped = [r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in plan.records]
        return dumped, alert_records(origin, plan, records, settings.cooldown)

    def _outbox(self, ev: Evaluation[Any], records: list[AuditRecord]) -> tuple[Outbox, list[dict[str, Any]]]:
        """The outbox after this evaluation (outcomes settled, records added, bounds applied) and the
        AlertsDelivered and RecordsDelivered conditions it makes."""
        deliverer, receivers = self.notifier, list(ev.spec.alerts.receivers)
        box = outbox.settle(outbox.load(ev.status.get("outbox")), deliverer.take(ev.ref))
        box = outbox.enqueue(box, records, deliverer.sinks_of(receivers))
        box = outbox.bound(box, ev.now, deliverer.sinks)
        alerts_ok, alerts_message = outbox.report(box, receivers, "receiver")
        missing = [n for n in receivers if n not in deliverer.receivers]
        if missing:
            alerts_ok = False
            unknown = "; ".join(f"receiver {n}: no such receiver in the operator's settings" for n in missing)
            alerts_message = "; ".join(m for m in (unknown, alerts_message) if m)
        records_ok, records_message = outbox.report(box)

        def cond(type_: ConditionType, ok: bool, message: str) -> dict[str, Any]:
            reason = ConditionReason.DELIVERED if ok else ConditionReason.DELIVERY_FAILED
            return conditions.condition(type_, ok, reason, message, ev.generation, ev.now)

        return box, [
            cond(ConditionType.ALERTS_DELIVERED, alerts_ok, alerts_message),
            cond(ConditionType.RECORDS_DELIVERED, records_ok, records_message),
        ]

    def _deliver(self, ref: ObjectRef, box: Outbox, now: datetime) -> None:
        """Start the delivery rounds that are due (a notification is an action too: only a leader sends)."""
        self.effects.check_leader(ref.namespace)
        self.notifier.start(ref, outbox.due(box, now, self.notifier.busy(ref)))

    async def _record(
        self,
        key: Key,
        ref: ObjectRef,
        status: Mapping[str, Any],
        fields: dict[str, Any],
        updates: list[dict[str, Any]],
    ) -> bool:
        """Write the whole status (old fields, then ``fields``, conditions merged) and remember it; whether
        the status now stands written (False: the object was deleted meanwhile)."""
        # Absent rather than null: the CRD schema declares no nullable fields.
        new_status = {k: v for k, v in {**status, **fields}.items() if v is not None}
        new_status["conditions"] = conditions.merge(status.get("conditions"), updates)
        persisted = self._persisted.get(key)
        previous, age = None, 0.0
        if persisted is not None and persisted[0] == ref.uid:
            previous, age = persisted[1], time.monotonic() - persisted[2]
        fingerprint = status_writes.fingerprint(new_status)
        if not status_writes.must_write(previous, fingerprint, age, self._status_refresh):
            self._written[key] = (ref.uid, new_status)  # the next evaluation starts from the newest
            return True
        sent = time.time()
        try:
            result = await self.effects.write_status(ref, new_status)
        except ApiException as exc:
            if exc.status != 404:
                raise
            # Deleted while it was being evaluated: nothing to record. What this evaluation remembered is
            # forgotten by the scheduler once the deletion is seen and the evaluation has ended.
            log.debug("%s/%s was deleted during its evaluation", ref.namespace, ref.name)
            return False
        self._written[key] = (ref.uid, dict(result.get("status") or new_status))
        # One line per write, with who wrote: replicas' logs together show that no object had two writers.
        log.debug(
            "wrote status",
            extra=about(
                ref.kind, ref.namespace, ref.name, identity=self.effects.identity, write="status", sent=sent
            ),
        )
        self._persisted[key] = (ref.uid, fingerprint, time.monotonic())
        return True


def _ref(key: Key) -> ObjectRef:
    return ObjectRef(by_plural(key[0]).kind, key[1], key[2])
