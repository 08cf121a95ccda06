"""Audit records from real decisions, and the outbox bookkeeping: sent, retried, bounded, dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from detection_operator.api.records import OUTBOX_LIMIT, RECENT_RECORDS, AuditRecord, Outbox, SinkResult
from detection_operator.core.identity import ObjectRef
from detection_operator.decide.alerts import Alert, plan_alerts
from detection_operator.record import outbox
from detection_operator.record.audit import Origin, alert_records, policy_records, record_event, route_records

from . import test_decide_policy as dp
from . import test_decide_route as mr

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
ROUTE = ObjectRef("ModelRoute", "prod", "classifier", uid="u-1")
POLICY = ObjectRef("DetectionPolicy", "prod", "detector", uid="u-2")
COOLDOWN = timedelta(minutes=15)


def test_a_profile_switch_carries_every_rule_value_threshold_and_who_decided() -> None:
    spec = dp.make_spec(minDwell="0s")
    run = dp.Run(spec)
    run.step(dp.CALM)
    run.step(dp.obs(latency=300, surge=0.05))
    decision = run.step(dp.obs(latency=300, surge=0.05))
    assert decision.switched and decision.profile == "lean"
    (record,) = policy_records(Origin(POLICY, 4, "op-0", run.now), spec, decision)
    assert (record.type, record.from_, record.to, record.generation, record.operator) == (
        "profile-switch",
        "balanced",
        "lean",
        4,
        "op-0",
    )
    assert record.values == {"latency": 300, "surge": 0.05}
    assert record.thresholds == {"latency": 200, "surge": 0.2}
    assert record.details["activeRules"] == ["latency"] and "high latency" in record.reason
    assert policy_records(Origin(POLICY, 4, "op-0", run.now), spec, run.step(dp.obs(latency=300))) == []


def test_failover_and_refused_failover_are_records_with_the_models_numbers() -> None:
    run, origin = mr.Run(), lambda: Origin(ROUTE, 2, "op-0", run.now)
    decisions = [run.step(mr.obs(primary=mr.CRITICAL)) for _ in range(2)]
    switch = route_records(origin(), mr.SPEC, decisions[-1], "Primary", was_degraded=False)
    assert [(r.type, r.from_, r.to) for r in switch] == [("model-switch", "primary", "backup1")]
    assert (
        switch[0].values["primary.accuracy"] == 0.6
        and switch[0].thresholds["primary.accuracy.critical"] == 0.75
    )
    every = {m: mr.CRITICAL for m in mr.MODELS}
    refused = [run.step(mr.obs(**every)) for _ in range(2)][-1]
    assert refused.no_healthy_backup
    (record,) = route_records(origin(), mr.SPEC, refused, "FailedOver", was_degraded=False)
    assert (record.type, record.details["cause"]) == ("failover-refused", "no-healthy-backup")
    assert record.thresholds["maxFailoversPerHour"] == 3
    assert (
        route_records(origin(), mr.SPEC, refused, "Degraded", was_degraded=True) == []
    )  # once, not each time


def test_override_set_and_cleared() -> None:
    until = T0 + timedelta(minutes=2)
    spec = mr.make_spec(override={"model": "backup2", "until": until.isoformat(), "reason": "canary"})
    run = mr.Run(spec, interval=60)
    pinned = run.step(mr.obs())
    (record,) = route_records(Origin(ROUTE, 1, "op", T0), spec, pinned, None, False)
    assert (record.type, record.to, record.details["until"]) == (
        "override-set",
        "backup2",
        "2026-01-01T12:02:00Z",
    )
    run.step(mr.obs())
    cleared = run.step(mr.obs())
    (record,) = route_records(Origin(ROUTE, 1, "op", run.now), spec, cleared, "Overridden", False)
    # The pin ends; the route stays where it is until the primary proves itself (a rollback then).
    assert (record.type, record.from_, record.to) == ("override-cleared", "backup2", cleared.active)


def alert_lifecycle() -> list[AuditRecord]:
    latency = Alert("latency", "warning", "m1/latencyP95Ms", "p95 high", value=3000, threshold=2000)
    worse = Alert("latency", "critical", "m1/latencyP95Ms", "p95 very high", value=9000, threshold=5000)
    steps = [
        ([latency], set()),
        ([latency], set()),
        ([worse], set()),
        ([worse], {latency.fingerprint(ROUTE)[:6]}),
        ([], set()),
    ]
    found, previous, now = [], (), T0
    for alerts, acks in steps:
        plan = plan_alerts(ROUTE, alerts, previous, acks, COOLDOWN, now)
        found += alert_records(Origin(ROUTE, 1, "op", now), plan, previous, "15m")
        previous, now = plan.records, now + COOLDOWN
    return found


def test_alert_records_follow_the_lifecycle() -> None:
    records = alert_lifecycle()
    assert [r.type for r in records] == [
        "alert-fired",
        "alert-repeated",
        "alert-escalated",
        "alert-acknowledged",
        "alert-resolved",
    ]
    assert records[2].from_ == "warning" and records[2].to == "critical"
    assert records[2].values == {"value": 9000} and records[2].thresholds == {"threshold": 5000}
    assert len({r.id for r in records}) == len(records)


def sinks_of(record: AuditRecord) -> list[str]:
    return ["hook", "store"] if record.type.startswith("alert-") else ["store"]


def test_records_wait_per_sink_retry_with_backoff_and_leave_once_taken() -> None:
    records = alert_lifecycle()[:2]
    box = outbox.enqueue(Outbox(), records, sinks_of)
    assert outbox.enqueue(box, records, sinks_of) == box  # the same ids are not added twice
    assert {s: [r.id for r in b] for s, b in outbox.due(box, T0).items()} == {
        "hook": [r.id for r in records],
        "store": [r.id for r in records],
    }
    ids = tuple(r.id for r in records)
    box = outbox.settle(box, {"store": SinkResult(ids, None, T0), "hook": SinkResult((), "HTTP 503", T0)})
    assert outbox.due(box, T0 + timedelta(seconds=9)) == {}  # backing off
    assert set(outbox.due(box, T0 + timedelta(seconds=10))) == {"hook"}
    assert outbox.due(box, T0 + timedelta(seconds=10), busy={"hook"}) == {}
    box = outbox.settle(box, {"hook": SinkResult((), "HTTP 503", T0)})
    assert box.pending[0].attempts == 2 and box.pending[0].next_attempt_at == T0 + timedelta(seconds=20)
    ok, message = outbox.report(box, ["hook"], "receiver")
    assert not ok and message == "receiver hook: HTTP 503 (2 record(s) waiting, failed round 2)"
    box = outbox.settle(box, {"hook": SinkResult(ids, None, T0)})
    assert box.pending == [] and outbox.report(box) == (True, "")
    assert [r.id for r in outbox.bound(box, T0, {"hook", "store"}).records] == list(ids)  # kept as history


def test_bounds_drop_oldest_first_and_count_it() -> None:
    def record(i: int) -> AuditRecord:
        origin = Origin(ROUTE, 1, "op", T0 + timedelta(seconds=i))
        return origin.record("rollback", reason=str(i))

    many = [record(i) for i in range(OUTBOX_LIMIT + 5)]
    box = outbox.bound(
        outbox.enqueue(Outbox(), many, lambda r: ["hook"]), T0 + timedelta(minutes=5), {"hook"}
    )
    assert len(box.records) == OUTBOX_LIMIT and box.records[0].reason == "5"
    assert box.dropped == 5 and box.pending[0].dropped == 5 and box.pending[0].ids[0] == many[5].id
    late = T0 + timedelta(days=1, seconds=50)  # records 0..49 are older than a day: dropped for the hook
    aged = outbox.bound(box, late, {"hook"})
    assert aged.dropped == 5 + 45 and len(aged.pending[0].ids) == OUTBOX_LIMIT + 5 - 50
    assert len(aged.records) == len(aged.pending[0].ids) + RECENT_RECORDS
    gone = outbox.bound(box, T0, {"store"})  # the hook is no longer configured: what it owed is dropped
    assert gone.pending == [] and gone.dropped == 5 + OUTBOX_LIMIT
    ok, message = outbox.report(gone)
    assert ok and message.startswith(f"{5 + OUTBOX_LIMIT} deliveries dropped undelivered so far")
    assert [r.id for r in gone.records] == [r.id for r in many[-RECENT_RECORDS:]]


def test_records_with_an_event_and_those_without() -> None:
    origin = Origin(ROUTE, 1, "op", T0)
    switch = origin.record("model-switch", from_="m1", to="m2", reason="m1 critical")
    assert record_event(switch) == ("Warning", "ModelSwitched", "Switched from m1 to m2: m1 critical")
    refused = origin.record("failover-refused", reason="no backup", details={"cause": "failover-cap"})
    assert record_event(refused) == ("Warning", "FailoverCapReached", "no backup")
    fired, repeated, _, acked, resolved = alert_lifecycle()
    assert record_event(fired) == (
        "Warning",
        "AlertFiring",
        f"[warning] p95 high (fingerprint {fired.details['fingerprint']})",
    )
    assert record_event(resolved) is not None and record_event(resolved)[1] == "AlertResolved"  # type: ignore[index]
    assert record_event(repeated) is None and record_event(acked) is None
    pinned_in_place = origin.record("override-set", from_="m1", to="m1")
    assert record_event(pinned_in_place) is None
