"""Snapshot sampling: one per object per interval, the id fixed by the interval; what a snapshot holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from detection_operator.core.identity import ObjectRef
from detection_operator.decide.snapshots import Snapshot
from detection_operator.store.snapshots import SnapshotSampler, interval_start, snapshot_record

REF = ObjectRef("ModelRoute", "shop", "scoring", "uid-1")
T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


def test_the_first_evaluation_of_each_interval_is_sampled() -> None:
    sampler = SnapshotSampler(timedelta(minutes=1))
    times = [T0 + timedelta(seconds=s) for s in (0, 5, 59, 60, 61, 185)]
    assert [sampler.due(REF, t) for t in times] == [True, False, False, True, False, True]
    other = ObjectRef("ModelRoute", "shop", "other")
    assert sampler.due(other, T0 + timedelta(seconds=5))
    sampler.forget(REF)
    assert sampler.due(REF, T0 + timedelta(seconds=190))


def test_a_zero_interval_samples_nothing() -> None:
    assert not SnapshotSampler(timedelta(0)).due(REF, T0)


def test_two_replicas_sampling_the_same_interval_make_the_same_id() -> None:
    snap = Snapshot(
        "primary", {"primary.score": 97.0, "primary.latency": float("nan")}, {}, {"model": "primary"}
    )
    interval = timedelta(minutes=1)
    a = snapshot_record(REF, snap, T0 + timedelta(seconds=2), interval, 3, "replica-a")
    b = snapshot_record(REF, snap, T0 + timedelta(seconds=41), interval, 3, "replica-b")
    c = snapshot_record(REF, snap, T0 + timedelta(seconds=61), interval, 3, "replica-b")
    assert a.id == b.id != c.id
    assert a.type == "snapshot" and a.to == "primary" and a.values == {"primary.score": 97.0}
    assert interval_start(T0 + timedelta(seconds=41), interval) == T0


def test_a_route_snapshot_holds_each_models_numbers_and_thresholds() -> None:
    from detection_operator.api.model_route import ModelRouteSpec
    from detection_operator.core.readings import Value
    from detection_operator.decide.route import RouteMemory, decide_route
    from detection_operator.decide.snapshots import snapshot_of

    spec = ModelRouteSpec.model_validate(
        {
            "models": [{"name": "primary"}, {"name": "backup"}],
            "metrics": [{"name": "accuracy", "query": 'acc{model="$model"}'}],
            "minRequests": 0,
        }
    )
    observation = {("model", m, "accuracy"): Value(0.95) for m in ("primary", "backup")}
    decision = decide_route(spec, observation, RouteMemory(), T0, None, {})
    snapshot = snapshot_of(decision)
    assert snapshot is not None and snapshot.to == "primary"
    assert snapshot.values["primary.accuracy"] == 0.95 and snapshot.values["primary.score"] is not None
    assert set(snapshot.thresholds) >= {"primary.accuracy.warning", "primary.accuracy.critical"}
    assert snapshot.details["model"] == "primary" and snapshot.details["traffic"]["primary"] > 0


def test_a_policy_snapshot_holds_each_rules_value_and_threshold() -> None:
    from detection_operator.api.detection_policy import DetectionPolicySpec
    from detection_operator.core.readings import Value
    from detection_operator.decide.policy import PolicyMemory, decide_policy
    from detection_operator.decide.snapshots import snapshot_of

    spec = DetectionPolicySpec.model_validate(
        {
            "defaultProfile": "balanced",
            "profiles": [
                {"name": "lean", "contributors": ["rules"]},
                {"name": "balanced", "contributors": ["rules"]},
            ],
            "rules": [
                {
                    "name": "latency",
                    "query": "lat",
                    "op": ">",
                    "threshold": 200,
                    "profile": "lean",
                    "reason": "slow",
                }
            ],
            "contributors": [{"name": "rules", "expense": "light"}],
        }
    )
    decision = decide_policy(spec, {("rule", "latency"): Value(120.0)}, PolicyMemory(), T0)
    snapshot = snapshot_of(decision)
    assert snapshot is not None
    assert (snapshot.to, snapshot.values, snapshot.thresholds) == (
        "balanced",
        {"latency": 120.0},
        {"latency": 200.0},
    )
    assert snapshot.details["profile"] == "balanced" and snapshot.details["activeRules"] == []
    assert snapshot_of(object()) is None
