"""The pure ModelRoute decision: health, failover, pre-warm, rollback, override, caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detection_operator.api.model_route import ModelRouteSpec
from detection_operator.decide.route import (
    RouteDecision,
    RouteKey,
    RouteMemory,
    decide_route,
    metric_level,
    metric_score,
    query_plan,
)
from detection_operator.observe.source import Missing, Reading, Value

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
MODELS = ["primary", "backup1", "backup2"]


def make_spec(**overrides: Any) -> ModelRouteSpec:
    raw: dict[str, Any] = {
        "models": [
            {"name": "primary", "deployment": "primary"},
            {"name": "backup1", "deployment": "backup1"},
            {"name": "backup2", "deployment": "backup2", "prewarmReplicas": 2},
        ],
        "metrics": [
            {"name": "accuracy", "query": 'acc{model="$model"}'},
            {"name": "latencyP95Ms", "query": 'lat{model="$model"}'},
            {"name": "successRate", "query": 'ok{model="$model"}'},
            {"name": "requests", "query": 'req{model="$model"}[$window]'},
        ],
        "failureThreshold": 2,
        "maxFailoversPerHour": 3,
        "rollback": {"stableFor": "5m", "scaleDownAfter": "10m"},
        "interval": "30s",
    }
    raw.update(overrides)
    return ModelRouteSpec.model_validate(raw)


SPEC = make_spec()
HEALTHY = {"accuracy": 0.95, "latencyP95Ms": 500, "successRate": 0.99, "requests": 500}
WARNING = {**HEALTHY, "accuracy": 0.8}
CRITICAL = {**HEALTHY, "accuracy": 0.6}


def obs(**models: dict[str, float]) -> dict[RouteKey, Reading]:
    result: dict[RouteKey, Reading] = {}
    for model in MODELS:
        for metric, value in models.get(model, HEALTHY).items():
            result[("model", model, metric)] = Value(value)
    return result


class Run:
    def __init__(self, spec: ModelRouteSpec = SPEC, interval: float = 30) -> None:
        self.spec, self.now, self.interval = spec, T0, timedelta(seconds=interval)
        self.memory = RouteMemory()
        self.replicas = {"backup1": 0, "backup2": 0}

    def step(
        self, observation: dict[RouteKey, Reading], ready: dict[str, bool] | None = None
    ) -> RouteDecision:
        decision = decide_route(self.spec, observation, self.memory, self.now, ready, self.replicas)
        for action in decision.scale:
            self.replicas[action.model] = action.replicas
        self.memory = decision.memory
        self.now += self.interval
        return decision


def test_levels_and_scores_follow_direction_and_defaults() -> None:
    accuracy, latency = SPEC.metrics[0], SPEC.metrics[1]
    assert [metric_level(accuracy, v) for v in (0.9, 0.8, 0.7)] == ["ok", "warning", "critical"]
    assert [metric_level(latency, v) for v in (100, 3000, 6000)] == ["ok", "warning", "critical"]
    assert metric_score(accuracy, 0.80) == pytest.approx(0.5)
    assert metric_score(latency, 3500) == pytest.approx(0.5)
    assert metric_score(latency, 100) == 1.0 and metric_score(latency, 9000) == 0.0


def test_healthy_primary_scores_100_and_trend_compares_windows() -> None:
    observation = obs() | {("previous", "primary", "accuracy"): Value(0.80)}
    decision = Run().step(observation)
    primary = decision.models[0]
    assert (decision.active, decision.state, primary.score) == ("primary", "Primary", 100.0)
    assert primary.metrics[0].trend == "improving"  # accuracy 0.80 -> 0.95
    assert primary.trend == "improving"  # judged on accuracy alone: the only metric with both windows
    same = obs() | {("previous", "primary", m): Value(v) for m, v in HEALTHY.items()}
    assert Run().step(same).models[0].trend == "stable"


def test_failover_after_failure_threshold_to_highest_priority_ready_backup() -> None:
    run = Run()
    run.step(obs())
    first = run.step(obs(primary=CRITICAL))
    assert first.active == "primary" and first.memory.critical_streak == 1
    second = run.step(obs(primary=CRITICAL))
    assert (second.active, second.state, second.switched) == ("backup1", "FailedOver", True)
    assert "accuracy 0.6 past critical 0.75" in second.reason


def test_not_ready_backups_lose_to_a_ready_one_then_best_score_decides() -> None:
    run = Run()
    run.step(obs())
    run.step(obs(primary=CRITICAL))
    decision = run.step(obs(primary=CRITICAL), ready={"backup1": False, "backup2": True})
    assert decision.active == "backup2"
    run2 = Run()
    run2.step(obs())
    run2.step(obs(primary=CRITICAL))
    none_ready = run2.step(obs(primary=CRITICAL, backup1=WARNING), ready={"backup1": False, "backup2": False})
    assert none_ready.active == "backup2"  # higher health score than backup1 at warning


def test_backup_also_critical_moves_to_the_next() -> None:
    run = Run()
    run.step(obs())
    for _ in range(2):
        run.step(obs(primary=CRITICAL))
    assert run.memory.active == "backup1"
    run.step(obs(primary=CRITICAL, backup1=CRITICAL))
    decision = run.step(obs(primary=CRITICAL, backup1=CRITICAL))
    assert decision.active == "backup2"


def test_no_healthy_backup_stays_degraded() -> None:
    run = Run()
    run.step(obs())
    bad = obs(primary=CRITICAL, backup1=CRITICAL, backup2=CRITICAL)
    run.step(bad)
    decision = run.step(bad)
    assert (decision.active, decision.state, decision.no_healthy_backup) == ("primary", "Degraded", True)
    assert run.step(obs()).state == "Primary"


def test_too_few_requests_makes_no_decision() -> None:
    run = Run()
    quiet = {**CRITICAL, "requests": 10}
    for _ in range(4):
        decision = run.step(obs(primary=quiet))
    assert decision.active == "primary" and decision.insufficient_data


def test_rollback_after_primary_stable_for_the_window() -> None:
    run = Run(interval=60)
    run.step(obs())
    run.step(obs(primary=CRITICAL))
    assert run.step(obs(primary=CRITICAL)).active == "backup1"
    switched_at = run.now
    decisions = [run.step(obs(primary=WARNING))]  # warning: not healthy yet
    while run.memory.active != "primary":
        decisions.append(run.step(obs()))
    assert run.now - switched_at >= timedelta(minutes=6)
    assert "rolled back" in decisions[-1].reason and decisions[-1].state == "Primary"


def test_warning_prewarms_next_backup_and_grace_scales_it_back() -> None:
    run = Run(interval=60)
    run.step(obs())
    warm = run.step(obs(primary=WARNING))
    assert [(a.model, a.replicas) for a in warm.scale] == [("backup1", 1)] and warm.active == "primary"
    assert run.step(obs(primary=WARNING)).scale == ()  # already warm
    steps = [run.step(obs()) for _ in range(12)]
    scaled_back = [a for d in steps for a in d.scale]
    assert [(a.model, a.replicas) for a in scaled_back] == [("backup1", 0)]
    assert run.memory.prewarmed == {}


def test_failover_cap_stops_ping_pong() -> None:
    run = Run(make_spec(maxFailoversPerHour=1, failureThreshold=1))
    run.step(obs())
    assert run.step(obs(primary=CRITICAL)).active == "backup1"
    capped = run.step(obs(primary=CRITICAL, backup1=CRITICAL))
    assert capped.active == "backup1" and capped.failover_capped


def test_override_pins_until_it_expires() -> None:
    until = T0 + timedelta(minutes=2)
    run = Run(
        make_spec(override={"model": "backup2", "until": until.isoformat(), "reason": "canary"}), interval=60
    )
    pinned = run.step(obs(backup2=CRITICAL))
    assert (pinned.active, pinned.state) == ("backup2", "Overridden") and "canary" in pinned.reason
    run.step(obs())
    run.step(obs())
    after = run.step(obs())
    assert after.state in ("FailedOver", "Primary")


def test_memory_round_trip() -> None:
    run = Run()
    run.step(obs(primary=WARNING))
    assert RouteMemory.load(run.memory.model_dump(mode="json", by_alias=True)) == run.memory
    assert RouteMemory.load({"failovers": "x"}) == RouteMemory()


def test_query_plan() -> None:
    plan = query_plan(SPEC, "ns", "route")
    assert plan[("model", "backup1", "requests")] == 'req{model="backup1"}[10m]'
    assert len(plan) == 3 * 4


def test_unanswered_queries_are_reported_not_zero_and_hold() -> None:
    observation = obs()
    observation[("model", "primary", "accuracy")] = Missing("error", "HTTP 503")
    decision = Run().step(observation)
    assert not decision.metrics_available and "primary/accuracy: error: HTTP 503" in decision.metrics_message
    assert decision.models[0].level == "ok"  # the metrics that answered are fine
    assert decision.models[0].state == "unknown"
    # An empty answer is an answer: the data is not there; Prometheus is fine.
    observation[("model", "primary", "accuracy")] = Missing("empty")
    assert Run().step(observation).metrics_available


level = st.sampled_from(["healthy", "warning", "critical"])
PROFILES = {"healthy": HEALTHY, "warning": WARNING, "critical": CRITICAL}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(level, level, level, st.integers(min_value=10, max_value=120)), max_size=60))
def test_no_two_switches_within_the_rollback_window_unless_the_new_model_goes_critical(
    steps: list[tuple[str, str, str, int]],
) -> None:
    window = timedelta(minutes=5)
    memory, now = RouteMemory(), T0
    last_switch: datetime | None = None
    critical_since_switch = False
    for p, b1, b2, gap in steps:
        now += timedelta(seconds=gap)
        observation = obs(primary=PROFILES[p], backup1=PROFILES[b1], backup2=PROFILES[b2])
        decision = decide_route(SPEC, observation, memory, now)
        if decision.switched and decision.previous is not None:
            if last_switch is not None and now - last_switch < window:
                assert critical_since_switch, (decision.previous, decision.active, decision.reason)
            last_switch, critical_since_switch = now, False
        elif last_switch is not None:
            active = next(m for m in decision.models if m.name == decision.active)
            critical_since_switch = critical_since_switch or active.level == "critical"
        memory = decision.memory
