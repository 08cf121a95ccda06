"""Production rules of the DetectionPolicy decision: traffic floors, no traffic vs no data, allOf/anyOf,
burn rates, bounded escalations, shadow profiles, the latency-target check, cache-aware expense."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from detection_operator.api.detection_policy import DetectionPolicySpec
from detection_operator.decide.policy import (
    QueryKey,
    burn_pairs,
    classify,
    decide_policy,
    prometheus_duration,
    query_plan,
)
from detection_operator.observe.source import Missing, Reading, Value

from .test_decide_policy import Run, make_spec

SURGE = {
    "name": "surge",
    "query": "flagged / requests",
    "op": ">",
    "threshold": 0.2,
    "profile": "paranoid",
    "reason": "bot surge",
}


def readings(**values: Reading | float) -> dict[QueryKey, Reading]:
    """Keys written as rule, rule__condition, rule__window__1h, samples__rule, latency."""
    found: dict[QueryKey, Reading] = {}
    for name, v in values.items():
        key: QueryKey = tuple(name.split("__"))
        if key[0] not in ("samples", "latency") and len(key) == 2:
            key = ("rule", key[0], "condition", key[1])
        elif key[0] not in ("samples", "latency"):
            key = ("rule", *key)
        found[key] = v if isinstance(v, Value | Missing) else Value(float(v))
    return found


def relaxed_run(spec: DetectionPolicySpec, interval: float = 30) -> Run:
    """A run whose first decision (default profile) is old enough for minDwell not to hold anything."""
    run = Run(spec, interval=interval)
    run.now -= timedelta(hours=1)
    run.step({key: Value(0.0) for key in query_plan(spec, "ns", "p")}, advance=False)
    run.now += timedelta(hours=1)
    return run


# -- traffic floor -------------------------------------------------------------------------------------


def floor_spec(**rule: Any) -> DetectionPolicySpec:
    return make_spec(
        rules=[{**SURGE, "minSamples": 100, **rule}],
        samplesQuery="sum(increase(requests_total[$window]))",
    )


def test_below_the_traffic_floor_a_ratio_is_insufficient_not_a_surge() -> None:
    run = relaxed_run(floor_spec())
    decision = run.step(readings(surge=0.33, samples__surge=3))
    rule = decision.rules[0]
    assert (rule.verdict, rule.active, rule.samples) == ("insufficient", False, 3)
    assert "below minSamples 100" in rule.cause
    assert decision.profile == "balanced" and decision.metrics_available
    assert run.step(readings(surge=0.33, samples__surge=500)).profile == "paranoid"


def test_insufficient_counts_as_clear_for_stabilization() -> None:
    run = relaxed_run(floor_spec())
    run.step(readings(surge=0.5, samples__surge=500))
    assert run.decisions[-1].profile == "paranoid"
    run.now += timedelta(minutes=2)
    for _ in range(10):
        assert run.step(readings(surge=0.5, samples__surge=2)).held_by == "stabilizationWindow"
    assert run.step(readings(surge=0.5, samples__surge=2)).profile == "balanced"


def test_no_traffic_behind_the_floor_is_zero_samples_but_an_error_is_unknown() -> None:
    run = relaxed_run(floor_spec())
    assert run.step(readings(surge=0.5, samples__surge=Missing("nan"))).rules[0].samples == 0
    decision = run.step(readings(surge=0.5, samples__surge=Missing("error", "refused")))
    assert decision.rules[0].verdict == "unknown" and "traffic floor" in decision.rules[0].cause


def test_a_rule_samples_query_overrides_the_policy_one_and_the_floor_needs_one() -> None:
    spec = make_spec(rules=[{**SURGE, "minSamples": 10, "samplesQuery": "own[$window]"}])
    assert query_plan(spec, "ns", "p")[("samples", "surge")] == "own[5m]"
    with pytest.raises(ValidationError, match="needs samplesQuery"):
        make_spec(rules=[{**SURGE, "minSamples": 10}])


# -- no traffic vs no data -----------------------------------------------------------------------------


def test_no_traffic_reads_clear_and_no_data_is_unknown_by_default() -> None:
    run = relaxed_run(make_spec(rules=[SURGE], holdFor="1m"))
    quiet = run.step(readings(surge=Missing("nan")))
    rule = quiet.rules[0]
    assert rule.verdict == "clear" and quiet.metrics_available and quiet.held_by is None
    assert "no traffic" in rule.cause and "whenNoTraffic: clear" in rule.cause
    gone = run.step(readings(surge=Missing("empty")))
    assert gone.rules[0].verdict == "unknown" and gone.held_by == "holdFor"
    assert "no data" in gone.rules[0].cause and "whenEmpty: unknown" in gone.metrics_message


def test_when_empty_clear_reads_a_lazily_created_series_as_clear() -> None:
    run = relaxed_run(make_spec(rules=[{**SURGE, "whenEmpty": "clear"}]))
    decision = run.step(readings(surge=Missing("empty")))
    assert decision.rules[0].verdict == "clear" and decision.metrics_available
    assert "no data for surge" in decision.metrics_message


def test_when_no_traffic_hold_keeps_the_verdict_without_the_fail_safe() -> None:
    run = relaxed_run(make_spec(rules=[{**SURGE, "whenNoTraffic": "hold"}], holdFor="30s"))
    run.step(readings(surge=0.5))
    for _ in range(5):
        decision = run.step(readings(surge=Missing("nan")))
        assert decision.profile == "paranoid" and decision.rules[0].verdict == "holds"
        assert decision.metrics_available
    assert run.step(readings(surge=0.01)).rules[0].verdict == "clear"


def test_when_no_traffic_unknown_is_the_fail_safe() -> None:
    run = relaxed_run(make_spec(rules=[{**SURGE, "whenNoTraffic": "unknown"}], holdFor="1m"))
    decision = run.step(readings(surge=Missing("nan")))
    assert decision.rules[0].verdict == "unknown" and decision.held_by == "holdFor"


# -- compound rules -------------------------------------------------------------------------------------

LATENCY_AND_CPU = {
    "name": "overload",
    "allOf": [
        {"name": "latency", "query": "lat", "op": ">", "threshold": 200, "for": 2},
        {"name": "cpu", "query": "cpu", "op": ">", "threshold": 0.8},
    ],
    "profile": "lean",
    "reason": "latency and CPU high",
}


def test_all_of_needs_every_condition_active_each_after_its_own_for() -> None:
    run = relaxed_run(make_spec(rules=[LATENCY_AND_CPU]))
    first = run.step(readings(overload__latency=300, overload__cpu=0.9))
    assert first.rules[0].verdict == "holds" and not first.rules[0].active  # latency: 1 of 2
    assert [c.streak for c in first.rules[0].conditions] == [1, 1]
    assert run.step(readings(overload__latency=300, overload__cpu=0.9)).profile == "lean"
    only_latency = run.step(readings(overload__latency=300, overload__cpu=0.3))
    assert only_latency.rules[0].verdict == "clear" and not only_latency.rules[0].active


def test_all_of_a_clear_condition_decides_even_when_another_is_unknown() -> None:
    run = relaxed_run(make_spec(rules=[LATENCY_AND_CPU]))
    decision = run.step(readings(overload__latency=Missing("error"), overload__cpu=0.3))
    assert decision.rules[0].verdict == "clear" and decision.held_by is None
    unknown = run.step(readings(overload__latency=Missing("error"), overload__cpu=0.9))
    assert unknown.rules[0].verdict == "unknown" and unknown.held_by == "holdFor"


def test_any_of_holds_on_one_active_condition() -> None:
    rule = {**LATENCY_AND_CPU, "anyOf": LATENCY_AND_CPU["allOf"]}
    del rule["allOf"]
    run = relaxed_run(make_spec(rules=[rule]))
    decision = run.step(readings(overload__latency=Missing("error"), overload__cpu=0.95))
    assert decision.rules[0].active and decision.profile == "lean"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"query": "q", "op": ">", "threshold": 1}, "exactly one of query, allOf, anyOf and burnRate"),
        ({"op": ">"}, "op and threshold are required with query"),
        ({"allOf": []}, "exactly one of"),
    ],
)
def test_a_rule_has_exactly_one_shape(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_spec(rules=[{**LATENCY_AND_CPU, **change}])


# -- burn rate -----------------------------------------------------------------------------------------

BURN = {
    "name": "error-budget",
    "burnRate": {
        "objective": 0.999,
        "period": "30d",
        "errors": "sum(rate(errors_total[$window]))",
        "total": "sum(rate(requests_total[$window]))",
    },
    "profile": "lean",
    "reason": "error budget burning",
}


def test_burn_rate_windows_follow_the_workbook_and_scale_with_the_period() -> None:
    spec = make_spec(rules=[{**BURN, "burnRate": {**BURN["burnRate"], "windows": "all"}}])  # type: ignore[dict-item]
    assert burn_pairs(spec.rules[0].burn_rate) == [  # type: ignore[arg-type]
        ("1h", "5m", 14.4),
        ("6h", "30m", 6.0),
        ("1d", "2h", 3.0),
        ("3d", "6h", 1.0),
    ]
    week = make_spec(rules=[{**BURN, "burnRate": {**BURN["burnRate"], "period": "7d"}}])  # type: ignore[dict-item]
    assert burn_pairs(week.rules[0].burn_rate) == [("14m", "1m10s", 14.4), ("1h24m", "7m", 6.0)]  # type: ignore[arg-type]
    plan = query_plan(week, "ns", "p")
    assert plan[("rule", "error-budget", "window", "14m")] == (
        "(sum(rate(errors_total[14m]))) / (sum(rate(requests_total[14m])))"
    )
    assert prometheus_duration(3 * 86400 + 61) == "3d1m1s"


def burn(
    long: float, short: float, slow_long: float = 0.0, slow_short: float = 0.0
) -> dict[QueryKey, Reading]:
    """Error ratios per window (the budget of a 99.9 % SLO is 0.001)."""
    ratios = {"1h": long, "5m": short, "6h": slow_long, "30m": slow_short}
    return {("rule", "error-budget", "window", w): Value(r) for w, r in ratios.items()}


def test_burn_rate_holds_only_when_both_windows_of_a_pair_burn() -> None:
    run = relaxed_run(make_spec(rules=[BURN]))
    spike = run.step(burn(long=0.001, short=0.05))  # a short spike: 1h burns at 1x only
    assert spike.rules[0].verdict == "clear" and spike.profile == "balanced"
    fast = run.step(burn(long=0.02, short=0.03))  # 20x and 30x: the 14.4x pair
    rule = fast.rules[0]
    assert rule.verdict == "holds" and fast.profile == "lean"
    assert (rule.value, rule.threshold) == (pytest.approx(20), 14.4)
    assert [c.name for c in rule.conditions] == ["1h/5m", "6h/30m"]
    assert rule.conditions[0].long_burn_rate == pytest.approx(20)
    slow = run.step(burn(long=0.001, short=0.001, slow_long=0.007, slow_short=0.008))
    assert slow.rules[0].verdict == "holds" and slow.rules[0].threshold == 6.0
    over = run.step(burn(long=0.02, short=0.0005, slow_long=0.007, slow_short=0.0005))
    assert over.rules[0].verdict == "clear"  # the short windows say it stopped


def test_burn_rate_without_traffic_reads_clear_and_an_error_is_unknown() -> None:
    run = relaxed_run(make_spec(rules=[BURN]))
    quiet = {k: Missing("nan") for k in burn(0, 0)}
    assert run.step(quiet).rules[0].verdict == "clear"  # type: ignore[arg-type]
    broken = {**burn(0.02, 0.03), ("rule", "error-budget", "window", "6h"): Missing("error", "x")}
    assert run.step(broken).rules[0].verdict == "holds"  # the fast pair decides an anyOf
    down = {k: Missing("error", "refused") for k in burn(0, 0)}
    assert run.step(down).rules[0].verdict == "unknown"  # type: ignore[arg-type]


def test_burn_rate_queries_must_use_the_window() -> None:
    with pytest.raises(ValidationError, match="must both use"):
        make_spec(rules=[{**BURN, "burnRate": {**BURN["burnRate"], "errors": "sum(errors_total)"}}])  # type: ignore[dict-item]


# -- bounded escalation and shadow profiles -----------------------------------------------------------


def bounded_spec(**overrides: Any) -> DetectionPolicySpec:
    profiles = [
        {"name": "lean", "contributors": ["rules"]},
        {"name": "balanced", "contributors": ["rules", "reputation"]},
        {"name": "paranoid", "contributors": ["rules", "reputation", "llm"], "maxDuration": "10m"},
    ]
    return make_spec(profiles=profiles, rules=[SURGE], **overrides)


def test_an_escalation_expires_after_max_duration_and_needs_a_fresh_breach() -> None:
    run = relaxed_run(bounded_spec())
    assert run.step(readings(surge=0.5)).profile == "paranoid"
    escalated = run.now
    while run.now - escalated < timedelta(minutes=10) - run.interval:
        assert run.step(readings(surge=0.5)).profile == "paranoid"
    expired = run.step(readings(surge=0.5))
    assert expired.profile == "balanced" and expired.expired_now == ("paranoid",)
    assert expired.rules[0].expired and "maxDuration" in expired.reason
    later = run.step(readings(surge=0.5))  # still holding: the same breach stays expired, no new Event
    assert later.profile == "balanced" and later.expired_now == () and later.rules[0].expired
    run.step(readings(surge=0.01))  # it clears...
    run.now += timedelta(minutes=1)
    again = run.step(readings(surge=0.5))  # ...and breaches again: a fresh escalation
    assert again.profile == "paranoid" and not again.rules[0].expired
    assert again.memory.expired == {}


def test_a_shadow_profile_is_decided_and_reported_never_enforced() -> None:
    spec = make_spec(
        profiles=[
            {"name": "lean", "contributors": ["rules"]},
            {"name": "balanced", "contributors": ["rules", "reputation"]},
            {"name": "paranoid", "contributors": ["rules", "llm"], "shadow": True},
        ],
        rules=[SURGE],
    )
    run = relaxed_run(spec)
    decision = run.step(readings(surge=0.5))
    assert decision.profile == "balanced" and decision.shadow == "paranoid"
    assert decision.shadow_reason == "bot surge" and decision.rules[0].shadow
    assert run.step(readings(surge=0.01)).shadow is None
    with pytest.raises(ValidationError, match="must not be shadow"):
        make_spec(profiles=[{"name": "balanced", "shadow": True}], rules=[])


# -- latency target ------------------------------------------------------------------------------------


def test_latency_above_the_active_profile_target_for_n_evaluations_breaches() -> None:
    spec = make_spec(
        profiles=[
            {"name": "lean", "latencyTargetMs": 50},
            {"name": "balanced", "latencyTargetMs": 150},
            {"name": "paranoid", "latencyTargetMs": 500},
        ],
        rules=[],
        contributors=[],
        latency={"query": "p95_ms", "for": 3},
    )
    run = relaxed_run(spec)
    steps = [run.step(readings(latency=180)) for _ in range(3)]
    assert [s.latency.streak for s in steps] == [1, 2, 3]  # type: ignore[union-attr]
    assert steps[-1].latency.breached and steps[-1].latency.target_ms == 150  # type: ignore[union-attr]
    assert not run.step(readings(latency=Missing("nan"))).latency.breached  # type: ignore[union-attr]
    assert run.step(readings(latency=140)).latency.streak == 0  # type: ignore[union-attr]


# -- cache hit ratio in expense classes ---------------------------------------------------------------


def test_a_contributor_missing_its_cache_is_not_light() -> None:
    spec = make_spec(
        expense={
            "queries": {"runtimeMs": "r", "cacheHitRatio": "c"},
            "light": {"runtimeMs": 5, "minCacheHitRatio": 0.9},
            "medium": {"runtimeMs": 50, "minCacheHitRatio": 0.5},
        }
    )
    assert spec.expense is not None
    light, medium = spec.expense.light, spec.expense.medium
    assert classify({"runtime_ms": 2, "cache_hit_ratio": 0.95}, light, medium) == "light"
    assert classify({"runtime_ms": 2, "cache_hit_ratio": 0.6}, light, medium) == "medium"
    assert classify({"runtime_ms": 2, "cache_hit_ratio": 0.2}, light, medium) == "heavy"
    only_cache = decide_policy(
        spec, {("expense", "llm", "cache_hit_ratio"): Value(0.1)}, Run().memory, Run().now
    )
    assert {c.name: (c.expense, c.source) for c in only_cache.costs}["llm"] == ("heavy", "measured")
    with pytest.raises(ValidationError, match="minCacheHitRatio"):
        make_spec(expense={"light": {"minCacheHitRatio": 0.4}, "medium": {"minCacheHitRatio": 0.5}})
