"""DetectionPolicy (dp): which detection profile a bot detector should run right now."""

from __future__ import annotations

import functools
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from . import sdk_catalog
from .base import (
    INTERVAL_BOUNDS,
    WINDOW_POSITIVE,
    Duration,
    Invariant,
    Name,
    ObjectName,
    SpecModel,
    list_map,
    list_set,
)
from .common import (
    HISTORY_LIMIT,
    METRICS_FROM_DESCRIPTION,
    QUERY_LIMITS,
    AlertSpec,
    MetricsFrom,
    ObjectStatus,
    PrometheusRef,
    SdkMetrics,
    SecretKeySelector,
    StatusModel,
    Timestamp,
    promql_checker,
    sdk_checker,
)
from .contract import LatencyRow, RuleRow

KIND = "DetectionPolicy"
PLURAL = "detectionpolicies"

RULE_VARIABLES = frozenset({"namespace", "policy", "window"})
CONTRIBUTOR_VARIABLES = RULE_VARIABLES | {"contributor"}

RuleQuery = Annotated[str, QUERY_LIMITS, AfterValidator(promql_checker(RULE_VARIABLES))]
ContributorQuery = Annotated[str, QUERY_LIMITS, AfterValidator(promql_checker(CONTRIBUTOR_VARIABLES))]

Expense = Literal["light", "medium", "heavy"]
Signal = Literal["ua", "ip", "headers", "asn", "geo", "tls-fingerprint"]
Operator = Literal[">", ">=", "<", "<=", "==", "!="]

_RAISING_OPS = (">", ">=")
_FALLING_OPS = ("<", "<=")


WhenEmpty = Literal["clear", "hold", "unknown"]
BurnWindows = Literal["page", "ticket", "all"]

_CLEAR_THRESHOLD_CEL = (
    "!has(self.clearThreshold) || ((self.op == '>' || self.op == '>=') ? "
    "self.clearThreshold <= self.threshold : ((self.op == '<' || self.op == '<=') ? "
    "self.clearThreshold >= self.threshold : false))"
)
_CLEAR_THRESHOLD_MESSAGE = (
    "clearThreshold must be on the clearing side of threshold (<= threshold for > and >=, "
    ">= threshold for < and <=) and is not allowed with == or !="
)


def _clear_threshold_ok(condition: Condition | Rule) -> bool:
    if condition.clear_threshold is None:
        return True
    if condition.threshold is None:
        return False
    if condition.op in _RAISING_OPS:
        return condition.clear_threshold <= condition.threshold
    if condition.op in _FALLING_OPS:
        return condition.clear_threshold >= condition.threshold
    return False


_WHEN_NO_TRAFFIC_DESCRIPTION = (
    "How NaN reads (a ratio over counters that stopped growing, 0/0: no traffic). clear (default): "
    "nothing happened, so nothing to react to; hold: keep the previous verdict and counters without "
    "starting the holdFor fail-safe; unknown: like a failed query (holdFor, then fallbackProfile)."
)
_WHEN_EMPTY_DESCRIPTION = (
    "How an empty result reads (no data: the series is not there, e.g. the detector is gone, its scrape "
    "broke, or an error counter that exists only after the first error). unknown (default): the holdFor "
    "fail-safe; clear: the condition does not hold (for series created lazily); hold: keep the previous "
    "verdict and counters. Errors and timeouts are always unknown."
)


class Condition(SpecModel):
    """One threshold condition of a compound rule (allOf / anyOf), with its own `for`."""

    name: Name = Field(description="Condition name, unique in the rule; shown in status and the scorecard.")
    query: RuleQuery = Field(description="PromQL returning exactly one sample (placeholders as for rules).")
    op: Operator = Field(description="Comparison of the query's value against threshold.")
    threshold: float = Field(description="The condition holds when `value op threshold`.")
    clear_threshold: float | None = Field(
        default=None, description="Hysteresis, as for a rule's clearThreshold."
    )
    for_: int = Field(
        default=1,
        alias="for",
        ge=1,
        le=100,
        description="Consecutive evaluations the condition must hold before it counts as active.",
    )
    when_no_traffic: WhenEmpty = Field(default="clear", description=_WHEN_NO_TRAFFIC_DESCRIPTION)
    when_empty: WhenEmpty = Field(default="unknown", description=_WHEN_EMPTY_DESCRIPTION)

    invariants = (
        Invariant(
            field=".clearThreshold",
            message=_CLEAR_THRESHOLD_MESSAGE,
            cel=_CLEAR_THRESHOLD_CEL,
            holds=_clear_threshold_ok,
        ),
    )


class BurnRate(SpecModel):
    """A multi-window, multi-burn-rate SLO rule (the SRE workbook's alerting on error budget burn).

    The burn rate over a window is (errors / total) / (1 - objective). A pair (long, short, factor) holds
    when both windows burn faster than factor. For a 30d period the pairs are 14.4x over 1h and 5m, 6x over
    6h and 30m (page), 3x over 1d and 2h, 1x over 3d and 6h (ticket); windows scale with the period (a 7d
    period: 14.4x over 14m and 70s), so each pair still means the same share of the budget spent.
    """

    objective: float = Field(gt=0, lt=1, description="SLO target, e.g. 0.999 for 99.9 %.")
    period: Annotated[str, Field(pattern=r"^[1-9][0-9]{0,2}d$", max_length=4)] = Field(
        default="30d", description="SLO period in days, e.g. 30d or 28d; the windows scale with it."
    )
    errors: RuleQuery = Field(
        description="PromQL of bad events per second over $window, e.g. sum(rate(errors_total[$window]))."
    )
    total: RuleQuery = Field(
        description="PromQL of all events per second over $window, e.g. sum(rate(requests_total[$window]))."
    )
    windows: BurnWindows = Field(
        default="page",
        description=(
            "Which pairs make the rule hold: page (14.4x and 6x: fast burns, the default, as a profile "
            "switch is an immediate response), ticket (3x and 1x: slow burns) or all."
        ),
    )

    invariants = (
        Invariant(
            field=".errors",
            message="errors and total must both use $window (each pair runs them over its own windows)",
            cel="self.errors.contains('$window') && self.total.contains('$window')",
            holds=lambda b: "$window" in b.errors and "$window" in b.total,
        ),
    )


def _one_shape(rule: Rule) -> bool:
    shapes = [rule.query is not None, bool(rule.all_of), bool(rule.any_of), rule.burn_rate is not None]
    return sum(shapes) == 1


def _threshold_fields_ok(rule: Rule) -> bool:
    if rule.query is not None:
        return rule.op is not None and rule.threshold is not None
    return rule.op is None and rule.threshold is None and rule.clear_threshold is None


class Rule(SpecModel):
    """A rule: a threshold on one query, a compound of conditions, or an SLO burn rate. Rules are ordered:
    the first active rule chooses the profile."""

    name: Name = Field(description="Rule name, unique in the policy; used in status, scorecard and alerts.")
    query: RuleQuery | None = Field(
        default=None,
        description=(
            "PromQL returning exactly one sample. Placeholders: $namespace, $policy, $window. Several "
            "series or an error make the rule's result unknown; NaN reads as whenNoTraffic says, an empty "
            "result as whenEmpty says. Exactly one of query, allOf, anyOf and burnRate."
        ),
    )
    op: Operator | None = Field(
        default=None, description="Comparison of the query's value against threshold (with query)."
    )
    threshold: float | None = Field(
        default=None, description="The rule holds when `value op threshold` (with query)."
    )
    clear_threshold: float | None = Field(
        default=None,
        description=(
            "Hysteresis: once holding, the rule clears only when the value passes this threshold "
            "(for > and >=: value below it; for < and <=: value above it). Not allowed with == or !="
        ),
    )
    all_of: list[Condition] = list_map(
        "Compound rule: holds while every condition is active (each after its own `for`).",
        default_factory=list,
        max_length=8,
    )
    any_of: list[Condition] = list_map(
        "Compound rule: holds while any condition is active (each after its own `for`).",
        default_factory=list,
        max_length=8,
    )
    burn_rate: BurnRate | None = Field(default=None, description="SLO burn-rate rule.")
    for_: int = Field(
        default=1,
        alias="for",
        ge=1,
        le=100,
        description=(
            "Consecutive evaluations the condition must hold before the rule applies (compound rules "
            "use each condition's own `for`)."
        ),
    )
    when_no_traffic: WhenEmpty = Field(default="clear", description=_WHEN_NO_TRAFFIC_DESCRIPTION)
    when_empty: WhenEmpty = Field(default="unknown", description=_WHEN_EMPTY_DESCRIPTION)
    min_samples: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Traffic floor: while samplesQuery (the rule's, else spec.samplesQuery) is below this, the rule "
            "is `insufficient`: it neither holds nor is unknown (e.g. 3 requests a minute, one flagged, "
            "is not a 33 % bot surge)."
        ),
    )
    samples_query: RuleQuery | None = Field(
        default=None,
        description="Traffic behind this rule's value, e.g. sum(increase(requests_total[$window])).",
    )
    profile: Name = Field(description="Profile to switch to while the rule holds; must be in spec.profiles.")
    reason: str = Field(
        min_length=1,
        max_length=256,
        description="Human reason, used in events and alerts, e.g. 'high latency'.",
    )
    ignore_when_missing: bool = Field(
        default=False,
        description=(
            "If true, an unknown result of this rule (errors included) is treated as clear instead of "
            "triggering the fail-safe (use for rules on optional metrics)."
        ),
    )

    invariants = (
        Invariant(
            field=".query",
            message="a rule needs exactly one of query, allOf, anyOf and burnRate",
            cel=(
                "(has(self.query) ? 1 : 0) + (has(self.allOf) && size(self.allOf) > 0 ? 1 : 0) + "
                "(has(self.anyOf) && size(self.anyOf) > 0 ? 1 : 0) + (has(self.burnRate) ? 1 : 0) == 1"
            ),
            holds=_one_shape,
        ),
        Invariant(
            field=".threshold",
            message="op and threshold are required with query and not allowed with allOf, anyOf or burnRate",
            cel=(
                "has(self.query) ? (has(self.op) && has(self.threshold)) : "
                "(!has(self.op) && !has(self.threshold) && !has(self.clearThreshold))"
            ),
            holds=_threshold_fields_ok,
        ),
        Invariant(
            field=".clearThreshold",
            message=_CLEAR_THRESHOLD_MESSAGE,
            cel="!has(self.query) || " + f"({_CLEAR_THRESHOLD_CEL})",
            holds=lambda r: r.query is None or _clear_threshold_ok(r),
        ),
        Invariant(
            field=".samplesQuery",
            message="samplesQuery needs minSamples",
            cel="!has(self.samplesQuery) || has(self.minSamples)",
            holds=lambda r: r.samples_query is None or r.min_samples is not None,
        ),
    )

    @functools.cached_property
    def conditions(self) -> tuple[Condition, ...]:
        """The conditions this rule combines; a threshold rule is one condition named after the rule."""
        if self.all_of or self.any_of:
            return tuple(self.all_of or self.any_of)
        assert self.query is not None and self.op is not None and self.threshold is not None
        # From fields already validated with this rule: no second validation.
        return (
            Condition.model_construct(
                name=self.name,
                query=self.query,
                op=self.op,
                threshold=self.threshold,
                clear_threshold=self.clear_threshold,
                for_=self.for_,
                when_no_traffic=self.when_no_traffic,
                when_empty=self.when_empty,
            ),
        )


class Profile(SpecModel):
    """A detection profile: the contributors it enables and its latency target."""

    name: Name = Field(description="Profile name, e.g. lean, balanced or paranoid.")
    description: str | None = Field(default=None, max_length=1024, description="What this profile is for.")
    latency_target_ms: float | None = Field(
        default=None, gt=0, le=600000, description="Latency budget of the detector in this profile (ms)."
    )
    contributors: list[Name] = list_set(
        "Contributors enabled in this profile, by name (must be in spec.contributors).",
        default_factory=list,
        max_length=128,
    )
    max_expense: Expense | None = Field(
        default=None,
        description=(
            "Also enable every contributor whose measured expense class is at most this "
            "(light < medium < heavy)."
        ),
    )
    allow_external: bool = Field(
        default=False, description="Whether external contributors may be enabled in this profile."
    )
    max_duration: Duration | None = Field(
        default=None,
        description=(
            "Upper bound of an escalation into this profile: after it the policy relaxes (Event "
            "EscalationExpired and an escalation-expired alert) unless a rule for it is re-confirmed by a "
            "fresh breach (it clears, then holds again)."
        ),
    )
    shadow: bool = Field(
        default=False,
        description=(
            "Decide this profile but do not enforce it: status and the scorecard say 'would be <profile>' "
            "while the policy keeps publishing what it would choose without this profile's rules."
        ),
    )


class Contributor(SpecModel):
    """An in-process detector (heuristic, rule set, model) whose cost is measured."""

    name: Name = Field(description="Contributor name as the detector knows it; substituted for $contributor.")
    description: str | None = Field(default=None, max_length=1024, description="What it detects.")
    expense: Expense | None = Field(
        default=None,
        description="Expense class to assume while no expense metrics are available for it.",
    )


class ExpenseQueries(SpecModel):
    """Templated PromQL (placeholders $contributor, $window, $namespace, $policy) per cost dimension."""

    runtime_ms: ContributorQuery | None = Field(default=None, description="Runtime per request (ms).")
    memory_mb: ContributorQuery | None = Field(default=None, description="Memory used (MB).")
    cache_hit_ratio: ContributorQuery | None = Field(default=None, description="Cache hit ratio (0-1).")
    timeout_rate: ContributorQuery | None = Field(
        default=None, description="Share of calls that time out or fail (0-1)."
    )


class ExpenseBounds(SpecModel):
    """Upper bounds of an expense class: a contributor is in the class if it is within every bound given."""

    runtime_ms: float | None = Field(default=None, ge=0, description="Maximum runtime (ms).")
    memory_mb: float | None = Field(default=None, ge=0, description="Maximum memory (MB).")
    timeout_rate: float | None = Field(default=None, ge=0, le=1, description="Maximum timeout rate (0-1).")
    min_cache_hit_ratio: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Minimum cache hit ratio (0-1): a contributor that misses its cache more is costlier.",
    )


def _bounds_ordered(expense: ExpenseSpec) -> bool:
    for dim in ("runtime_ms", "memory_mb", "timeout_rate"):
        light, medium = getattr(expense.light, dim), getattr(expense.medium, dim)
        if light is not None and medium is not None and light > medium:
            return False
    light_hits, medium_hits = expense.light.min_cache_hit_ratio, expense.medium.min_cache_hit_ratio
    return light_hits is None or medium_hits is None or light_hits >= medium_hits


class ExpenseSpec(SpecModel):
    """How contributor expense is measured and classed (light / medium / heavy)."""

    window: Duration = Field(default="5m", description="Rolling window substituted for $window.")
    queries: ExpenseQueries = Field(default_factory=ExpenseQueries, description="Cost queries.")
    light: ExpenseBounds = Field(
        default_factory=lambda: ExpenseBounds(runtime_ms=5, memory_mb=64),
        description="Bounds of the light class.",
    )
    medium: ExpenseBounds = Field(
        default_factory=lambda: ExpenseBounds(runtime_ms=50, memory_mb=256),
        description="Bounds of the medium class; anything beyond is heavy.",
    )

    invariants = (
        Invariant(
            field=".light",
            message=(
                "every bound of light must be <= the same bound of medium "
                "(minCacheHitRatio: >= the medium one)"
            ),
            cel=" && ".join(
                [
                    f"(!has(self.light.{d}) || !has(self.medium.{d}) || self.light.{d} <= self.medium.{d})"
                    for d in ("runtimeMs", "memoryMb", "timeoutRate")
                ]
                + [
                    "(!has(self.light.minCacheHitRatio) || !has(self.medium.minCacheHitRatio) || "
                    "self.light.minCacheHitRatio >= self.medium.minCacheHitRatio)"
                ]
            ),
            holds=_bounds_ordered,
        ),
    )


class ExternalQueries(SpecModel):
    """Templated PromQL (placeholder $contributor, $window, ...) measuring each external service."""

    error_rate: ContributorQuery | None = Field(
        default=None, description="Share of calls that fail or time out (0-1)."
    )
    p95_latency_ms: ContributorQuery | None = Field(default=None, description="p95 call latency (ms).")
    accuracy: ContributorQuery | None = Field(
        default=None, description="Measured verdict accuracy (0-1); scales the effective weight."
    )


class CircuitSpec(SpecModel):
    """When an external service is taken out of the detector, and when it is let back in."""

    max_error_rate: float = Field(
        default=0.1, ge=0, le=1, description="Open the circuit above this error/timeout rate."
    )
    cool_down: Duration = Field(
        default="2m", description="Keep the circuit open at least this long, then re-admit once healthy."
    )


class ExternalService(SpecModel):
    """An external intelligence contributor (IP reputation feed, bot-intel API, ...)."""

    name: Name = Field(description="Service name; substituted for $contributor in external queries.")
    endpoint: str = Field(
        max_length=2048,
        # Whitespace spelled out: \s is ASCII in the apiserver's Go regexp but Unicode in pydantic's.
        pattern=r"^https?://[^\t\n\f\r /?#]+([/?#][^\t\n\f\r ]*)?$",
        description="Base URL the detector calls.",
    )
    weight: float = Field(default=1.5, ge=0, le=100, description="Base trust weight before accuracy scaling.")
    timeout_ms: int = Field(
        default=200, ge=1, le=60000, description="Latency budget; p95 above it opens the circuit."
    )
    signals: list[Signal] = list_set(
        "Non-PII signals the service may receive: ua, ip, headers, asn, geo, tls-fingerprint.",
        min_length=1,
        max_length=6,
    )
    verification_key_ref: SecretKeySelector | None = Field(
        default=None, description="Secret key holding the key that verifies the service's signed verdicts."
    )


def _weights_in_range(external: ExternalContributors) -> bool:
    return external.min_weight <= external.max_weight and all(
        external.min_weight <= s.weight <= external.max_weight for s in external.services
    )


class ExternalContributors(SpecModel):
    """External contributors, their weight range, health queries and circuit breaker."""

    min_weight: float = Field(default=0.5, ge=0, le=100, description="Lowest effective weight.")
    max_weight: float = Field(default=3.0, ge=0, le=100, description="Highest effective weight.")
    baseline_accuracy: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description=(
            "Accuracy at which a service gets exactly its base weight: effective weight = weight * "
            "accuracy / baselineAccuracy, clamped to [minWeight, maxWeight]."
        ),
    )
    queries: ExternalQueries = Field(
        default_factory=ExternalQueries, description="Health and accuracy queries."
    )
    circuit: CircuitSpec = Field(default_factory=CircuitSpec, description="Circuit breaker settings.")
    services: list[ExternalService] = list_map("The external services.", default_factory=list, max_length=32)

    invariants = (
        Invariant(
            field=".services",
            message="minWeight must be <= maxWeight and every service weight within [minWeight, maxWeight]",
            cel=(
                "self.minWeight <= self.maxWeight && "
                "self.services.all(s, s.weight >= self.minWeight && s.weight <= self.maxWeight)"
            ),
            holds=_weights_in_range,
        ),
    )


class PolicyOutput(SpecModel):
    """Where the decision is published."""

    config_map_name: ObjectName | None = Field(
        default=None, description="Name of the owned ConfigMap; defaults to <policy>-detection-profile."
    )
    deployment: ObjectName | None = Field(
        default=None,
        description="Detector Deployment whose pod template gets a config-checksum annotation (rolls it).",
    )
    signing_key_ref: SecretKeySelector | None = Field(
        default=None, description="Secret key used to HMAC-sign profile.json."
    )


def _profile_names(spec: DetectionPolicySpec) -> set[str]:
    return {p.name for p in spec.profiles}


def _contributor_refs_ok(spec: DetectionPolicySpec) -> bool:
    known = {c.name for c in spec.contributors}
    return all(set(p.contributors) <= known for p in spec.profiles)


class LatencyCheck(SpecModel):
    """The measured detector latency against the active profile's latencyTargetMs."""

    query: RuleQuery = Field(
        description="PromQL of the detector's latency in ms (e.g. p95); empty or NaN (no traffic) is within."
    )
    for_: int = Field(
        default=3,
        alias="for",
        ge=1,
        le=100,
        description="Consecutive evaluations above the target before the latency alert fires.",
    )


class DetectionPolicySpec(SpecModel):
    """Desired behaviour of a DetectionPolicy."""

    interval: Duration = Field(default="30s", description="How often the policy is evaluated.")
    window: Duration = Field(default="5m", description="Value substituted for $window in rule queries.")
    dry_run: bool = Field(
        default=False, description="Decide and record in status, but write no ConfigMap or Deployment."
    )
    profiles: list[Profile] = list_map("The detection profiles.", min_length=1, max_length=16)
    default_profile: Name = Field(description="Profile used when no rule holds.")
    fallback_profile: Name = Field(
        default="balanced", description="Profile used once metrics have been unknown for longer than holdFor."
    )
    hold_for: Duration = Field(
        default="2m", description="While rule results are unknown, keep the current profile this long."
    )
    stabilization_window: Duration = Field(
        default="5m", description="Relax to a lower profile only after every rule stayed clear this long."
    )
    min_dwell: Duration = Field(default="1m", description="Minimum time between two switches.")
    rules: list[Rule] = list_map(
        "Ordered threshold rules; the first that holds wins.", default_factory=list, max_length=32
    )
    samples_query: RuleQuery | None = Field(
        default=None,
        description=(
            "Traffic floor query shared by every rule with minSamples and no samplesQuery of its own, e.g. "
            'sum(increase(detector_requests_total{namespace="$namespace"}[$window])).'
        ),
    )
    latency: LatencyCheck | None = Field(
        default=None, description="Check the measured detector latency against the active profile's target."
    )
    contributors: list[Contributor] = list_map(
        "Contributors the detector runs.", default_factory=list, max_length=128
    )
    expense: ExpenseSpec | None = Field(
        default=None,
        description="Contributor expense measurement (with metricsFrom sdk, measured even when omitted).",
    )
    external_contributors: ExternalContributors | None = Field(
        default=None, description="External intelligence contributors."
    )
    metrics_from: MetricsFrom = Field(
        default="explicit",
        description=METRICS_FROM_DESCRIPTION.replace("every query is", "expense and external queries are")
        + " Contributors are read as agents of the catalog (model label = contributor name); cacheHitRatio "
        "has no catalog series and is never generated.",
    )
    sdk: Annotated[SdkMetrics, AfterValidator(sdk_checker(CONTRIBUTOR_VARIABLES))] = Field(
        default_factory=SdkMetrics,
        description="Series selection of the generated queries (metricsFrom: sdk).",
    )
    prometheus: PrometheusRef | None = Field(default=None, description="Prometheus connection override.")
    output: PolicyOutput = Field(default_factory=PolicyOutput, description="Where decisions are published.")
    alerts: AlertSpec = Field(default_factory=AlertSpec, description="Alert delivery.")

    invariants = (
        Invariant(
            field=".defaultProfile",
            message="defaultProfile must name a profile in spec.profiles",
            cel="self.profiles.exists(p, p.name == self.defaultProfile)",
            holds=lambda s: s.default_profile in _profile_names(s),
        ),
        Invariant(
            field=".fallbackProfile",
            message="fallbackProfile must name a profile in spec.profiles",
            cel="self.profiles.exists(p, p.name == self.fallbackProfile)",
            holds=lambda s: s.fallback_profile in _profile_names(s),
        ),
        Invariant(
            field=".rules",
            message="every rule's profile must name a profile in spec.profiles",
            cel="self.rules.all(r, self.profiles.exists(p, p.name == r.profile))",
            holds=lambda s: all(r.profile in _profile_names(s) for r in s.rules),
        ),
        Invariant(
            field=".profiles",
            message="every contributor a profile lists must be declared in spec.contributors",
            cel="self.profiles.all(p, p.contributors.all(c, self.contributors.exists(k, k.name == c)))",
            holds=_contributor_refs_ok,
        ),
        Invariant(
            field=".samplesQuery",
            message="a rule with minSamples needs samplesQuery (its own or spec.samplesQuery)",
            cel="has(self.samplesQuery) || self.rules.all(r, !has(r.minSamples) || has(r.samplesQuery))",
            holds=lambda s: (
                s.samples_query is not None
                or all(r.min_samples is None or r.samples_query is not None for r in s.rules)
            ),
        ),
        Invariant(
            field=".defaultProfile",
            message="defaultProfile and fallbackProfile must not be shadow profiles (they are enforced)",
            cel=(
                "self.profiles.all(p, !(has(p.shadow) && p.shadow) || "
                "(p.name != self.defaultProfile && p.name != self.fallbackProfile))"
            ),
            holds=lambda s: all(
                not p.shadow or p.name not in (s.default_profile, s.fallback_profile) for p in s.profiles
            ),
        ),
        INTERVAL_BOUNDS,
        WINDOW_POSITIVE,
    )

    @functools.cached_property
    def measured_expense(self) -> ExpenseSpec | None:
        """How expense is measured: ``expense`` as written, and with metricsFrom sdk every query it does
        not write generated (the default classes when ``expense`` is omitted)."""
        if self.metrics_from != "sdk":
            return self.expense
        expense = self.expense or ExpenseSpec()
        generated = sdk_catalog.expense_queries(self.sdk.selector)
        queries = {
            dim: getattr(expense.queries, dim) or generated.get(dim) for dim in ExpenseQueries.model_fields
        }
        return expense.model_copy(update={"queries": expense.queries.model_copy(update=queries)})

    @functools.cached_property
    def external_queries(self) -> ExternalQueries:
        """The external contributors' queries: as written, and with metricsFrom sdk generated where not."""
        written = self.external_contributors.queries if self.external_contributors else ExternalQueries()
        if self.metrics_from != "sdk":
            return written
        generated = sdk_catalog.external_queries(self.sdk.selector)
        queries = {dim: getattr(written, dim) or generated[dim] for dim in ExternalQueries.model_fields}
        return written.model_copy(update=queries)

    @functools.cached_property
    def generated(self) -> frozenset[tuple[str, str]]:
        """(section, dimension) of each query generated from the SDK catalog, e.g. (expense, runtime_ms)."""
        if self.metrics_from != "sdk":
            return frozenset()
        expense = self.expense.queries if self.expense else ExpenseQueries()
        external = self.external_contributors.queries if self.external_contributors else ExternalQueries()
        return frozenset(
            {("expense", d) for d in sdk_catalog.expense_queries("") if getattr(expense, d) is None}
            | {("external", d) for d in sdk_catalog.external_queries("") if getattr(external, d) is None}
        )


class ProfileSwitch(StatusModel):
    """One entry of the bounded switch history."""

    from_: str | None = Field(default=None, alias="from", description="Previous profile.")
    to: str = Field(description="New profile.")
    reason: str = Field(description="Why the switch happened.")
    at: Timestamp = Field(description="When the switch happened.")


class ExternalContributorStatus(StatusModel):
    """An external service's circuit and effective weight."""

    name: str = Field(description="Service name.")
    enabled: bool = Field(description="Whether the detector may call it now.")
    circuit: Literal["closed", "open", "half-open"] = Field(description="Circuit breaker state.")
    weight: float = Field(description="Effective weight.")
    reason: str | None = Field(default=None, description="Why the circuit is in its state.")


class DetectionPolicyStatus(ObjectStatus):
    """Observed state of a DetectionPolicy, written by the operator."""

    profile: str | None = Field(default=None, description="Active profile.")
    since: Timestamp | None = Field(default=None, description="When the active profile was chosen.")
    history: list[ProfileSwitch] = Field(
        default_factory=list, max_length=HISTORY_LIMIT, description="Most recent switches, newest last."
    )
    rules: list[RuleRow] = Field(
        default_factory=list,
        description="Every rule in its latest evaluation: the fresh copy of the scorecard's rows.",
    )
    held_by: str | None = Field(
        default=None,
        description=(
            "What kept the profile the rules ask for from being chosen: minDwell, stabilizationWindow or "
            "holdFor."
        ),
    )
    shadow: str | None = Field(
        default=None, description="The shadow profile the policy would switch to now if it were enforced."
    )
    latency: LatencyRow | None = Field(default=None, description="Latest latency-target check.")
    contributors: list[str] = Field(default_factory=list, description="Contributors the profile enables.")
    expense: dict[str, Expense] = Field(default_factory=dict, description="Expense class per contributor.")
    external_contributors: list[ExternalContributorStatus] = Field(
        default_factory=list, description="External services, their circuits and weights."
    )
