"""The DetectionPolicy decision: (spec, observation, memory, now) -> decision. Pure: no I/O, no clock.

Semantics, in the order they apply:

1. Each condition's reading is *holds*, *clear* or *unknown*; an answer without a number reads as the
   rule says: NaN (0/0: no traffic) by `whenNoTraffic` (clear by default), an empty result (no data: the
   series is not there) by `whenEmpty` (unknown by default). A condition
   that holds for `for` consecutive evaluations becomes *active*; with a `clearThreshold` it stays active
   until the value passes that threshold (hysteresis). Unknown freezes the counters: never read as 0.
   A threshold rule is one condition; `allOf` / `anyOf` combine several (three-valued: a clear condition
   decides an allOf, a holding one an anyOf, whatever the others say); a burn-rate rule holds while any of
   its window pairs burns faster than the pair's factor over both windows.
2. A rule below its traffic floor (`minSamples`) is *insufficient*: it neither holds nor is unknown, and
   starts afresh (its counters reset).
3. The first active rule, in spec order, chooses the profile. If an unknown rule (not `ignoreWhenMissing`)
   comes before every active rule, the decision is *undetermined*. Rules for a `shadow` profile are
   decided and reported ("would be"), never enforced.
4. An escalation into a profile with `maxDuration` ends after it: the rules that held it are *expired*
   until they clear and breach again (a fresh breach), and the policy relaxes without waiting for
   stabilization (the bound is the point).
5. Undetermined: keep the current profile for at most `holdFor`, then `fallbackProfile`.
6. No rule active: relax to `defaultProfile` only once every rule has been clear (or insufficient) for
   `stabilizationWindow`.
7. No switch closer than `minDwell` to the previous one (except the first decision, or when the active
   profile was removed from the spec).
8. The latency check compares the measured detector latency with the latency target of the profile that
   ran while it was measured; `for` evaluations above it raise a latency alert.
"""

from __future__ import annotations

import operator as op
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from ..api.base import parse_duration
from ..api.detection_policy import (
    BurnRate,
    Condition,
    DetectionPolicySpec,
    Expense,
    ExpenseBounds,
    ExternalContributors,
    ExternalService,
    Profile,
    Rule,
)
from ..observe import promql
from ..observe.source import Missing, Reading
from .memory import Memory

Verdict = Literal["holds", "clear", "unknown", "insufficient"]
RuleKind = Literal["threshold", "allOf", "anyOf", "burnRate"]
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

# Prometheus answered without a number: what each cause means for a rule's traffic.
_EMPTY_MEANING = {"empty": "no data (empty: no series)", "nan": "no traffic (nan: zero denominator)"}

BURN_PAIRS: tuple[tuple[str, float, float, float], ...] = (
    ("page", 3600, 300, 14.4),
    ("page", 6 * 3600, 1800, 6.0),
    ("ticket", 86400, 2 * 3600, 3.0),
    ("ticket", 3 * 86400, 6 * 3600, 1.0),
)
"""(severity, long window s, short window s, factor) for a 30-day SLO period (the SRE workbook's table)."""
_BURN_BASE_DAYS = 30

# Keys of the query plan: ("rule", rule) | ("rule", rule, "condition", name) | ("rule", rule, "window", w)
# | ("samples", rule) | ("latency",) | ("expense", contributor, dimension) | ("external", service, dim)
QueryKey = tuple[str, ...]


class RuleMemory(Memory):
    """Per-rule (and per-condition) state carried between evaluations."""

    streak: int = 0
    active: bool = False
    since: datetime | None = None
    """When the current breach began (first holding evaluation): tells a fresh breach from an expired one."""
    conditions: dict[str, RuleMemory] = Field(default_factory=dict)


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
    expired: dict[str, datetime] = Field(default_factory=dict)
    """Profile -> when its escalation reached maxDuration; rules whose breach began before stay expired."""
    shadow: str | None = None
    latency_streak: int = 0
    revision: int = 0
    digest: str | None = None


@dataclass(frozen=True)
class ConditionResult:
    """One condition of a rule, or one burn-rate window pair, in this evaluation."""

    name: str
    value: float | None
    op: str
    threshold: float
    verdict: Verdict
    active: bool
    streak: int
    for_: int = 1
    clear_threshold: float | None = None
    cause: str = ""
    long_burn_rate: float | None = None
    short_burn_rate: float | None = None


@dataclass(frozen=True)
class RuleResult:
    """One rule's outcome in this evaluation (a scorecard row)."""

    name: str
    value: float | None
    op: str
    threshold: float | None
    clear_threshold: float | None
    verdict: Verdict
    active: bool
    streak: int
    for_: int
    profile: str
    reason: str
    cause: str = ""
    kind: RuleKind = "threshold"
    conditions: tuple[ConditionResult, ...] = ()
    samples: float | None = None
    min_samples: float | None = None
    expired: bool = False
    shadow: bool = False


@dataclass(frozen=True)
class LatencyResult:
    """The latency-target check of this evaluation."""

    value_ms: float | None
    target_ms: float | None
    profile: str
    streak: int
    breached: bool
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
    shadow: str | None = None
    """The shadow profile the policy would choose now, if it were enforced."""
    shadow_reason: str = ""
    expired_now: tuple[str, ...] = ()
    """Profiles whose escalation reached maxDuration in this evaluation (an Event each)."""
    latency: LatencyResult | None = None


def rule_kind(rule: Rule) -> RuleKind:
    """threshold, allOf, anyOf or burnRate."""
    if rule.burn_rate is not None:
        return "burnRate"
    if rule.all_of:
        return "allOf"
    return "anyOf" if rule.any_of else "threshold"


def prometheus_duration(seconds: float) -> str:
    """Whole seconds as a PromQL duration: 3600 -> '1h', 840 -> '14m', 70 -> '1m10s'."""
    left = max(1, round(seconds))
    text = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        if count:
            text += f"{count}{unit}"
    return text


def burn_pairs(burn: BurnRate) -> list[tuple[str, str, float]]:
    """(long window, short window, factor) of the pairs a burn-rate rule checks, scaled to its period."""
    scale = int(burn.period[:-1]) / _BURN_BASE_DAYS
    return [
        (prometheus_duration(long * scale), prometheus_duration(short * scale), factor)
        for severity, long, short, factor in BURN_PAIRS
        if burn.windows in ("all", severity)
    ]


def burn_query(burn: BurnRate, window: str, values: Mapping[str, str]) -> str:
    """The error ratio over one window (bad / total), rendered."""
    rendered = {**values, "window": window}
    return f"({promql.render(burn.errors, rendered)}) / ({promql.render(burn.total, rendered)})"


def _rule_queries(rule: Rule, base: Mapping[str, str], samples: str | None) -> dict[QueryKey, str]:
    plan: dict[QueryKey, str] = {}
    if rule.burn_rate is not None:
        windows = dict.fromkeys(w for long, short, _ in burn_pairs(rule.burn_rate) for w in (long, short))
        for window in windows:
            plan[("rule", rule.name, "window", window)] = burn_query(rule.burn_rate, window, base)
    elif rule.all_of or rule.any_of:
        for condition in rule.conditions:
            plan[("rule", rule.name, "condition", condition.name)] = promql.render(condition.query, base)
    else:
        assert rule.query is not None
        plan[("rule", rule.name)] = promql.render(rule.query, base)
    if rule.min_samples is not None:
        template = rule.samples_query or samples
        assert template is not None  # the spec invariant guarantees one
        plan[("samples", rule.name)] = promql.render(template, base)
    return plan


def query_plan(spec: DetectionPolicySpec, namespace: str, name: str) -> dict[QueryKey, str]:
    """Every query one evaluation runs, rendered, keyed by what it measures."""
    base = {"namespace": namespace, "policy": name, "window": spec.window}
    plan: dict[QueryKey, str] = {}
    for rule in spec.rules:
        plan.update(_rule_queries(rule, base, spec.samples_query))
    if spec.latency is not None:
        plan[("latency",)] = promql.render(spec.latency.query, base)
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


def _cleared(condition: Condition, value: float) -> bool:
    """Whether an active condition's value has passed its clearing threshold."""
    if condition.clear_threshold is None:
        return not _COMPARE[condition.op](value, condition.threshold)
    if condition.op in (">", ">="):
        return value < condition.clear_threshold
    return value > condition.clear_threshold


def _breach(memory: RuleMemory, holds: bool, for_: int, now: datetime | None) -> RuleMemory:
    """Advance a streak by one evaluation that holds or not."""
    if not holds:
        return RuleMemory()
    streak = memory.streak + 1
    since = memory.since if memory.streak else now
    return RuleMemory(streak=streak, active=memory.active or streak >= for_, since=since)


def _empty(reads: Condition | Rule, reading: Missing, memory: RuleMemory) -> tuple[Verdict, RuleMemory, str]:
    """How an answer without a number reads: NaN by whenNoTraffic, an empty result by whenEmpty."""
    meaning = _EMPTY_MEANING[reading.cause]
    field, choice = (
        ("whenNoTraffic", reads.when_no_traffic)
        if reading.cause == "nan"
        else ("whenEmpty", reads.when_empty)
    )
    if choice == "clear":
        return "clear", RuleMemory(), f"{meaning}: reads clear ({field}: clear)"
    if choice == "hold":
        verdict: Verdict = "holds" if memory.streak else "clear"
        return verdict, memory, f"{meaning}: previous verdict kept ({field}: hold)"
    return "unknown", memory, f"{meaning} ({field}: unknown)"


def evaluate_condition(
    condition: Condition, reading: Reading | None, memory: RuleMemory, now: datetime | None = None
) -> tuple[ConditionResult, RuleMemory]:
    """Apply one reading to one condition: verdict, `for` streak and hysteresis latch."""
    if reading is None:
        reading = Missing("error", "not queried")
    value = None
    if isinstance(reading, Missing):
        if reading.cause in _EMPTY_MEANING:
            verdict, new, cause = _empty(condition, reading, memory)
        else:
            verdict, new, cause = "unknown", memory, str(reading)
    else:
        value = reading.value
        holds = (memory.active and not _cleared(condition, value)) or _COMPARE[condition.op](
            value, condition.threshold
        )
        new = _breach(memory, holds, condition.for_, now)
        verdict, cause = ("holds" if holds else "clear"), ""
    result = ConditionResult(
        name=condition.name,
        value=value,
        op=condition.op,
        threshold=condition.threshold,
        clear_threshold=condition.clear_threshold,
        verdict=verdict,
        active=new.active,
        streak=new.streak,
        for_=condition.for_,
        cause=cause,
    )
    return result, new


def _combine(verdicts: list[Verdict], all_of: bool) -> Verdict:
    """Three-valued AND / OR: a clear condition decides an allOf, a holding one an anyOf."""
    decisive: Verdict = "clear" if all_of else "holds"
    if decisive in verdicts:
        return decisive
    if "unknown" in verdicts:
        return "unknown"
    return "holds" if all_of else "clear"


def _burn_pairs(
    rule: Rule, burn: BurnRate, observation: Mapping[QueryKey, Reading], memory: RuleMemory
) -> tuple[Verdict, tuple[ConditionResult, ...], str]:
    results = []
    causes = []
    for long, short, factor in burn_pairs(burn):
        burns: list[float | None] = []
        verdicts: list[Verdict] = []
        for window in (long, short):
            key = ("rule", rule.name, "window", window)
            reading = observation.get(key) or Missing("error", "not queried")
            if isinstance(reading, Missing):
                if reading.cause in _EMPTY_MEANING:
                    verdict, _, cause = _empty(rule, reading, memory)
                else:
                    verdict, cause = "unknown", str(reading)
                causes.append(f"{window}: {cause}")
                burns.append(None)
                verdicts.append(verdict)
            else:
                burned = reading.value / (1 - burn.objective)
                burns.append(burned)
                verdicts.append("holds" if burned > factor else "clear")
        verdict = _combine(verdicts, all_of=True)
        known = [b for b in burns if b is not None]
        results.append(
            ConditionResult(
                name=f"{long}/{short}",
                value=min(known) if len(known) == 2 else None,
                op=">",
                threshold=factor,
                verdict=verdict,
                active=verdict == "holds",
                streak=0,
                long_burn_rate=burns[0],
                short_burn_rate=burns[1],
            )
        )
    return _combine([r.verdict for r in results], all_of=False), tuple(results), "; ".join(causes)


def evaluate_rule(
    rule: Rule,
    observation: Mapping[QueryKey, Reading],
    memory: RuleMemory,
    now: datetime | None = None,
) -> tuple[RuleResult, RuleMemory]:
    """Evaluate one rule of any kind, its traffic floor included."""
    kind = rule_kind(rule)
    conditions: tuple[ConditionResult, ...] = ()
    value: float | None = None
    threshold = rule.threshold
    if rule.burn_rate is not None:
        verdict, conditions, cause = _burn_pairs(rule, rule.burn_rate, observation, memory)
        worst = max(
            (c for c in conditions if c.value is not None),
            key=lambda c: (c.value or 0.0) / c.threshold,
            default=None,
        )
        value, threshold = (worst.value, worst.threshold) if worst else (None, None)
        holds = verdict == "holds"
        new = memory if verdict == "unknown" else _breach(memory, holds, rule.for_, now)
    elif kind == "threshold":
        (condition,) = rule.conditions
        single, new = evaluate_condition(condition, observation.get(("rule", rule.name)), memory, now)
        verdict, value, cause = single.verdict, single.value, single.cause
    else:
        memories: dict[str, RuleMemory] = {}
        evaluated = []
        for condition in rule.conditions:
            reading = observation.get(("rule", rule.name, "condition", condition.name))
            previous = memory.conditions.get(condition.name, RuleMemory())
            row, memories[condition.name] = evaluate_condition(condition, reading, previous, now)
            evaluated.append(row)
        conditions = tuple(evaluated)
        verdict = _combine([c.verdict for c in conditions], all_of=kind == "allOf")
        combine = all if kind == "allOf" else any
        active = combine(c.active for c in conditions)
        streak = memory.streak + 1 if verdict == "holds" else 0
        since = (memory.since if memory.streak else now) if verdict == "holds" else None
        new = RuleMemory(streak=streak, active=active, since=since, conditions=memories)
        cause = "; ".join(f"{c.name}: {c.cause}" for c in conditions if c.cause)
    samples = None
    if rule.min_samples is not None:
        reading = observation.get(("samples", rule.name)) or Missing("error", "not queried")
        if isinstance(reading, Missing) and reading.cause not in _EMPTY_MEANING:
            verdict, new, cause = "unknown", memory, f"traffic floor: {reading}"
        else:
            samples = _value(reading) or 0.0
            if samples < rule.min_samples:
                verdict, new = "insufficient", RuleMemory()
                cause = f"{samples:g} samples, below minSamples {rule.min_samples:g}"
    if verdict == "unknown" and rule.ignore_when_missing:
        verdict, new, cause = "clear", RuleMemory(), f"{cause} (ignored: ignoreWhenMissing)"
    result = RuleResult(
        name=rule.name,
        value=value,
        op=rule.op or ">",
        threshold=threshold,
        clear_threshold=rule.clear_threshold,
        verdict=verdict,
        active=new.active,
        streak=new.streak,
        for_=rule.for_,
        profile=rule.profile,
        reason=rule.reason,
        cause=cause,
        kind=kind,
        conditions=conditions,
        samples=samples,
        min_samples=rule.min_samples,
    )
    return result, new


def classify(values: Mapping[str, float], light: ExpenseBounds, medium: ExpenseBounds) -> Expense:
    """Expense class of measured ``values`` (by dimension): the first class whose bounds all hold."""
    for name, bounds in (("light", light), ("medium", medium)):
        within = all(
            (bound := getattr(bounds, dim)) is None or dim not in values or values[dim] <= bound
            for dim in ("runtime_ms", "memory_mb", "timeout_rate")
        )
        hits = values.get("cache_hit_ratio")
        # A contributor that misses its cache does the expensive work on every request.
        cached = bounds.min_cache_hit_ratio is None or hits is None or hits >= bounds.min_cache_hit_ratio
        if within and cached:
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
        if spec.expense is not None and values:
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


def _escalation_expired(
    spec: DetectionPolicySpec, result: RuleResult, since: datetime | None, memory: PolicyMemory, now: datetime
) -> tuple[bool, bool]:
    """Whether an active rule's escalation is past its profile's maxDuration, and whether that is new."""
    profile = next(p for p in spec.profiles if p.name == result.profile)
    if profile.max_duration is None:
        return False, False
    expired_at = memory.expired.get(profile.name)
    if expired_at is not None and (since is None or since <= expired_at):
        return True, False
    in_escalation = memory.profile == profile.name and memory.since is not None
    if in_escalation and now - memory.since >= _seconds(profile.max_duration):  # type: ignore[operator]
        return True, True
    return False, False


def latency_check(
    spec: DetectionPolicySpec, observation: Mapping[QueryKey, Reading], memory: PolicyMemory, profile: str
) -> tuple[LatencyResult | None, int]:
    """The measured latency against the target of ``profile`` (the one that ran while it was measured)."""
    if spec.latency is None:
        return None, 0
    target = next((p.latency_target_ms for p in spec.profiles if p.name == profile), None)
    reading = observation.get(("latency",)) or Missing("error", "not queried")
    value, cause = None, ""
    if isinstance(reading, Missing):
        if reading.cause in _EMPTY_MEANING:
            streak, cause = 0, _EMPTY_MEANING[reading.cause]
        else:
            streak, cause = memory.latency_streak, str(reading)  # unknown: counters frozen
    else:
        value = reading.value
        streak = memory.latency_streak + 1 if target is not None and value > target else 0
    breached = streak >= spec.latency.for_
    return LatencyResult(value, target, profile, streak, breached, cause), streak


def _answered(results: list[RuleResult]) -> str:
    """'all rule queries answered', naming the rules that got an empty result (a typo reads the same)."""
    empty = [r.name for r in results if r.cause.startswith(_EMPTY_MEANING["empty"])]
    return "all rule queries answered" + (f"; no data for {', '.join(empty)}" if empty else "")


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
    shadow: RuleResult | None = None
    undetermined = False
    all_clear = True
    unknown: list[str] = []
    expired_now: list[str] = []
    expired: dict[str, datetime] = {}
    shadows = {p.name for p in spec.profiles if p.shadow}
    for rule in spec.rules:
        result, new = evaluate_rule(rule, observation, memory.rules.get(rule.name, RuleMemory()), now)
        rule_memory[rule.name] = new
        if result.profile in shadows:
            # Decided and shown, never enforced: it takes no part in what is published.
            if result.active and winner is None and shadow is None and not undetermined:
                shadow = result
            results.append(replace(result, shadow=True))
            continue
        if result.active:
            is_expired, newly = _escalation_expired(spec, result, new.since, memory, now)
            if is_expired:
                expired[result.profile] = memory.expired.get(result.profile, now)
                if newly and result.profile not in expired_now:
                    expired_now.append(result.profile)
                result = replace(result, expired=True)
        results.append(result)
        if result.verdict == "unknown":
            unknown.append(f"rule {rule.name}: {result.cause}")
            undetermined = undetermined or winner is None
        if result.active and not result.expired and winner is None and not undetermined:
            winner = result
        all_clear = all_clear and (result.verdict in ("clear", "insufficient") or result.expired)

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
        if current in expired:
            reason = f"escalation to {current} reached its maxDuration: relaxing"
        elif current in profile_names and current != target and stabilizing:
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
    latency, latency_streak = latency_check(spec, observation, memory, current or target)
    shadow_profile = shadow.profile if shadow is not None and shadow.profile != target else None
    new_memory = PolicyMemory(
        profile=target,
        since=now if switched else memory.since,
        rules=rule_memory,
        clear_since=clear_since,
        unknown_since=unknown_since,
        circuits=circuits,
        expense={c.name: c.expense for c in costs if c.source in ("measured", "remembered")},
        expired=expired,
        shadow=shadow_profile,
        latency_streak=0 if switched else latency_streak,
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
        metrics_message="; ".join(unknown) if unknown else _answered(results),
        rules=tuple(results),
        contributors=enabled_contributors(profile, costs),
        costs=costs,
        externals=externals,
        memory=new_memory,
        circuit_changes=changes,
        shadow=shadow_profile,
        shadow_reason=shadow.reason if shadow_profile and shadow else "",
        expired_now=tuple(expired_now),
        latency=latency,
    )
