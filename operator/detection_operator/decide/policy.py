"""The DetectionPolicy decision: (spec, observation, memory, now) -> decision. Pure: no I/O, no clock.

Semantics, in the order they apply:

1. Each rule's reading is *holds*, *clear* or *unknown*. A rule that holds for `for` consecutive
   evaluations becomes *active*; an active rule with a `clearThreshold` stays active until the value passes
   that threshold (hysteresis). Unknown freezes the rule's counters: it is never read as 0 or as clear.
2. The first active rule, in spec order, chooses the profile. If an unknown rule (not `ignoreWhenMissing`)
   comes before every active rule, the decision is *undetermined*.
3. Undetermined: keep the current profile for at most `holdFor`, then `fallbackProfile`.
4. No rule active: relax to `defaultProfile` only once every rule has been clear for
   `stabilizationWindow`.
5. No switch closer than `minDwell` to the previous one (except the first decision, or when the active
   profile was removed from the spec).
"""

from __future__ import annotations

import operator as op
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from ..api.base import parse_duration
from ..api.detection_policy import (
    DetectionPolicySpec,
    Expense,
    ExpenseBounds,
    ExternalContributors,
    ExternalService,
    Profile,
    Rule,
)
from ..metrics import promql
from ..metrics.source import Missing, Reading
from .memory import Memory

Verdict = Literal["holds", "clear", "unknown"]
CircuitState = Literal["closed", "open", "half-open"]
CostSource = Literal["measured", "remembered", "declared", "assumed"]

EXPENSE_RANK: dict[str, int] = {"light": 0, "medium": 1, "heavy": 2}
EXPENSE_DIMENSIONS = ("runtime_ms", "memory_mb", "cache_hit_ratio", "timeout_rate")
EXTERNAL_DIMENSIONS = ("error_rate", "p95_latency_ms", "accuracy")

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": op.gt,
    ">=": op.ge,
    "<": op.lt,
    "<=": op.le,
    "==": op.eq,
    "!=": op.ne,
}

# Keys of the query plan: ("rule", rule) | ("expense", contributor, dimension) | ("external", service, dim)
QueryKey = tuple[str, ...]


class RuleMemory(Memory):
    """Per-rule state carried between evaluations."""

    streak: int = 0
    active: bool = False


class Circuit(Memory):
    """Circuit breaker of one external service."""

    state: CircuitState = "closed"
    since: datetime | None = None
    reason: str = ""


class PolicyMemory(Memory):
    """Everything the decision needs from earlier evaluations; stored in status.memory."""

    profile: str | None = None
    since: datetime | None = None
    rules: dict[str, RuleMemory] = Field(default_factory=dict)
    clear_since: datetime | None = None
    unknown_since: datetime | None = None
    circuits: dict[str, Circuit] = Field(default_factory=dict)
    expense: dict[str, Expense] = Field(default_factory=dict)
    revision: int = 0
    digest: str | None = None


@dataclass(frozen=True)
class RuleResult:
    """One rule's outcome in this evaluation (a scorecard row)."""

    name: str
    value: float | None
    op: str
    threshold: float
    clear_threshold: float | None
    verdict: Verdict
    active: bool
    streak: int
    for_: int
    profile: str
    reason: str
    cause: str = ""


@dataclass(frozen=True)
class ContributorCost:
    """A contributor's measured cost and expense class."""

    name: str
    expense: Expense
    source: CostSource
    runtime_ms: float | None = None
    memory_mb: float | None = None
    cache_hit_ratio: float | None = None
    timeout_rate: float | None = None


@dataclass(frozen=True)
class ExternalStatus:
    """An external service's health, circuit and effective weight."""

    name: str
    enabled: bool
    circuit: CircuitState
    circuit_reason: str
    weight: float
    base_weight: float
    timeout_ms: int
    error_rate: float | None = None
    p95_latency_ms: float | None = None
    accuracy: float | None = None


@dataclass(frozen=True)
class PolicyDecision:
    """What the policy should publish now, why, and the memory for the next evaluation."""

    profile: str
    previous: str | None
    switched: bool
    reason: str
    held_by: str | None
    metrics_available: bool
    metrics_message: str
    rules: tuple[RuleResult, ...]
    contributors: tuple[str, ...]
    costs: tuple[ContributorCost, ...]
    externals: tuple[ExternalStatus, ...]
    memory: PolicyMemory
    circuit_changes: tuple[str, ...] = field(default=())


def query_plan(spec: DetectionPolicySpec, namespace: str, name: str) -> dict[QueryKey, str]:
    """Every query one evaluation runs, rendered, keyed by what it measures."""
    base = {"namespace": namespace, "policy": name, "window": spec.window}
    plan: dict[QueryKey, str] = {("rule", r.name): promql.render(r.query, base) for r in spec.rules}
    if spec.expense is not None:
        values = {**base, "window": spec.expense.window}
        for contributor in spec.contributors:
            for dim in EXPENSE_DIMENSIONS:
                if template := getattr(spec.expense.queries, dim):
                    key = ("expense", contributor.name, dim)
                    plan[key] = promql.render(template, {**values, "contributor": contributor.name})
    if spec.external_contributors is not None:
        for service in spec.external_contributors.services:
            for dim in EXTERNAL_DIMENSIONS:
                if template := getattr(spec.external_contributors.queries, dim):
                    key = ("external", service.name, dim)
                    plan[key] = promql.render(template, {**base, "contributor": service.name})
    return plan


def _value(reading: Reading | None) -> float | None:
    return None if reading is None or isinstance(reading, Missing) else reading.value


def _cleared(rule: Rule, value: float) -> bool:
    """Whether an active rule's value has passed its clearing threshold."""
    if rule.clear_threshold is None:
        return not _COMPARE[rule.op](value, rule.threshold)
    if rule.op in (">", ">="):
        return value < rule.clear_threshold
    return value > rule.clear_threshold


def evaluate_rule(rule: Rule, reading: Reading | None, memory: RuleMemory) -> tuple[RuleResult, RuleMemory]:
    """Apply one reading to one rule: verdict, `for` streak and hysteresis latch."""
    if reading is None:
        reading = Missing("error", "not queried")
    if isinstance(reading, Missing):
        if rule.ignore_when_missing:
            verdict: Verdict = "clear"
            new = RuleMemory()
            cause = f"{reading} (ignored: ignoreWhenMissing)"
        else:
            verdict, new, cause = "unknown", memory, str(reading)
        value = None
    else:
        value = reading.value
        holds = (memory.active and not _cleared(rule, value)) or _COMPARE[rule.op](value, rule.threshold)
        if holds:
            streak = memory.streak + 1
            new = RuleMemory(streak=streak, active=memory.active or streak >= rule.for_)
            verdict = "holds"
        else:
            new, verdict = RuleMemory(), "clear"
        cause = ""
    result = RuleResult(
        name=rule.name,
        value=value,
        op=rule.op,
        threshold=rule.threshold,
        clear_threshold=rule.clear_threshold,
        verdict=verdict,
        active=new.active,
        streak=new.streak,
        for_=rule.for_,
        profile=rule.profile,
        reason=rule.reason,
        cause=cause,
    )
    return result, new


def classify(values: Mapping[str, float], light: ExpenseBounds, medium: ExpenseBounds) -> Expense:
    """Expense class of measured ``values`` (by dimension): the first class whose bounds all hold."""
    for name, bounds in (("light", light), ("medium", medium)):
        if all(
            (bound := getattr(bounds, dim)) is None or dim not in values or values[dim] <= bound
            for dim in ("runtime_ms", "memory_mb", "timeout_rate")
        ):
            return name  # type: ignore[return-value]
    return "heavy"


def contributor_costs(
    spec: DetectionPolicySpec, observation: Mapping[QueryKey, Reading], memory: PolicyMemory
) -> tuple[ContributorCost, ...]:
    """Each contributor's cost: measured if any cost query answered, else remembered, declared, or heavy."""
    costs = []
    for contributor in spec.contributors:
        values = {
            dim: v
            for dim in EXPENSE_DIMENSIONS
            if (v := _value(observation.get(("expense", contributor.name, dim)))) is not None
        }
        source: CostSource
        if spec.expense is not None and values.keys() - {"cache_hit_ratio"}:
            expense, source = classify(values, spec.expense.light, spec.expense.medium), "measured"
        elif contributor.name in memory.expense:
            expense, source = memory.expense[contributor.name], "remembered"
        elif contributor.expense is not None:
            expense, source = contributor.expense, "declared"
        else:
            # Unknown cost must not slip into a cheap profile.
            expense, source = "heavy", "assumed"
        costs.append(ContributorCost(name=contributor.name, expense=expense, source=source, **values))
    return tuple(costs)


def enabled_contributors(profile: Profile, costs: tuple[ContributorCost, ...]) -> tuple[str, ...]:
    """Contributors a profile enables: those it lists, plus those within its maxExpense, in spec order."""
    ceiling = EXPENSE_RANK[profile.max_expense] if profile.max_expense else -1
    listed = set(profile.contributors)
    return tuple(c.name for c in costs if c.name in listed or EXPENSE_RANK[c.expense] <= ceiling)


def _next_circuit(
    circuit: Circuit, problems: list[str], measured: bool, cool_down: timedelta, now: datetime
) -> Circuit:
    if problems:
        if circuit.state == "open":
            return circuit
        return Circuit(state="open", since=now, reason="; ".join(problems))
    if not measured:
        return circuit  # no evidence either way: keep the state
    if circuit.state == "open":
        if circuit.since is None or now - circuit.since >= cool_down:
            return Circuit(state="half-open", since=now, reason="cool-down over, healthy: on trial")
        return circuit
    if circuit.state == "half-open":
        return Circuit(state="closed", since=now, reason="healthy after trial")
    return circuit


def external_statuses(
    external: ExternalContributors | None,
    observation: Mapping[QueryKey, Reading],
    memory: PolicyMemory,
    allow: bool,
    now: datetime,
) -> tuple[tuple[ExternalStatus, ...], dict[str, Circuit], tuple[str, ...]]:
    """Circuit breaker and accuracy-scaled weight of each external service."""
    if external is None:
        return (), {}, ()
    statuses: list[ExternalStatus] = []
    circuits: dict[str, Circuit] = {}
    changes: list[str] = []
    cool_down = timedelta(seconds=parse_duration(external.circuit.cool_down))
    for service in external.services:
        error_rate, p95, accuracy = (
            _value(observation.get(("external", service.name, dim))) for dim in EXTERNAL_DIMENSIONS
        )
        problems = []
        if error_rate is not None and error_rate > external.circuit.max_error_rate:
            problems.append(f"error rate {error_rate:.1%} above {external.circuit.max_error_rate:.1%}")
        if p95 is not None and p95 > service.timeout_ms:
            problems.append(f"p95 latency {p95:.0f} ms above the {service.timeout_ms} ms budget")
        previous = memory.circuits.get(service.name, Circuit())
        circuit = _next_circuit(previous, problems, error_rate is not None or p95 is not None, cool_down, now)
        circuits[service.name] = circuit
        if circuit.state != previous.state:
            changes.append(f"external service {service.name}: circuit {previous.state} -> {circuit.state}")
        statuses.append(
            ExternalStatus(
                name=service.name,
                enabled=allow and circuit.state != "open",
                circuit=circuit.state,
                circuit_reason=circuit.reason,
                weight=effective_weight(service, external, accuracy, circuit.state),
                base_weight=service.weight,
                timeout_ms=service.timeout_ms,
                error_rate=error_rate,
                p95_latency_ms=p95,
                accuracy=accuracy,
            )
        )
    return tuple(statuses), circuits, tuple(changes)


def effective_weight(
    service: ExternalService, external: ExternalContributors, accuracy: float | None, state: CircuitState
) -> float:
    """Base weight * accuracy / baselineAccuracy, clamped to [minWeight, maxWeight]; 0 while open."""
    if state == "open":
        return 0.0
    if state == "half-open":
        return external.min_weight
    weight = service.weight if accuracy is None else service.weight * accuracy / external.baseline_accuracy
    return round(min(max(weight, external.min_weight), external.max_weight), 4)


def _seconds(text: str) -> timedelta:
    return timedelta(seconds=parse_duration(text))


def decide_policy(
    spec: DetectionPolicySpec,
    observation: Mapping[QueryKey, Reading],
    memory: PolicyMemory,
    now: datetime,
) -> PolicyDecision:
    """Choose the profile to publish now, following the semantics in this module's docstring."""
    results: list[RuleResult] = []
    rule_memory: dict[str, RuleMemory] = {}
    winner: RuleResult | None = None
    undetermined = False
    all_clear = True
    unknown: list[str] = []
    for rule in spec.rules:
        reading = observation.get(("rule", rule.name))
        result, new = evaluate_rule(rule, reading, memory.rules.get(rule.name, RuleMemory()))
        results.append(result)
        rule_memory[rule.name] = new
        if result.verdict == "unknown":
            unknown.append(f"rule {rule.name}: {result.cause}")
            undetermined = undetermined or winner is None
        if result.active and winner is None and not undetermined:
            winner = result
        all_clear = all_clear and result.verdict == "clear"

    clear_since = (memory.clear_since or now) if all_clear else None
    unknown_since = (memory.unknown_since or now) if undetermined and winner is None else None
    current = memory.profile
    profile_names = {p.name for p in spec.profiles}
    held_by: str | None = None

    if undetermined and winner is None:
        hold_for = _seconds(spec.hold_for)
        assert unknown_since is not None
        if current in profile_names and now - unknown_since < hold_for:
            target, reason, held_by = current, f"metrics unavailable, holding {current}", "holdFor"
        else:
            target = spec.fallback_profile
            reason = f"metrics unavailable for {spec.hold_for}: fallback"
    elif winner is not None:
        target, reason = winner.profile, winner.reason
    else:
        target, reason = spec.default_profile, "no rule holds"
        stabilization = _seconds(spec.stabilization_window)
        stabilizing = clear_since is None or now - clear_since < stabilization
        if current in profile_names and current != target and stabilizing:
            target, held_by = current, "stabilizationWindow"
            reason = f"rules clear, stabilizing before relaxing to {spec.default_profile}"

    assert target is not None
    if (
        current in profile_names
        and target != current
        and memory.since is not None
        and now - memory.since < _seconds(spec.min_dwell)
    ):
        held_by = "minDwell"
        reason = f"{reason}; switch to {target} held by minDwell"
        target = current

    switched = target != current
    profile = next(p for p in spec.profiles if p.name == target)
    costs = contributor_costs(spec, observation, memory)
    externals, circuits, changes = external_statuses(
        spec.external_contributors, observation, memory, profile.allow_external, now
    )
    new_memory = PolicyMemory(
        profile=target,
        since=now if switched else memory.since,
        rules=rule_memory,
        clear_since=clear_since,
        unknown_since=unknown_since,
        circuits=circuits,
        expense={c.name: c.expense for c in costs if c.source in ("measured", "remembered")},
        revision=memory.revision,
        digest=memory.digest,
    )
    return PolicyDecision(
        profile=target,
        previous=current,
        switched=switched,
        reason=reason,
        held_by=held_by,
        metrics_available=not unknown,
        metrics_message="; ".join(unknown) if unknown else "all rule queries answered",
        rules=tuple(results),
        contributors=enabled_contributors(profile, costs),
        costs=costs,
        externals=externals,
        memory=new_memory,
        circuit_changes=changes,
    )
