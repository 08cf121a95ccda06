"""The ModelRoute decision: (spec, observation, memory, now) -> decision. Pure: no I/O, no clock.

Health score (0-100) of a model: a weighted mean of per-metric scores, success rate 40, p95 latency 30,
error rate 20, accuracy 10, over the metrics that answered. A metric scores 1 at or better than its warning
threshold, 0 at or worse than its critical threshold, linearly in between.

Transitions, in the order they apply:

1. ``override.model`` (until ``override.until``) pins the route: state Overridden.
2. The active model critical (any metric past critical, with at least ``minRequests`` requests) for
   ``failureThreshold`` consecutive evaluations -> the best backup: highest priority that is not critical
   and ready, else the highest health score among those not critical; none -> stay, state Degraded
   (NoHealthyBackup). At most ``maxFailoversPerHour`` failovers in any hour (FailoverCapReached).
3. The active model at warning or worse -> pre-warm the backup a failover would pick.
4. Not on the primary and the primary healthy (no metric at warning or worse) for ``rollback.stableFor``
   -> back to the primary. Pre-warmed backups are scaled back ``rollback.scaleDownAfter`` after the route
   no longer needs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from ..api.base import parse_duration
from ..api.model_route import ModelMetric, ModelRouteSpec
from ..metrics import promql
from ..metrics.source import Missing, Reading
from .memory import Memory

Level = Literal["ok", "warning", "critical", "unknown"]
Trend = Literal["improving", "stable", "degrading", "unknown"]
State = Literal["Primary", "FailedOver", "Overridden", "Degraded"]

SCORE_WEIGHTS: dict[str, float] = {"successRate": 40, "latencyP95Ms": 30, "errorRate": 20, "accuracy": 10}
TREND_BAND = 0.05
_LEVEL_RANK = {"unknown": 0, "ok": 0, "warning": 1, "critical": 2}

# Observation keys: ("model", model, metric) now, ("previous", model, metric) one window earlier.
RouteKey = tuple[str, str, str]


class Prewarm(Memory):
    """A backup scaled up ahead of a possible failover."""

    since: datetime
    original_replicas: int
    idle_since: datetime | None = None


class RouteMemory(Memory):
    """Everything the route decision needs from earlier evaluations; stored in status.memory."""

    active: str | None = None
    state: State | None = None
    since: datetime | None = None
    critical_streak: int = 0
    primary_healthy_since: datetime | None = None
    failovers: list[datetime] = Field(default_factory=list)
    prewarmed: dict[str, Prewarm] = Field(default_factory=dict)
    revision: int = 0
    digest: str | None = None


@dataclass(frozen=True)
class MetricResult:
    """One metric of one model."""

    name: str
    value: float | None
    previous: float | None
    level: Level
    trend: Trend
    warning: float | None
    critical: float | None


@dataclass(frozen=True)
class ModelHealth:
    """A model's health in this evaluation."""

    name: str
    priority: int
    metrics: tuple[MetricResult, ...]
    level: Level
    score: float | None
    trend: Trend
    requests: float | None
    enough_requests: bool
    ready: bool


@dataclass(frozen=True)
class ScaleAction:
    """Scale a model's Deployment (pre-warm up, or back down)."""

    model: str
    deployment: str
    replicas: int
    reason: str


@dataclass(frozen=True)
class RouteDecision:
    """The model to route to, why, the actions to take, and the memory for the next evaluation."""

    active: str
    previous: str | None
    switched: bool
    state: State
    reason: str
    models: tuple[ModelHealth, ...]
    scale: tuple[ScaleAction, ...]
    no_healthy_backup: bool
    failover_capped: bool
    insufficient_data: bool
    metrics_available: bool
    metrics_message: str
    memory: RouteMemory


def query_plan(spec: ModelRouteSpec, namespace: str, name: str) -> dict[RouteKey, str]:
    """Every query (current window) one evaluation runs; the previous window reuses them one window back."""
    plan: dict[RouteKey, str] = {}
    for model in spec.models:
        values = {"model": model.name, "namespace": namespace, "route": name, "window": spec.window}
        for metric in spec.metrics:
            plan[("model", model.name, metric.name)] = promql.render(metric.query, values)
    return plan


def _value(reading: Reading | None) -> float | None:
    return None if reading is None or isinstance(reading, Missing) else reading.value


def metric_level(metric: ModelMetric, value: float | None) -> Level:
    """ok / warning / critical of a value against the metric's thresholds and direction."""
    if value is None:
        return "unknown"
    warning, critical = metric.thresholds
    higher = metric.effective_direction == "higherIsBetter"

    def past(threshold: float | None) -> bool:
        return threshold is not None and (value < threshold if higher else value > threshold)

    return "critical" if past(critical) else "warning" if past(warning) else "ok"


def metric_score(metric: ModelMetric, value: float) -> float | None:
    """1 at or better than warning, 0 at or worse than critical, linear in between."""
    warning, critical = metric.thresholds
    if warning is None or critical is None or warning == critical:
        return None
    fraction = (value - critical) / (warning - critical)
    return min(1.0, max(0.0, fraction))


def _trend(metric: ModelMetric, value: float | None, previous: float | None) -> Trend:
    if value is None or previous is None:
        return "unknown"
    if previous == 0:
        change = 0.0 if value == 0 else (1.0 if value > 0 else -1.0)
    else:
        change = (value - previous) / abs(previous)
    if metric.effective_direction == "lowerIsBetter":
        change = -change
    return "improving" if change > TREND_BAND else "degrading" if change < -TREND_BAND else "stable"


def _score(metrics: list[tuple[ModelMetric, float | None]]) -> float | None:
    total = weight = 0.0
    for metric, value in metrics:
        if value is None or metric.name not in SCORE_WEIGHTS:
            continue
        score = metric_score(metric, value)
        if score is not None:
            total += SCORE_WEIGHTS[metric.name] * score
            weight += SCORE_WEIGHTS[metric.name]
    return round(100 * total / weight, 1) if weight else None


def model_health(
    spec: ModelRouteSpec, observation: Mapping[RouteKey, Reading], ready: Mapping[str, bool]
) -> tuple[ModelHealth, ...]:
    """Levels, score and trend of every candidate, in priority order."""
    result = []
    for priority, model in enumerate(spec.models):
        metrics, current, previous = [], [], []
        requests = None
        for metric in spec.metrics:
            value = _value(observation.get(("model", model.name, metric.name)))
            before = _value(observation.get(("previous", model.name, metric.name)))
            if metric.name == "requests":
                requests = value
            metrics.append(
                MetricResult(
                    name=metric.name,
                    value=value,
                    previous=before,
                    level=metric_level(metric, value),
                    trend=_trend(metric, value, before),
                    warning=metric.thresholds[0],
                    critical=metric.thresholds[1],
                )
            )
            current.append((metric, value))
            previous.append((metric, before))
        enough = spec.min_requests == 0 or (requests is not None and requests >= spec.min_requests)
        known = [m.level for m in metrics if m.level != "unknown"]
        level: Level = max(known, key=_LEVEL_RANK.__getitem__) if known else "unknown"
        score = _score(current)
        # Compare the windows over the metrics both answered, or a missing metric reads as a trend.
        both = [
            i
            for i, ((_, now_v), (_, before_v)) in enumerate(zip(current, previous, strict=True))
            if now_v is not None and before_v is not None
        ]
        score_now = _score([current[i] for i in both])
        score_before = _score([previous[i] for i in both])
        trend: Trend = "unknown"
        if score_now is not None and score_before is not None:
            delta = (score_now - score_before) / max(score_before, 1.0)
            trend = "improving" if delta > TREND_BAND else "degrading" if delta < -TREND_BAND else "stable"
        result.append(
            ModelHealth(
                name=model.name,
                priority=priority,
                metrics=tuple(metrics),
                level=level,
                score=score,
                trend=trend,
                requests=requests,
                enough_requests=enough,
                ready=ready.get(model.name, True),
            )
        )
    return tuple(result)


def best_backup(models: tuple[ModelHealth, ...], active: str) -> ModelHealth | None:
    """Highest priority not critical and ready; else the best health score among those not critical."""
    candidates = [m for m in models if m.name != active and m.level in ("ok", "warning")]
    ready = [m for m in candidates if m.ready]
    if ready:
        return ready[0]
    scored = [m for m in candidates if m.score is not None]
    return max(scored, key=lambda m: (m.score or 0, -m.priority)) if scored else None


def decide_route(
    spec: ModelRouteSpec,
    observation: Mapping[RouteKey, Reading],
    memory: RouteMemory,
    now: datetime,
    ready: Mapping[str, bool] | None = None,
    replicas: Mapping[str, int] | None = None,
) -> RouteDecision:
    """Choose the model to serve, following the transitions in this module's docstring.

    ``ready`` tells, per model with a Deployment, whether it has available replicas; ``replicas`` its
    current replica count (needed to scale a pre-warmed backup back to where it was).
    """
    models = model_health(spec, observation, ready or {})
    by_name = {m.name: m for m in models}
    primary = spec.models[0].name
    active = memory.active if memory.active in by_name else primary
    state: State = memory.state or "Primary"
    steady = "primary healthy" if active == primary else f"serving backup {active}"
    reason = steady
    hour_ago = now - timedelta(hours=1)
    failovers = [t for t in memory.failovers if t > hour_ago]
    streak = memory.critical_streak
    no_backup = capped = False
    current = by_name[active]
    insufficient = not current.enough_requests

    primary_health = by_name[primary]
    primary_ok = primary_health.level == "ok"
    healthy_since = (memory.primary_healthy_since or now) if primary_ok else None

    override = spec.override
    if override is not None and (override.until is None or now < override.until):
        active, state = override.model, "Overridden"
        reason = f"pinned by spec.override{': ' + override.reason if override.reason else ''}"
        streak = 0
    else:
        if state == "Overridden":
            state = "Primary" if active == primary else "FailedOver"
        streak = streak + 1 if current.level == "critical" and current.enough_requests else 0
        if streak >= spec.failure_threshold:
            backup = best_backup(models, active)
            if backup is None:
                state, no_backup = "Degraded", True
                reason = f"{active} critical and no healthy backup"
            elif len(failovers) >= spec.max_failovers_per_hour:
                capped = True
                reason = f"{active} critical; failover cap of {spec.max_failovers_per_hour}/hour reached"
            else:
                reason = f"{active} critical for {streak} evaluations: {_critical_metrics(current)}"
                active, state, streak = backup.name, "FailedOver", 0
                failovers.append(now)
        elif active != primary and spec.rollback.enabled and healthy_since is not None:
            if now - healthy_since >= timedelta(seconds=parse_duration(spec.rollback.stable_for)):
                reason = f"primary {primary} healthy for {spec.rollback.stable_for}: rolled back"
                active, state, streak = primary, "Primary", 0
        elif state == "Degraded" and current.level != "critical":
            state = "Primary" if active == primary else "FailedOver"
            reason = steady

    switched = active != memory.active
    scale, prewarmed = _prewarm(spec, models, memory, active, now, replicas or {})
    unknown = [
        f"{m.name}/{r.name}: {observation.get(('model', m.name, r.name))}"
        for m in models
        for r in m.metrics
        if r.value is None
    ]
    new_memory = RouteMemory(
        active=active,
        state=state,
        since=now if switched else memory.since,
        critical_streak=streak,
        primary_healthy_since=healthy_since,
        failovers=failovers,
        prewarmed=prewarmed,
        revision=memory.revision,
        digest=memory.digest,
    )
    return RouteDecision(
        active=active,
        previous=memory.active,
        switched=switched,
        state=state,
        reason=reason,
        models=models,
        scale=scale,
        no_healthy_backup=no_backup,
        failover_capped=capped,
        insufficient_data=insufficient,
        metrics_available=not unknown,
        metrics_message="; ".join(unknown) if unknown else "every model metric answered",
        memory=new_memory,
    )


def _critical_metrics(model: ModelHealth) -> str:
    return ", ".join(
        f"{m.name} {m.value:g} past critical {m.critical:g}"
        for m in model.metrics
        if m.level == "critical" and m.value is not None and m.critical is not None
    )


def _prewarm(
    spec: ModelRouteSpec,
    models: tuple[ModelHealth, ...],
    memory: RouteMemory,
    active: str,
    now: datetime,
    replicas: Mapping[str, int],
) -> tuple[tuple[ScaleAction, ...], dict[str, Prewarm]]:
    """Keep warm the backup a failover would pick (while the active model is at warning or worse) and the
    active backup itself; scale the others back to where they were once idle for ``scaleDownAfter``."""
    candidates = {m.name: m for m in spec.models}
    health = {m.name: m for m in models}
    primary = spec.models[0].name
    wanted = None
    if health[active].level in ("warning", "critical"):
        backup = best_backup(models, active)
        wanted = backup.name if backup is not None else None
    needed = {name for name in (wanted, active) if name is not None and name != primary}
    actions: list[ScaleAction] = []
    prewarmed = dict(memory.prewarmed)
    for name in sorted(needed):
        candidate = candidates[name]
        if candidate.deployment is None:
            continue
        if name not in prewarmed:
            current = replicas.get(name, 0)
            prewarmed[name] = Prewarm(since=now, original_replicas=current)
            if current < candidate.prewarm_replicas:
                why = f"pre-warm: {active} is {health[active].level}" if name == wanted else "now active"
                actions.append(ScaleAction(name, candidate.deployment, candidate.prewarm_replicas, why))
        elif prewarmed[name].idle_since is not None:
            prewarmed[name] = prewarmed[name].model_copy(update={"idle_since": None})
    scale_down_after = timedelta(seconds=parse_duration(spec.rollback.scale_down_after))
    for name, warm in list(prewarmed.items()):
        if name in needed:
            continue
        deployment = candidates[name].deployment if name in candidates else None
        idle_since = warm.idle_since or now
        if deployment is None:
            del prewarmed[name]
        elif now - idle_since >= scale_down_after:
            actions.append(ScaleAction(name, deployment, warm.original_replicas, "pre-warm no longer needed"))
            del prewarmed[name]
        else:
            prewarmed[name] = warm.model_copy(update={"idle_since": idle_since})
    return tuple(actions), prewarmed
