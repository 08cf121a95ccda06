"""ModelRoute (mr): which NeuroWeaver model should serve a route right now."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from . import sdk_catalog
from .base import INTERVAL_BOUNDS, WINDOW_POSITIVE, Duration, Invariant, ObjectName, SpecModel, list_map
from .common import (
    HISTORY_LIMIT,
    METRICS_FROM_DESCRIPTION,
    QUERY_LIMITS,
    AlertSpec,
    HealthBand,
    MetricsFrom,
    ObjectStatus,
    PrometheusRef,
    SdkMetrics,
    StatusModel,
    Timestamp,
    promql_checker,
    sdk_checker,
)

KIND = "ModelRoute"
PLURAL = "modelroutes"

MODEL_VARIABLES = frozenset({"model", "namespace", "route", "window"})
ModelQuery = Annotated[str, QUERY_LIMITS, AfterValidator(promql_checker(MODEL_VARIABLES))]

ModelName = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$", min_length=1, max_length=128)
]

MetricName = Literal[
    "accuracy",
    "latencyP95Ms",
    "successRate",
    "errorRate",
    "requests",
    "costPerRequest",
    "tokensPerRequest",
    "memoryMb",
]
Direction = Literal["higherIsBetter", "lowerIsBetter"]
ModelState = Literal["healthy", "warning", "critical", "idle", "failing", "unknown"]

HIGHER_IS_BETTER: frozenset[str] = frozenset({"accuracy", "successRate"})
"""Metrics where a larger value is healthier; every other metric is lower-is-better unless overridden."""

DEFAULT_THRESHOLDS: dict[str, tuple[float, float]] = {
    "accuracy": (0.85, 0.75),
    "latencyP95Ms": (2000.0, 5000.0),
    "successRate": (0.95, 0.90),
    "errorRate": (0.05, 0.10),
}
"""(warning, critical) used for failover when a metric of this name gives none."""

DEFAULT_ALERT_THRESHOLDS: dict[str, tuple[float, Literal["warning", "critical"]]] = {
    "successRate": (0.80, "critical"),
    "errorRate": (0.15, "warning"),
    "latencyP95Ms": (5000.0, "warning"),
    "costPerRequest": (1.0, "warning"),
    "accuracy": (0.70, "critical"),
    "memoryMb": (1024.0, "critical"),
    "tokensPerRequest": (5000.0, "warning"),
}
"""(threshold, severity) alerting uses when a metric gives neither warning nor critical; the threshold is
breached below it for higher-is-better metrics and above it otherwise. Separate from failover defaults."""

PROBATION_CAP = 16
"""A primary that fails under its trickle doubles its next probation, up to this many times stableFor."""


def _thresholds_ordered(metric: ModelMetric) -> bool:
    if metric.warning is None or metric.critical is None:
        return True
    if metric.effective_direction == "higherIsBetter":
        return metric.warning >= metric.critical
    return metric.warning <= metric.critical


def _direction_keeps_defaults(metric: ModelMetric) -> bool:
    natural = "higherIsBetter" if metric.name in HIGHER_IS_BETTER else "lowerIsBetter"
    has_defaults = metric.name in DEFAULT_THRESHOLDS or metric.name in DEFAULT_ALERT_THRESHOLDS
    explicit = metric.warning is not None and metric.critical is not None
    return metric.direction in (None, natural) or not has_defaults or explicit


class ModelMetric(SpecModel):
    """One metric of the per-model catalog, templated with $model, $namespace, $route and $window."""

    name: MetricName = Field(description="Which health dimension this query measures.")
    query: ModelQuery | None = Field(
        default=None,
        description="PromQL returning one sample per model ($model is substituted). Required unless "
        "metricsFrom is sdk, which generates the query of a metric listed without one (to set only its "
        "thresholds).",
    )
    warning: float | None = Field(
        default=None,
        description="Warning threshold (pre-warms the next backup). Defaults exist for accuracy (0.85), "
        "latencyP95Ms (2000), successRate (0.95) and errorRate (0.05).",
    )
    critical: float | None = Field(
        default=None,
        description="Critical threshold (counts towards failover). Defaults: accuracy 0.75, latencyP95Ms "
        "5000, successRate 0.90, errorRate 0.10.",
    )
    direction: Direction | None = Field(
        default=None,
        description="Defaults to higherIsBetter for accuracy and successRate, lowerIsBetter otherwise.",
    )

    @property
    def effective_direction(self) -> Direction:
        """The direction, defaulted by metric name."""
        if self.direction is not None:
            return self.direction
        return "higherIsBetter" if self.name in HIGHER_IS_BETTER else "lowerIsBetter"

    @property
    def thresholds(self) -> tuple[float | None, float | None]:
        """(warning, critical), with the documented defaults filled in."""
        warning, critical = DEFAULT_THRESHOLDS.get(self.name, (None, None))
        return (
            self.warning if self.warning is not None else warning,
            self.critical if self.critical is not None else critical,
        )

    invariants = (
        Invariant(
            field=".warning",
            message=(
                "warning must come before critical in the metric's direction (higherIsBetter: "
                "warning >= critical; lowerIsBetter: warning <= critical)"
            ),
            cel=(
                "!has(self.warning) || !has(self.critical) || "
                "((has(self.direction) ? self.direction == 'higherIsBetter' : "
                "self.name in ['accuracy', 'successRate']) ? "
                "self.warning >= self.critical : self.warning <= self.critical)"
            ),
            holds=_thresholds_ordered,
        ),
        # Defaults are written for the metric's natural direction: read the other way, accuracy 0.95
        # would be critical. Rejected rather than mirrored, because no mirrored number is what a
        # person who flips a direction means.
        Invariant(
            field=".direction",
            message=(
                "a direction opposite to the metric's usual one (higherIsBetter for accuracy and "
                "successRate, lowerIsBetter otherwise) needs both warning and critical: the default "
                "thresholds assume the usual direction"
            ),
            cel=(
                "!has(self.direction) || self.name == 'requests' || "
                "self.direction == (self.name in ['accuracy', 'successRate'] ? 'higherIsBetter' : "
                "'lowerIsBetter') || (has(self.warning) && has(self.critical))"
            ),
            holds=_direction_keeps_defaults,
        ),
    )


class ModelCandidate(SpecModel):
    """A model that may serve the route. The first candidate is the primary, the rest are backups."""

    name: ModelName = Field(description="Model name as the router knows it; substituted for $model.")
    deployment: ObjectName | None = Field(
        default=None, description="Deployment serving this model; scaled up to pre-warm it as a backup."
    )
    prewarm_replicas: int = Field(
        default=1, ge=1, le=100, description="Replicas to scale the Deployment to when pre-warming."
    )


class RollbackSpec(SpecModel):
    """Switching back to the primary once it has recovered."""

    enabled: bool = Field(default=True, description="Switch back to the primary once it is healthy again.")
    stable_for: Duration = Field(
        default="5m",
        description="The primary must stay healthy this long, serving at least minRequests in the window, "
        "before the route returns to it. Each probation it fails under its trickle doubles the next one "
        "(up to 16x).",
    )
    traffic_percent: int = Field(
        default=5,
        ge=0,
        le=50,
        description="Share of traffic route.json gives the primary while on a backup, so it can prove "
        "itself. 0 turns the trickle off: the primary then earns no evidence and only spec.override "
        "brings the route back.",
    )
    scale_down_after: Duration = Field(
        default="10m", description="Scale pre-warmed backups back down this long after rolling back."
    )


class OverrideSpec(SpecModel):
    """A manual pin, kept in Git like the rest of the spec."""

    model: ModelName = Field(description="Model to serve regardless of health; must be one of spec.models.")
    until: datetime | None = Field(default=None, description="Pin expires at this time (RFC 3339).")
    reason: str | None = Field(default=None, max_length=256, description="Why the model is pinned.")


class RouteOutput(SpecModel):
    """Where the route decision is published."""

    config_map_name: ObjectName | None = Field(
        default=None, description="Name of the owned ConfigMap; defaults to <route>-model-route."
    )
    router_deployment: ObjectName | None = Field(
        default=None, description="Router Deployment whose pod template gets a rollout annotation."
    )


def _model_names(spec: ModelRouteSpec) -> set[str]:
    return {m.name for m in spec.models}


class ModelRouteSpec(SpecModel):
    """Desired behaviour of a ModelRoute."""

    interval: Duration = Field(default="30s", description="How often the route is evaluated.")
    window: Duration = Field(default="10m", description="Value substituted for $window.")
    dry_run: bool = Field(
        default=False, description="Decide and record, but write no ConfigMap or Deployment."
    )
    models: list[ModelCandidate] = list_map(
        "Candidates in priority order: the primary first, then backups.", min_length=1, max_length=16
    )
    metrics: list[ModelMetric] = list_map(
        "The per-model metric catalog (with metricsFrom sdk: what differs from the generated one).",
        default_factory=list,
        max_length=16,
    )
    metrics_from: MetricsFrom = Field(default="explicit", description=METRICS_FROM_DESCRIPTION)
    sdk: Annotated[SdkMetrics, AfterValidator(sdk_checker(MODEL_VARIABLES))] = Field(
        default_factory=SdkMetrics,
        description="Series selection of the generated queries (metricsFrom: sdk).",
    )
    min_requests: int = Field(
        default=50, ge=0, description="No decision while a model served fewer requests in the window."
    )
    failure_threshold: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Consecutive critical or failing evaluations before failing over; also how long a "
        "metric must stay past a threshold before it raises an alert.",
    )
    backup_traffic_percent: int = Field(
        default=0,
        ge=0,
        le=50,
        description="Share of traffic route.json gives the first backup while on the primary, to keep it "
        "warm and verified (0: backups stay idle).",
    )
    max_failovers_per_hour: int = Field(
        default=3, ge=1, le=60, description="Cap on failovers per hour, to stop ping-pong."
    )
    rollback: RollbackSpec = Field(default_factory=RollbackSpec, description="Switching back to the primary.")
    override: OverrideSpec | None = Field(default=None, description="Pin a model manually.")
    prometheus: PrometheusRef | None = Field(default=None, description="Prometheus connection override.")
    output: RouteOutput = Field(default_factory=RouteOutput, description="Where decisions are published.")
    alerts: AlertSpec = Field(default_factory=AlertSpec, description="Alert delivery.")

    invariants = (
        Invariant(
            field=".override",
            message="override.model must name a model in spec.models",
            cel="!has(self.override) || self.models.exists(m, m.name == self.override.model)",
            holds=lambda s: s.override is None or s.override.model in _model_names(s),
        ),
        Invariant(
            field=".metrics",
            message="metrics must not be empty unless metricsFrom is sdk",
            cel="self.metricsFrom == 'sdk' || size(self.metrics) > 0",
            holds=lambda s: s.metrics_from == "sdk" or bool(s.metrics),
        ),
        Invariant(
            field=".metrics",
            message="every metric needs a query unless metricsFrom is sdk",
            cel="self.metricsFrom == 'sdk' || self.metrics.all(m, has(m.query))",
            holds=lambda s: s.metrics_from == "sdk" or all(m.query is not None for m in s.metrics),
        ),
        Invariant(
            field=".metrics",
            message="metrics must include requests when minRequests > 0",
            cel=(
                "self.minRequests == 0 || self.metricsFrom == 'sdk' || "
                "self.metrics.exists(m, m.name == 'requests')"
            ),
            holds=lambda s: (
                s.min_requests == 0 or s.metrics_from == "sdk" or any(m.name == "requests" for m in s.metrics)
            ),
        ),
        INTERVAL_BOUNDS,
        WINDOW_POSITIVE,
    )

    @functools.cached_property
    def catalog(self) -> tuple[ModelMetric, ...]:
        """The metrics the route evaluates: ``metrics`` as written, and with metricsFrom sdk every other
        catalog metric generated, a metric written without a query taking the generated one."""
        if self.metrics_from != "sdk":
            return tuple(self.metrics)
        generated = sdk_catalog.route_queries(self.sdk.selector)
        written = {m.name for m in self.metrics}
        return (
            *(
                m if m.query is not None else m.model_copy(update={"query": generated[m.name]})
                for m in self.metrics
            ),
            *(ModelMetric.model_construct(name=n, query=q) for n, q in generated.items() if n not in written),  # type: ignore[arg-type]
        )

    @functools.cached_property
    def generated(self) -> frozenset[str]:
        """Names of the metrics whose query was generated from the SDK catalog."""
        if self.metrics_from != "sdk":
            return frozenset()
        written = {m.name for m in self.metrics if m.query is not None}
        return frozenset(m.name for m in self.catalog if m.name not in written)


class ModelSwitch(StatusModel):
    """One entry of the bounded switch history."""

    from_: str | None = Field(default=None, alias="from", description="Previous active model.")
    to: str = Field(description="New active model.")
    reason: str = Field(description="Why the switch happened.")
    score: float | None = Field(default=None, description="Health score of the new model at the switch.")
    at: Timestamp = Field(description="When the switch happened.")
    rolled_back_at: Timestamp | None = Field(default=None, description="When the route returned to primary.")


class ModelStatus(StatusModel):
    """One candidate model's latest health."""

    name: str = Field(description="Model name.")
    level: Literal["ok", "warning", "critical", "unknown"] = Field(description="Worst metric level.")
    state: ModelState | None = Field(
        default=None,
        description="healthy, warning, critical; idle (no traffic was sent to it); failing (traffic was "
        "sent but its data is gone, or its Deployment lost every replica); unknown (Prometheus did not "
        "answer).",
    )
    traffic_percent: int | None = Field(default=None, description="Its share in the published route.json.")
    reason: str | None = Field(default=None, description="Why it is in this state, for failing and idle.")
    score: float | None = Field(default=None, description="Health score 0-100.")
    band: HealthBand | None = Field(
        default=None, description="Band of the score: Excellent 90-100, Good 70-89, Fair 50-69, Poor 0-49."
    )
    trend: Literal["improving", "stable", "degrading", "unknown"] = Field(
        description="Versus the previous window."
    )
    requests: float | None = Field(default=None, description="Requests in the window.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Latest value of each metric.")
    levels: dict[str, str] = Field(default_factory=dict, description="Level of each metric.")


class ProbationStatus(StatusModel):
    """The primary's evidence while the route serves a backup."""

    requests: float = Field(description="Requests the primary served in the window (under its trickle).")
    min_requests: int = Field(description="Requests it must have served before a rollback.")
    healthy_for_seconds: float | None = Field(default=None, description="How long it has been healthy.")
    stable_for_seconds: float = Field(description="How long it must stay healthy (doubles per failure).")
    failures: int = Field(description="Probations it failed under its trickle since the last rollback.")
    traffic_paused_until: Timestamp | None = Field(
        default=None, description="Its trickle is off until then, after a failed probation."
    )


class ModelRouteStatus(ObjectStatus):
    """Observed state of a ModelRoute, written by the operator."""

    active_model: str | None = Field(default=None, description="Model serving the route.")
    health: HealthBand | None = Field(
        default=None, description="Health band of the active model (none while it has no score)."
    )
    state: str | None = Field(default=None, description="Primary, FailedOver, Overridden or Degraded.")
    switch_history: list[ModelSwitch] = Field(
        default_factory=list, max_length=HISTORY_LIMIT, description="Most recent switches, newest last."
    )
    models: list[ModelStatus] = Field(default_factory=list, description="Health of every candidate.")
    probation: ProbationStatus | None = Field(
        default=None, description="The primary proving itself under its trickle (only while on a backup)."
    )
