"""DetectionPolicy (dp): which detection profile a bot detector should run right now."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from .base import INTERVAL_BOUNDS, Duration, Invariant, Name, ObjectName, SpecModel, list_map, list_set
from .common import (
    QUERY_LIMITS,
    AlertSpec,
    ObjectStatus,
    PrometheusRef,
    SecretKeySelector,
    StatusModel,
    promql_checker,
)

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


def _clear_threshold_ok(rule: Rule) -> bool:
    if rule.clear_threshold is None:
        return True
    if rule.op in _RAISING_OPS:
        return rule.clear_threshold <= rule.threshold
    if rule.op in _FALLING_OPS:
        return rule.clear_threshold >= rule.threshold
    return False


class Rule(SpecModel):
    """A PromQL threshold rule. Rules are ordered: the first that holds chooses the profile."""

    name: Name = Field(description="Rule name, unique in the policy; used in status, scorecard and alerts.")
    query: RuleQuery = Field(
        description=(
            "PromQL returning exactly one sample. Placeholders: $namespace, $policy, $window. An empty "
            "result, NaN/Inf, several series or an error make the rule's result unknown, never 0."
        )
    )
    op: Operator = Field(description="Comparison of the query's value against threshold.")
    threshold: float = Field(description="The rule holds when `value op threshold`.")
    clear_threshold: float | None = Field(
        default=None,
        description=(
            "Hysteresis: once holding, the rule clears only when the value passes this threshold "
            "(for > and >=: value below it; for < and <=: value above it). Not allowed with == or !=."
        ),
    )
    for_: int = Field(
        default=1,
        alias="for",
        ge=1,
        le=100,
        description="Consecutive evaluations the condition must hold before the rule applies.",
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
            "If true, an unknown result of this rule is treated as clear instead of triggering the "
            "fail-safe (use for rules on optional metrics)."
        ),
    )

    invariants = (
        Invariant(
            field=".clearThreshold",
            message=(
                "clearThreshold must be on the clearing side of threshold (<= threshold for > and >=, "
                ">= threshold for < and <=) and is not allowed with == or !="
            ),
            cel=(
                "!has(self.clearThreshold) || ((self.op == '>' || self.op == '>=') ? "
                "self.clearThreshold <= self.threshold : ((self.op == '<' || self.op == '<=') ? "
                "self.clearThreshold >= self.threshold : false))"
            ),
            holds=_clear_threshold_ok,
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


def _bounds_ordered(expense: ExpenseSpec) -> bool:
    for dim in ("runtime_ms", "memory_mb", "timeout_rate"):
        light, medium = getattr(expense.light, dim), getattr(expense.medium, dim)
        if light is not None and medium is not None and light > medium:
            return False
    return True


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
            message="every bound of light must be <= the same bound of medium",
            cel=" && ".join(
                f"(!has(self.light.{d}) || !has(self.medium.{d}) || self.light.{d} <= self.medium.{d})"
                for d in ("runtimeMs", "memoryMb", "timeoutRate")
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
    contributors: list[Contributor] = list_map(
        "Contributors the detector runs.", default_factory=list, max_length=128
    )
    expense: ExpenseSpec | None = Field(default=None, description="Contributor expense measurement.")
    external_contributors: ExternalContributors | None = Field(
        default=None, description="External intelligence contributors."
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
        INTERVAL_BOUNDS,
    )


class ProfileSwitch(StatusModel):
    """One entry of the bounded switch history."""

    from_: str | None = Field(default=None, alias="from", description="Previous profile.")
    to: str = Field(description="New profile.")
    reason: str = Field(description="Why the switch happened.")
    at: datetime = Field(description="When the switch happened.")


class RuleStatus(StatusModel):
    """A rule's latest result."""

    name: str = Field(description="Rule name.")
    value: float | None = Field(default=None, description="Latest value; absent when unknown.")
    threshold: float = Field(description="Threshold the value is compared with.")
    verdict: Literal["holds", "clear", "unknown"] = Field(description="holds, clear or unknown.")
    active: bool = Field(description="Whether the rule currently chooses its profile (after `for`).")
    streak: int = Field(description="Consecutive evaluations the rule has held.")
    cause: str | None = Field(default=None, description="Why the value is unknown, if it is.")


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
    since: datetime | None = Field(default=None, description="When the active profile was chosen.")
    history: list[ProfileSwitch] = Field(
        default_factory=list, max_length=20, description="Most recent switches, newest last."
    )
    rules: list[RuleStatus] = Field(default_factory=list, description="Latest result of every rule.")
    contributors: list[str] = Field(default_factory=list, description="Contributors the profile enables.")
    expense: dict[str, Expense] = Field(default_factory=dict, description="Expense class per contributor.")
    external_contributors: list[ExternalContributorStatus] = Field(
        default_factory=list, description="External services, their circuits and weights."
    )
