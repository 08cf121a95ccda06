"""The pure DetectionPolicy decision: rules, anti-flapping, fail-safe, expense, external contributors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detection_operator.api.detection_policy import DetectionPolicySpec
from detection_operator.decide.policy import (
    PolicyDecision,
    PolicyMemory,
    QueryKey,
    classify,
    decide_policy,
    query_plan,
)
from detection_operator.observe.source import Missing, Reading, Value

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make_spec(**overrides: Any) -> DetectionPolicySpec:
    raw: dict[str, Any] = {
        "defaultProfile": "balanced",
        "stabilizationWindow": "5m",
        "minDwell": "1m",
        "holdFor": "2m",
        "profiles": [
            {"name": "lean", "contributors": ["rules"], "maxExpense": "light"},
            {"name": "balanced", "contributors": ["rules", "reputation"]},
            {"name": "paranoid", "contributors": ["rules", "reputation", "llm"], "allowExternal": True},
        ],
        "rules": [
            {
                "name": "latency",
                "query": "lat",
                "op": ">",
                "threshold": 200,
                "clearThreshold": 150,
                "for": 2,
                "profile": "lean",
                "reason": "high latency",
            },
            {
                "name": "surge",
                "query": "surge",
                "op": ">",
                "threshold": 0.2,
                "profile": "paranoid",
                "reason": "bot surge",
            },
        ],
        "contributors": [
            {"name": "rules", "expense": "light"},
            {"name": "reputation", "expense": "medium"},
            {"name": "llm"},
            {"name": "headers"},
        ],
    }
    raw.update(overrides)
    return DetectionPolicySpec.model_validate(raw)


SPEC = make_spec()


def obs(**readings: Reading | float) -> dict[QueryKey, Reading]:
    return {
        ("rule", k): v if isinstance(v, Value | Missing) else Value(float(v)) for k, v in readings.items()
    }


class Run:
    """Feeds observations through decide_policy with a moving clock, like the operator does."""

    def __init__(self, spec: DetectionPolicySpec = SPEC, interval: float = 15) -> None:
        self.spec, self.interval, self.now = spec, timedelta(seconds=interval), T0
        self.memory = PolicyMemory()
        self.decisions: list[PolicyDecision] = []

    def step(self, observation: dict[QueryKey, Reading], advance: bool = True) -> PolicyDecision:
        if advance and self.decisions:
            self.now += self.interval
        decision = decide_policy(self.spec, observation, self.memory, self.now)
        self.memory = decision.memory
        self.decisions.append(decision)
        return decision


CALM = obs(latency=100, surge=0.05)


@pytest.mark.parametrize(
    ("operator", "threshold", "value", "holds"),
    [
        (">", 10, 11, True),
        (">", 10, 10, False),
        (">=", 10, 10, True),
        (">=", 10, 9.9, False),
        ("<", 10, 9, True),
        ("<", 10, 10, False),
        ("<=", 10, 10, True),
        ("<=", 10, 10.1, False),
        ("==", 10, 10, True),
        ("==", 10, 10.5, False),
        ("!=", 10, 11, True),
        ("!=", 10, 10, False),
    ],
)
def test_each_operator(operator: str, threshold: float, value: float, holds: bool) -> None:
    spec = make_spec(
        rules=[
            {
                "name": "r",
                "query": "q",
                "op": operator,
                "threshold": threshold,
                "profile": "lean",
                "reason": "r",
            }
        ]
    )
    decision = Run(spec).step(obs(r=value))
    assert decision.rules[0].verdict == ("holds" if holds else "clear")
    assert decision.profile == ("lean" if holds else "balanced")


def test_first_decision_takes_default_without_waiting() -> None:
    decision = Run().step(CALM)
    assert (decision.profile, decision.previous, decision.switched) == ("balanced", None, True)


def test_for_needs_consecutive_evaluations() -> None:
    run = Run()
    run.step(CALM)
    assert run.step(obs(latency=250, surge=0.05)).profile == "balanced"  # 1 of 2
    assert run.step(CALM).rules[0].streak == 0  # a clear evaluation resets the streak
    run.step(obs(latency=250, surge=0.05))
    for _ in range(3):  # minDwell (1m) since the first decision must pass as well
        run.step(obs(latency=250, surge=0.05))
    assert run.decisions[-1].profile == "lean"
    assert run.decisions[-1].reason == "high latency"


def test_hysteresis_band_holds_until_the_clear_threshold() -> None:
    run = Run()
    run.now -= timedelta(minutes=5)  # let the first decision's dwell expire
    run.step(CALM)
    run.now += timedelta(minutes=5)
    run.step(obs(latency=250, surge=0))
    assert run.step(obs(latency=250, surge=0)).profile == "lean"
    assert run.step(obs(latency=170, surge=0)).rules[0].active  # below 200 but above 150: still active
    decision = run.step(obs(latency=140, surge=0))
    assert not decision.rules[0].active and decision.rules[0].verdict == "clear"


def test_relaxation_waits_for_the_stabilization_window_and_dwell() -> None:
    run = Run(interval=30)
    run.step(obs(latency=250, surge=0))
    for _ in range(3):
        run.step(obs(latency=250, surge=0))
    assert run.decisions[-1].profile == "lean"
    switched_at = run.now
    relaxed_at = None
    for _ in range(20):
        decision = run.step(CALM)
        if decision.profile == "balanced":
            relaxed_at = run.now
            break
        assert decision.held_by == "stabilizationWindow"
    assert relaxed_at is not None
    first_clear = switched_at + timedelta(seconds=30)
    assert relaxed_at - first_clear >= timedelta(minutes=5)


def test_min_dwell_holds_a_second_switch() -> None:
    run = Run(interval=10)
    run.step(CALM)
    decision = run.step(obs(latency=100, surge=0.5))
    assert decision.profile == "balanced" and decision.held_by == "minDwell"
    while run.now - T0 < timedelta(minutes=1):
        run.step(obs(latency=100, surge=0.5))
    assert run.decisions[-1].profile == "paranoid"
    assert run.decisions[-1].reason == "bot surge"


@pytest.mark.parametrize(
    "missing",
    [
        Missing("empty"),
        Missing("inf"),
        Missing("many-series", "3 series"),
        Missing("error", "connection refused"),
        Missing("timeout", "5s"),
        Missing("bad-response"),
    ],
    ids=lambda m: m.cause,
)
def test_unknown_holds_then_falls_back(missing: Missing) -> None:
    spec = make_spec(defaultProfile="lean", fallbackProfile="balanced")
    run = Run(spec, interval=30)
    run.step(CALM)
    assert run.decisions[-1].profile == "lean"
    run.now += timedelta(minutes=5)
    held = run.step(obs(latency=missing, surge=missing))
    assert held.profile == "lean" and held.held_by == "holdFor"
    assert not held.metrics_available and missing.cause in held.metrics_message
    assert "rule latency" in held.metrics_message
    unknown_since = run.now
    while run.now - unknown_since < timedelta(minutes=2) - run.interval:
        assert run.step(obs(latency=missing, surge=missing)).profile == "lean"
    assert run.step(obs(latency=missing, surge=missing)).profile == "balanced"
    assert "metrics unavailable" in run.decisions[-1].reason


def test_unknown_is_never_read_as_zero() -> None:
    spec = make_spec(
        rules=[
            {
                "name": "low-accuracy",
                "query": "q",
                "op": "<",
                "threshold": 0.5,
                "profile": "paranoid",
                "reason": "accuracy dropped",
            }
        ]
    )
    decision = Run(spec).step(obs(**{"low-accuracy": Missing("error")}))
    assert decision.rules[0].verdict == "unknown"
    assert decision.profile == "balanced"  # first decision, undetermined: fallback, not paranoid


def test_unknown_freezes_the_for_streak() -> None:
    run = Run()
    run.step(obs(latency=250, surge=0))
    decision = run.step(obs(latency=Missing("timeout"), surge=0))
    assert decision.rules[0].streak == 1
    assert run.step(obs(latency=250, surge=0)).rules[0].streak == 2


def test_a_known_active_rule_before_an_unknown_one_still_decides() -> None:
    run = Run()
    run.now -= timedelta(minutes=5)
    run.step(CALM)
    run.now += timedelta(minutes=5)
    run.step(obs(latency=250, surge=Missing("error")))
    decision = run.step(obs(latency=250, surge=Missing("error")))
    assert decision.profile == "lean" and decision.held_by is None
    assert not decision.metrics_available  # still reported


def test_an_unknown_rule_before_an_active_one_makes_it_undetermined() -> None:
    run = Run()
    run.now -= timedelta(minutes=5)
    run.step(CALM)
    run.now += timedelta(minutes=5)
    decision = run.step(obs(latency=Missing("error"), surge=0.9))
    assert decision.profile == "balanced" and decision.held_by == "holdFor"


def test_ignore_when_missing_treats_missing_as_clear() -> None:
    rules = [
        {
            "name": "surge",
            "query": "q",
            "op": ">",
            "threshold": 0.2,
            "profile": "paranoid",
            "reason": "surge",
            "ignoreWhenMissing": True,
        }
    ]
    decision = Run(make_spec(rules=rules)).step(obs(surge=Missing("error")))
    assert decision.rules[0].verdict == "clear" and decision.metrics_available
    assert "ignored" in decision.rules[0].cause


def test_removed_profile_is_left_at_once() -> None:
    run = Run()
    run.step(CALM)
    spec = make_spec(profiles=[{"name": "balanced"}, {"name": "lean"}, {"name": "paranoid"}])
    run.memory = run.memory.model_copy(update={"profile": "gone"})
    decision = decide_policy(spec, CALM, run.memory, run.now + timedelta(seconds=1))
    assert decision.profile == "balanced" and decision.switched


def test_memory_survives_a_round_trip_and_garbage_starts_afresh() -> None:
    run = Run()
    run.step(obs(latency=250, surge=0))
    raw = run.memory.model_dump(mode="json")
    assert PolicyMemory.load(raw) == run.memory
    assert PolicyMemory.load({"rules": "nonsense"}) == PolicyMemory()


def test_query_plan_renders_every_template() -> None:
    spec = make_spec(
        expense={"window": "10m", "queries": {"runtimeMs": 'rt{c="$contributor"}[$window]'}},
        externalContributors={
            "queries": {"errorRate": 'err{s="$contributor",ns="$namespace"}'},
            "services": [{"name": "intel", "endpoint": "https://x.example", "signals": ["ip"]}],
        },
        rules=[
            {
                "name": "r",
                "query": 'x{ns="$namespace",p="$policy"}[$window]',
                "op": ">",
                "threshold": 1,
                "profile": "lean",
                "reason": "r",
            }
        ],
    )
    plan = query_plan(spec, "prod", "bot")
    assert plan[("rule", "r")] == 'x{ns="prod",p="bot"}[5m]'
    assert plan[("expense", "llm", "runtime_ms")] == 'rt{c="llm"}[10m]'
    assert plan[("external", "intel", "error_rate")] == 'err{s="intel",ns="prod"}'
    assert len(plan) == 1 + 4 + 1


# --- expense ---------------------------------------------------------------------------------------

EXPENSE = {"queries": {"runtimeMs": "rt", "memoryMb": "mem"}}


@pytest.mark.parametrize(
    ("runtime", "memory", "expected"),
    [
        (2, 10, "light"),
        (5, 64, "light"),
        (6, 10, "medium"),
        (20, 200, "medium"),
        (60, 10, "heavy"),
        (2, 300, "heavy"),
    ],
)
def test_expense_classes(runtime: float, memory: float, expected: str) -> None:
    spec = make_spec(expense=EXPENSE)
    assert spec.expense is not None
    assert (
        classify({"runtime_ms": runtime, "memory_mb": memory}, spec.expense.light, spec.expense.medium)
        == expected
    )


def test_cost_sources_and_max_expense_selection() -> None:
    spec = make_spec(expense=EXPENSE)
    observation = obs(latency=100, surge=0) | {
        ("expense", "headers", "runtime_ms"): Value(1),
        ("expense", "headers", "memory_mb"): Value(5),
        ("expense", "reputation", "runtime_ms"): Value(30),
    }
    decision = Run(spec).step(observation)
    costs = {c.name: (c.expense, c.source) for c in decision.costs}
    assert costs == {
        "rules": ("light", "declared"),
        "reputation": ("medium", "measured"),
        "llm": ("heavy", "assumed"),
        "headers": ("light", "measured"),
    }
    lean = next(p for p in spec.profiles if p.name == "lean")
    from detection_operator.decide.policy import enabled_contributors

    assert enabled_contributors(lean, decision.costs) == ("rules", "headers")
    # The measured class is remembered while the cost queries go missing.
    later = decide_policy(spec, obs(latency=100, surge=0), decision.memory, T0 + timedelta(minutes=1))
    assert {c.name: c.source for c in later.costs}["headers"] == "remembered"


# --- external contributors -------------------------------------------------------------------------

EXTERNAL = {
    "minWeight": 0.5,
    "maxWeight": 3,
    "circuit": {"maxErrorRate": 0.1, "coolDown": "2m"},
    "queries": {"errorRate": "err", "p95LatencyMs": "p95", "accuracy": "acc"},
    "services": [{"name": "intel", "endpoint": "https://intel.example", "signals": ["ip", "asn"]}],
}


def ext(
    error: float | Missing, p95: float | Missing = 50, acc: float | Missing = 0.8
) -> dict[QueryKey, Reading]:
    def r(v: float | Missing) -> Reading:
        return v if isinstance(v, Missing) else Value(v)

    return obs(latency=100, surge=0.5) | {
        ("external", "intel", "error_rate"): r(error),
        ("external", "intel", "p95_latency_ms"): r(p95),
        ("external", "intel", "accuracy"): r(acc),
    }


def test_circuit_opens_waits_cool_down_then_trials_then_closes() -> None:
    run = Run(make_spec(externalContributors=EXTERNAL), interval=30)
    first = run.step(ext(0.01))
    assert first.externals[0].circuit == "closed"
    opened = run.step(ext(0.3))
    assert opened.externals[0].circuit == "open" and not opened.externals[0].enabled
    assert "error rate" in opened.externals[0].circuit_reason and opened.circuit_changes
    assert run.step(ext(0.01)).externals[0].circuit == "open"  # healthy, but inside the cool-down
    while run.now - T0 < timedelta(minutes=2, seconds=30):
        run.step(ext(0.01))
    trial = run.decisions[-1].externals[0]
    assert trial.circuit == "half-open" and trial.weight == 0.5
    assert run.step(ext(0.01)).externals[0].circuit == "closed"


def test_half_open_reopens_when_still_failing_and_latency_breaks_budget() -> None:
    run = Run(make_spec(externalContributors=EXTERNAL), interval=60)
    run.step(ext(0.01, p95=500))
    assert "p95 latency 500 ms" in run.decisions[-1].externals[0].circuit_reason
    assert run.step(ext(0.01)).externals[0].circuit == "open"  # 1 minute into the 2 minute cool-down
    assert run.step(ext(0.01)).externals[0].circuit == "half-open"
    assert run.step(ext(0.5)).externals[0].circuit == "open"


def test_missing_health_metrics_keep_the_circuit_state() -> None:
    run = Run(make_spec(externalContributors=EXTERNAL))
    run.step(ext(0.5))
    assert run.step(ext(Missing("empty"), Missing("empty"))).externals[0].circuit == "open"


@pytest.mark.parametrize(("accuracy", "weight"), [(0.8, 1.5), (0.99, 1.8562), (1.0, 1.875), (0.1, 0.5)])
def test_weight_scales_with_accuracy_and_is_clamped(accuracy: float, weight: float) -> None:
    decision = Run(make_spec(externalContributors=EXTERNAL)).step(ext(0.01, acc=accuracy))
    assert decision.externals[0].weight == pytest.approx(weight)


def test_weight_clamped_to_max_and_base_when_accuracy_unknown() -> None:
    spec = make_spec(externalContributors={**EXTERNAL, "maxWeight": 1.6})
    assert Run(spec).step(ext(0.01, acc=1.0)).externals[0].weight == 1.6
    assert Run(spec).step(ext(0.01, acc=Missing("empty"))).externals[0].weight == 1.5


def test_externals_enabled_only_where_the_profile_allows() -> None:
    run = Run(make_spec(externalContributors=EXTERNAL))
    calm = run.step(ext(0.01) | obs(latency=100, surge=0))
    assert calm.profile == "balanced" and not calm.externals[0].enabled
    run.now += timedelta(minutes=2)
    surge = run.step(ext(0.01))
    assert surge.profile == "paranoid" and surge.externals[0].enabled


# --- properties ------------------------------------------------------------------------------------

reading = st.one_of(
    st.floats(min_value=0, max_value=400).map(Value),
    st.sampled_from([Missing("empty"), Missing("timeout"), Missing("nan")]),
)
surge_reading = st.one_of(st.floats(min_value=0, max_value=1).map(Value), st.just(Missing("error")))


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.tuples(reading, surge_reading, st.integers(min_value=1, max_value=90)), max_size=80),
)
def test_no_two_switches_closer_than_min_dwell_and_no_early_relaxation(
    steps: list[tuple[Reading, Reading, int]],
) -> None:
    spec = SPEC
    dwell = timedelta(minutes=1)
    stabilization = timedelta(minutes=5)
    memory = PolicyMemory()
    now = T0
    switches: list[datetime] = []
    clear_history: list[tuple[datetime, bool]] = []
    for latency, surge, gap in steps:
        now += timedelta(seconds=gap)
        decision = decide_policy(spec, obs(latency=latency, surge=surge), memory, now)
        all_clear = all(r.verdict == "clear" for r in decision.rules)
        clear_history.append((now, all_clear))
        if decision.switched and decision.previous is not None:
            if switches:
                assert now - switches[-1] >= dwell
            winner = any(r.active for r in decision.rules)
            if decision.profile == spec.default_profile and not winner and decision.metrics_available:
                # A relaxation: every evaluation in the stabilization window before it was all clear.
                window = [c for t, c in clear_history if now - t < stabilization]
                assert all(window)
                assert now - min(t for t, _ in clear_history if now - t < stabilization) >= timedelta(0)
        if decision.switched:
            switches.append(now)
        memory = decision.memory
