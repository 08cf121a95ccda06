"""The ModelRoute decision in a closed loop: idle, failing and unknown models, the trickle, evidence-based
rollback with escalating probation, traffic and fallbacks in the decision, alerts that need a streak."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from detection_operator.api.model_route import DEFAULT_ALERT_THRESHOLDS, ModelRouteSpec
from detection_operator.core.identity import ObjectRef
from detection_operator.core.readings import Missing, Reading, Value
from detection_operator.decide.alerts import route_alerts
from detection_operator.decide.route import (
    SETTLE_INTERVALS,
    RouteDecision,
    RouteKey,
    RouteMemory,
    TrafficSpan,
    routed_since,
    traffic_sent,
)

from .test_decide_route import HEALTHY, MODELS, T0, WARNING, Run, make_spec

OBJ = ObjectRef("ModelRoute", "prod", "classifier")
GONE: dict[str, Reading] = {m: Missing("empty") for m in HEALTHY}
FAILED: dict[str, Reading] = {**{m: Value(v) for m, v in HEALTHY.items()}, "successRate": Value(0.2)}


def world(**models: dict[str, Any]) -> dict[RouteKey, Reading]:
    """The closed loop: a model not named served nothing (every query answers empty)."""
    result: dict[RouteKey, Reading] = {}
    for model in MODELS:
        values = models.get(model, GONE)
        for metric in HEALTHY:
            value = values.get(metric, Missing("empty"))
            result[("model", model, metric)] = value if isinstance(value, (Value, Missing)) else Value(value)
    return result


def serving(model: str, **extra: dict[str, Any]) -> dict[RouteKey, Reading]:
    return world(**{model: HEALTHY, **extra})


def start_on_primary(run: Run) -> RouteDecision:
    decision = run.step(serving("primary"))
    assert decision.traffic == {"primary": 100}
    for _ in range(SETTLE_INTERVALS):
        decision = run.step(serving("primary"))
    return decision


def test_idle_backups_are_idle_raise_nothing_and_stay_fallbacks() -> None:
    run = Run()
    for _ in range(10):
        decision = run.step(serving("primary"))
    assert [m.state for m in decision.models] == ["healthy", "idle", "idle"]
    assert decision.metrics_available and decision.active == "primary"
    assert decision.fallbacks == ("backup1", "backup2")
    assert route_alerts(run.spec, decision, OBJ) == []


def test_traffic_was_sent_boundaries() -> None:
    spec = make_spec()  # interval 30s
    settle = timedelta(seconds=30 * SETTLE_INTERVALS)
    memory = RouteMemory(traffic=[TrafficSpan(since=T0, traffic={"primary": 95, "backup1": 5})])
    assert not traffic_sent(spec, memory, "backup1", None, T0 + settle - timedelta(seconds=1))
    assert traffic_sent(spec, memory, "backup1", None, T0 + settle)
    assert not traffic_sent(spec, memory, "backup2", None, T0 + settle * 10)  # never given a share
    assert traffic_sent(spec, memory, "backup2", 1, T0)  # it reported requests: it was sent some
    assert not traffic_sent(spec, memory, "backup2", 0, T0)
    # A break in its share restarts the settle time.
    broken = RouteMemory(
        traffic=[
            TrafficSpan(since=T0, traffic={"backup1": 100}),
            TrafficSpan(since=T0 + settle, traffic={"primary": 100}),
            TrafficSpan(since=T0 + settle * 2, traffic={"backup1": 100}),
        ]
    )
    assert not traffic_sent(spec, broken, "backup1", None, T0 + settle * 3 - timedelta(seconds=1))
    assert traffic_sent(spec, broken, "backup1", None, T0 + settle * 3)


def test_a_dead_primary_is_failing_and_fails_over() -> None:
    run = Run()
    start_on_primary(run)
    first = run.step(world())  # the primary died: its series vanished while it had 100 %
    assert first.models[0].state == "failing" and first.active == "primary"
    assert "no data for 1 evaluations while" in first.models[0].cause
    assert "req/s (100 %) were routed to it" in first.models[0].cause
    second = run.step(world())
    assert (second.active, second.state) == ("backup1", "FailedOver")
    assert "primary failing for 2 evaluations: no data for 2 evaluations" in second.reason
    assert second.traffic == {"backup1": 95, "primary": 5}
    assert second.fallbacks == ("backup2",)  # the failing primary is no fallback


def test_the_new_backup_is_idle_until_it_had_time_to_report() -> None:
    run = Run()
    start_on_primary(run)
    run.step(world())
    run.step(world())
    assert run.memory.active == "backup1"
    # Neither the backup nor the trickled primary reported yet: the backup is idle, not failing.
    for _ in range(SETTLE_INTERVALS - 1):
        decision = run.step(world())
        assert decision.models[1].state == "idle" and decision.active == "backup1"
    decision = run.step(world())  # settled and still no data: the backup is failing too
    assert decision.models[1].state == "failing"


def test_lost_replicas_count_at_once_but_never_seen_available_is_not_a_failure() -> None:
    run = Run()
    start_on_primary(run)
    run.step(serving("primary"), ready={"primary": True})
    lost = run.step(serving("primary"), ready={"primary": False})
    assert lost.active == "backup1" and "0 of" in lost.reason and "replicas available" in lost.reason
    assert any(a.type == "model-failure" for a in route_alerts(run.spec, lost, OBJ))
    # A cluster without nodes: Deployments never had a replica available; that says nothing.
    nodeless = Run()
    for _ in range(5):
        decision = nodeless.step(serving("primary"), ready={"primary": False, "backup1": False})
    assert decision.models[0].state == "healthy" and decision.active == "primary"


def test_prometheus_down_holds_the_streak() -> None:
    run = Run()
    start_on_primary(run)
    run.step(world())
    down = {key: Missing("timeout") for key in world()}
    for _ in range(5):
        held = run.step(down)
    assert held.active == "primary" and held.memory.critical_streak == 1
    assert [m.state for m in held.models] == ["unknown"] * 3
    assert any(a.type == "metrics-unavailable" for a in route_alerts(run.spec, held, OBJ))


def failed_over(spec: ModelRouteSpec | None = None) -> Run:
    run = Run(spec or make_spec(minRequests=50, window="60s", rollback={"stableFor": "60s"}), interval=30)
    start_on_primary(run)
    run.step(world(backup1=HEALTHY))
    run.step(world(backup1=HEALTHY))
    assert run.memory.active == "backup1"
    return run


def test_rollback_needs_evidence_served_under_the_trickle() -> None:
    run = failed_over()
    # The primary serves nothing: never judged healthy, never rolled back to.
    for _ in range(10):
        decision = run.step(world(backup1=HEALTHY))
    assert decision.active == "backup1" and decision.traffic == {"backup1": 95, "primary": 5}
    # It serves a few healthy requests: the probation starts, but 10 < minRequests holds the rollback.
    few = {**HEALTHY, "requests": 10}
    for _ in range(5):
        decision = run.step(world(backup1=HEALTHY, primary=few))
    assert decision.active == "backup1" and "10 of 50 requests" in decision.reason
    assert decision.probation is not None and decision.probation.requests == 10
    enough = {**HEALTHY, "requests": 60}
    decision = run.step(world(backup1=HEALTHY, primary=enough))
    assert (decision.active, decision.state) == ("primary", "Primary")
    assert "with 60 requests served under its trickle: rolled back" in decision.reason
    assert decision.traffic == {"primary": 100}


def test_rollback_waits_for_stable_for_from_the_first_healthy_evidence() -> None:
    run = failed_over()
    decisions = [run.step(world(backup1=HEALTHY, primary=HEALTHY)) for _ in range(3)]
    assert [d.active for d in decisions] == ["backup1", "backup1", "primary"]  # healthy at 0, 30, 60 s


def test_a_primary_failing_under_its_trickle_pauses_it_and_doubles_the_probation() -> None:
    run = failed_over()
    run.step(world(backup1=HEALTHY, primary=HEALTHY))  # probation starts
    run.step(world(backup1=HEALTHY, primary=FAILED))
    failed = run.step(world(backup1=HEALTHY, primary=FAILED))
    assert failed.active == "backup1"
    assert failed.traffic == {"backup1": 100}  # trickle off
    assert failed.probation is not None and failed.probation.failures == 1
    assert failed.probation.stable_for == timedelta(seconds=120)
    assert "failed under its trickle" in failed.reason
    paused_until = failed.probation.paused_until
    assert paused_until == run.now - run.interval + timedelta(seconds=120)
    while run.now < paused_until:
        assert run.step(world(backup1=HEALTHY)).traffic == {"backup1": 100}
    resumed = run.step(world(backup1=HEALTHY))
    assert resumed.traffic == {"backup1": 95, "primary": 5}
    # Now it needs 120 s of health, not 60.
    healthy = [run.step(world(backup1=HEALTHY, primary=HEALTHY)).active for _ in range(5)]
    assert healthy == ["backup1", "backup1", "backup1", "backup1", "primary"]


def test_probation_doubling_is_capped() -> None:
    run = failed_over()
    for _ in range(8):
        run.step(world(backup1=HEALTHY, primary=HEALTHY))
        run.step(world(backup1=HEALTHY, primary=FAILED))
        run.step(world(backup1=HEALTHY, primary=FAILED))
        run.memory = run.memory.model_copy(update={"trickle_paused_until": None})
    decision = run.step(world(backup1=HEALTHY))
    assert decision.probation is not None and decision.probation.failures == 8
    assert decision.probation.stable_for == timedelta(seconds=60 * 16)


def test_trickle_zero_means_no_evidence_and_no_rollback() -> None:
    run = failed_over(
        make_spec(minRequests=50, window="60s", rollback={"stableFor": "60s", "trafficPercent": 0})
    )
    for _ in range(10):
        decision = run.step(world(backup1=HEALTHY))
    assert decision.active == "backup1" and decision.traffic == {"backup1": 100}


def test_backup_traffic_keeps_the_first_fallback_warm() -> None:
    run = Run(make_spec(backupTrafficPercent=2))
    decision = run.step(serving("primary", backup1=HEALTHY))
    assert decision.traffic == {"primary": 98, "backup1": 2}


def test_override_gets_all_the_traffic() -> None:
    run = Run(make_spec(override={"model": "backup2"}))
    assert run.step(serving("backup2")).traffic == {"backup2": 100}


# -- alerts ------------------------------------------------------------------------------------------


def alert_run(metric: str, value: float, **spec: Any) -> list[list[tuple[str, str]]]:
    """Alerts (type, severity) on the primary over 4 evaluations with ``metric`` at ``value``."""
    metrics = [
        {"name": "requests", "query": 'req{model="$model"}'},
        {"name": metric, "query": f'{metric}{{model="$model"}}', **spec},
    ]
    run = Run(make_spec(metrics=metrics, failureThreshold=3))
    values = {"requests": Value(500), metric: Value(value)}
    result = []
    for _ in range(4):
        observation = {("model", m, k): v for m in MODELS for k, v in values.items()}
        decision = run.step(observation)
        result.append(
            [
                (a.type, a.severity)
                for a in route_alerts(run.spec, decision, OBJ)
                if a.subject == f"primary/{metric}"
            ]
        )
    return result


@pytest.mark.parametrize(
    ("metric", "bad", "fine", "alert"),
    [
        ("successRate", 0.79, 0.81, ("model-failure", "critical")),
        ("errorRate", 0.16, 0.14, ("model-failure", "warning")),
        ("latencyP95Ms", 5001, 4999, ("latency", "warning")),
        ("costPerRequest", 1.01, 0.99, ("resource-exhaustion", "warning")),
        ("accuracy", 0.69, 0.71, ("performance-degradation", "critical")),
        ("memoryMb", 1025, 1023, ("resource-exhaustion", "critical")),
        ("tokensPerRequest", 5001, 4999, ("resource-exhaustion", "warning")),
    ],
)
def test_every_seed_alert_default_applies_after_the_streak(
    metric: str, bad: float, fine: float, alert: tuple[str, str]
) -> None:
    threshold, severity = DEFAULT_ALERT_THRESHOLDS[metric]
    assert severity == alert[1] and min(bad, fine) < threshold < max(bad, fine)
    assert alert_run(metric, bad) == [[], [], [alert], [alert]]
    assert alert_run(metric, fine) == [[]] * 4


def test_seed_defaults_cover_exactly_the_documented_rows() -> None:
    assert set(DEFAULT_ALERT_THRESHOLDS) == {
        "successRate",
        "errorRate",
        "latencyP95Ms",
        "costPerRequest",
        "accuracy",
        "memoryMb",
        "tokensPerRequest",
    }


def test_explicit_thresholds_replace_the_alert_defaults_and_escalate_at_once() -> None:
    spec = {"warning": 0.9, "critical": 0.8}
    warning = ("performance-degradation", "warning")
    assert alert_run("accuracy", 0.85, **spec) == [[], [], [warning], [warning]]
    metrics = [
        {"name": "requests", "query": 'req{model="$model"}'},
        {"name": "accuracy", "query": 'acc{model="$model"}', **spec},
    ]
    run = Run(make_spec(metrics=metrics, failureThreshold=3))

    def step(accuracy: float) -> list[str]:
        values = {"requests": Value(500), "accuracy": Value(accuracy)}
        decision = run.step({("model", m, k): v for m in MODELS for k, v in values.items()})
        return [a.severity for a in route_alerts(run.spec, decision, OBJ) if a.subject == "backup1/accuracy"]

    assert [step(0.85) for _ in range(3)] == [[], [], ["warning"]]
    assert step(0.7) == ["critical"]  # the breach has held: escalation does not wait again


def test_alerts_need_min_requests_and_idle_models_raise_nothing() -> None:
    run = Run(make_spec(failureThreshold=1))
    quiet = {**HEALTHY, "accuracy": 0.5, "requests": 10}
    decision = run.step(world(primary=quiet))
    assert [a for a in route_alerts(run.spec, decision, OBJ) if a.subject.startswith("primary/")] == []
    assert all(not m.failure_alert for m in decision.models[1:])


def test_a_failing_model_raises_model_failure_after_the_streak() -> None:
    run = Run()  # failureThreshold 2
    start_on_primary(run)
    first = run.step(world())
    assert [a.type for a in route_alerts(run.spec, first, OBJ)] == []
    second = run.step(world())
    failure = [a for a in route_alerts(run.spec, second, OBJ) if a.type == "model-failure"]
    assert failure and failure[0].severity == "critical" and "no data for 2 evaluations" in failure[0].summary


def test_requests_from_before_the_death_are_no_evidence() -> None:
    # Window 120 s: right after a restart, increase() over the window still counts what the primary
    # served before it died. Healthy for stableFor (60 s) is not enough until the window is its own.
    run = failed_over(make_spec(minRequests=50, window="120s", rollback={"stableFor": "60s"}))
    steps = [run.step(world(backup1=HEALTHY, primary=HEALTHY)) for _ in range(4)]
    assert [d.active for d in steps] == ["backup1", "backup1", "backup1", "primary"]
    assert "window clean of pre-recovery data in 30s" in steps[2].reason


def test_a_model_that_reported_while_routed_fails_at_once_when_its_data_goes() -> None:
    spec = make_spec()
    memory = RouteMemory(
        traffic=[TrafficSpan(since=T0, traffic={"primary": 100})],
        reported={"primary": T0 + timedelta(seconds=5)},
    )
    assert traffic_sent(spec, memory, "primary", None, T0 + timedelta(seconds=6))  # long before settle
    stale = memory.model_copy(update={"reported": {"primary": T0 - timedelta(seconds=1)}})
    assert not traffic_sent(spec, stale, "primary", None, T0 + timedelta(seconds=6))  # before this share


def test_settle_time_has_a_floor_for_short_intervals() -> None:
    spec = make_spec(interval="1s")
    memory = RouteMemory(traffic=[TrafficSpan(since=T0, traffic={"backup1": 100})])
    assert not traffic_sent(spec, memory, "backup1", None, T0 + timedelta(seconds=9))
    assert traffic_sent(spec, memory, "backup1", None, T0 + timedelta(seconds=10))


def test_prometheus_not_answering_keeps_a_model_in_the_fallbacks() -> None:
    run = Run()
    decision = start_on_primary(run)
    assert decision.fallbacks == ("backup1", "backup2")
    observation = serving("primary") | {("model", "backup2", m): Missing("timeout") for m in HEALTHY}
    assert run.step(observation).fallbacks == ("backup1", "backup2")
    critical = {**HEALTHY, "accuracy": 0.5}
    assert run.step(serving("primary", backup1=critical)).fallbacks == ("backup2",)


def test_a_backup_scaled_back_after_pre_warm_is_idle_not_failing() -> None:
    run = Run(make_spec(rollback={"stableFor": "5m", "scaleDownAfter": "1m"}))
    cold = {"primary": True, "backup1": False, "backup2": False}
    warm = {**cold, "backup1": True}
    start_on_primary(run)
    warned = run.step(serving("primary", primary=WARNING), ready=cold)
    assert [(a.model, a.replicas) for a in warned.scale] == [("backup1", 1)]
    run.step(serving("primary"), ready=warm)  # warm: its Deployment Available
    scaled = []
    for _ in range(4):  # the primary healthy again: scaleDownAfter later the backup goes back to 0
        scaled += run.step(serving("primary"), ready=warm).scale
    assert [(a.model, a.replicas) for a in scaled] == [("backup1", 0)]
    for _ in range(3):
        decision = run.step(serving("primary"), ready=cold)
        assert decision.models[1].state == "idle", decision.models[1]
        assert route_alerts(run.spec, decision, OBJ) == []
    assert decision.fallbacks == ("backup1", "backup2")


@pytest.mark.parametrize(
    ("wanted", "cause"),
    [(2, "0 of 2 replicas available"), (0, "0 of 0 replicas available: scaled to 0 while route.json gives")],
)
def test_the_active_model_losing_its_pods_or_scaled_to_zero_fails_over_at_once(
    wanted: int, cause: str
) -> None:
    run = Run()
    run.replicas["primary"] = 2
    start_on_primary(run)
    run.step(serving("primary"), ready={"primary": True})
    run.replicas["primary"] = wanted
    lost = run.step(serving("primary"), ready={"primary": False})
    assert lost.active == "backup1" and lost.models[0].state == "failing"
    assert lost.models[0].cause.startswith(cause) and cause in lost.reason
    assert any(a.type == "model-failure" and cause in a.summary for a in route_alerts(run.spec, lost, OBJ))


def test_a_steady_route_keeps_the_same_memory_so_its_status_need_not_be_written() -> None:
    # The primary reports at every evaluation; what the decision remembers of it must not move with the
    # clock, or every route's status would differ at every evaluation (and be written each time).
    run = Run()
    start_on_primary(run)
    memory = run.memory
    for _ in range(5):
        run.step(serving("primary"))
        assert run.memory == memory
    # It still counts as having reported during its share: its data going now is a failure at once.
    assert run.memory.reported["primary"] >= routed_since(run.memory, "primary")
    decision = run.step(world())
    assert next(m for m in decision.models if m.name == "primary").state == "failing"


def test_a_backup_s_first_report_after_it_is_given_a_share_is_remembered() -> None:
    run = failed_over()
    since = routed_since(run.memory, "backup1")
    # Reported before? No: idle until chosen. Its first report came within its share, and stays.
    assert since is not None and run.memory.reported["backup1"] >= since
    kept = run.memory.reported["backup1"]
    run.step(world(backup1=HEALTHY))
    assert run.memory.reported["backup1"] == kept
