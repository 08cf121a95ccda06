"""The ModelRoute decision: (spec, observation, memory, now) -> decision. Pure: no I/O, no clock.

Health score (0-100) of a model: a weighted mean of per-metric scores, success rate 40, p95 latency 30,
error rate 20, accuracy 10, over the metrics that answered. A metric scores 1 at or better than its warning
threshold, 0 at or worse than its critical threshold, linearly in between.

The route is one half of a closed loop: a model gets traffic only when route.json gives it a share, and
reports only what it served. So each model has a state, not just a level:

- ``unknown``: Prometheus did not answer one of its queries (error, timeout, bad response): hold.
- ``failing``: its Deployment had available replicas and has none now (of the replicas it wants, or it was
  scaled to 0 while route.json gives it a share; a backup scaled back to 0 is idle); or traffic was sent
  to it and its data is gone (the ``requests`` metric, or every metric when the catalog has no
  ``requests``, answered empty or NaN).
- ``idle``: its data is gone but no traffic was sent to it: a backup waiting, not a fault.
- ``healthy`` / ``warning`` / ``critical``: by the worst metric level.

"Traffic was sent" to a model: it reports requests (the ``requests`` metric > 0); or route.json (as
recorded in ``memory.traffic``) has given it a share without a break, and it either reported requests
since that share began or the share has lasted ``SETTLE_INTERVALS`` evaluation intervals (at least
``SETTLE_FLOOR_SECONDS``), time for the router to follow and for Prometheus to scrape twice.

Transitions, in the order they apply:

1. ``override.model`` (until ``override.until``) pins the route: state Overridden.
2. The active model critical (with at least ``minRequests`` requests) or failing for ``failureThreshold``
   consecutive evaluations (a Deployment that lost every replica counts at once) -> the best backup:
   highest priority that is healthy, warning or idle and ready, else the highest health score among
   those, else the first of them (a backup scaled to zero, which becoming active scales up); none ->
   stay, state Degraded (NoHealthyBackup). At most ``maxFailoversPerHour`` failovers in any hour
   (FailoverCapReached). An unknown active model holds its streak.
3. The active model at warning or worse (or failing) -> pre-warm the backup a failover would pick.
4. On a backup, route.json gives the primary ``rollback.trafficPercent`` of the traffic (the trickle).
   Its probation starts when it is healthy with requests served; it is rolled back to once it has stayed
   healthy for the probation (``rollback.stableFor``) and served at least ``minRequests`` (at least 1)
   in a window that holds only data since it was last failing or critical (one ``window`` after that).
   Failing, or critical with ``minRequests``, for ``failureThreshold`` evaluations during a probation
   ends it: the trickle goes to 0 for the next probation's length, and that probation is twice as long
   (``stableFor`` x 2^failures, capped at ``PROBATION_CAP`` x). Pre-warmed backups are scaled back
   ``rollback.scaleDownAfter`` after the route no longer needs them.
5. On the primary, ``backupTrafficPercent`` of the traffic goes to the first fallback (warm-verified).

Alerts (see :mod:`.alerts`) are decided here as part of each model's health: a metric past its alert
threshold (its own warning/critical, or the alert defaults when it gives neither) for
``failureThreshold`` consecutive evaluations with ``minRequests`` served; a failing model for as long
(at once for lost replicas). Idle and unknown models raise nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from ..api.common import Severity
from ..api.model_route import DEFAULT_ALERT_THRESHOLDS, PROBATION_CAP, ModelMetric, ModelRouteSpec, ModelState
from ..core import promql
from ..core.readings import Missing, Reading
from ..core.times import duration, parse_duration
from .memory import Memory

Level = Literal["ok", "warning", "critical", "unknown"]
Trend = Literal["improving", "stable", "degrading", "unknown"]
State = Literal["Primary", "FailedOver", "Overridden", "Degraded"]

SCORE_WEIGHTS: dict[str, float] = {"successRate": 40, "latencyP95Ms": 30, "errorRate": 20, "accuracy": 10}
TREND_BAND = 0.05
SETTLE_INTERVALS = 3
SETTLE_FLOOR_SECONDS = 10.0
_LEVEL_RANK = {"unknown": 0, "ok": 0, "warning": 1, "critical": 2}
_UNANSWERED = frozenset({"error", "timeout", "bad-response"})
_CANDIDATE_STATES = frozenset({"healthy", "warning", "idle"})
_LEVEL_STATE: dict[Level, ModelState] = {
    "ok": "healthy",
    "unknown": "healthy",
    "warning": "warning",
    "critical": "critical",
}

# Observation keys: ("model", model, metric) now, ("previous", model, metric) one window earlier.
RouteKey = tuple[str, str, str]


class Prewarm(Memory):
    """A backup scaled up ahead of a possible failover."""

    since: datetime
    original_replicas: int
    idle_since: datetime | None = None


class TrafficSpan(Memory):
    """The traffic split route.json carried from ``since`` on."""

    since: datetime
    traffic: dict[str, int]


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
    traffic: list[TrafficSpan] = Field(default_factory=list)
    failing_streaks: dict[str, int] = Field(default_factory=dict)
    breach_streaks: dict[str, int] = Field(default_factory=dict)
    available_seen: list[str] = Field(default_factory=list)
    probation_failures: int = 0
    probation_streak: int = 0
    trickle_paused_until: datetime | None = None
    route_rate: float | None = None
    primary_bad_at: datetime | None = None
    reported: dict[str, datetime] = Field(default_factory=dict)
    fallbacks: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class MetricResult:
    """One metric of one model, with the alert it raises (if any) in this evaluation."""

    name: str
    value: float | None
    previous: float | None
    level: Level
    trend: Trend
    warning: float | None
    critical: float | None
    alert: Severity | None = None
    alert_threshold: float | None = None


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
    state: ModelState = "healthy"
    cause: str = ""
    traffic_percent: int = 0
    failure_alert: bool = False
    lost_replicas: bool = False
    """Failing for its Deployment's replicas: counts toward failover, and alerts, at once."""


@dataclass(frozen=True)
class ScaleAction:
    """Scale a model's Deployment (pre-warm up, or back down)."""

    model: str
    deployment: str
    replicas: int
    reason: str


@dataclass(frozen=True)
class Probation:
    """The primary proving itself under its trickle, while the route serves a backup."""

    requests: float
    needed: int
    healthy_for: timedelta | None
    stable_for: timedelta
    failures: int
    paused_until: datetime | None


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
    traffic: Mapping[str, int] = dataclass_field(default_factory=dict)
    fallbacks: tuple[str, ...] = ()
    probation: Probation | None = None


def query_plan(spec: ModelRouteSpec, namespace: str, name: str) -> dict[RouteKey, str]:
    """Every query (current window) one evaluation runs; the previous window reuses them one window back."""
    plan: dict[RouteKey, str] = {}
    for model in spec.models:
        values = {"model": model.name, "namespace": namespace, "route": name, "window": spec.window}
        for metric in spec.catalog:
            assert metric.query is not None  # the catalog gives every metric its query
            plan[("model", model.name, metric.name)] = promql.render(metric.query, values)
    return plan


def previous_plan(plan: Mapping[RouteKey, str]) -> dict[RouteKey, str]:
    """The same queries keyed for the previous window: evaluated one window back, they give the trend."""
    return {("previous", model, metric): query for (_, model, metric), query in plan.items()}


def _value(reading: Reading | None) -> float | None:
    return None if reading is None or isinstance(reading, Missing) else reading.value


def _answered(reading: Reading | None) -> bool:
    """Whether Prometheus answered (an empty or NaN answer is an answer: the data is not there)."""
    return not (isinstance(reading, Missing) and reading.cause in _UNANSWERED)


def metric_level(metric: ModelMetric, value: float | None) -> Level:
    """ok / warning / critical of a value against the metric's thresholds and direction."""
    if value is None:
        return "unknown"
    warning, critical = metric.thresholds
    higher = metric.effective_direction == "higherIsBetter"

    def past(threshold: float | None) -> bool:
        return threshold is not None and (value < threshold if higher else value > threshold)

    return "critical" if past(critical) else "warning" if past(warning) else "ok"


def alert_level(metric: ModelMetric, value: float | None) -> tuple[Severity | None, float | None]:
    """The alert a value raises and the threshold it passed: the metric's own warning/critical when it
    gives any, else the alert defaults (``DEFAULT_ALERT_THRESHOLDS``), which are not failover thresholds."""
    if value is None:
        return None, None
    if metric.warning is not None or metric.critical is not None:
        higher = metric.effective_direction == "higherIsBetter"
        for severity, threshold in (("critical", metric.critical), ("warning", metric.warning)):
            if threshold is not None and (value < threshold if higher else value > threshold):
                return severity, threshold  # type: ignore[return-value]
        return None, None
    rule = DEFAULT_ALERT_THRESHOLDS.get(metric.name)
    if rule is None:
        return None, None
    threshold, severity = rule
    breached = value < threshold if metric.effective_direction == "higherIsBetter" else value > threshold
    return (severity, threshold) if breached else (None, None)


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


def routed_since(memory: RouteMemory, model: str) -> datetime | None:
    """Since when route.json has given ``model`` a share without a break (None: it has none now)."""
    return _share_since(memory.traffic, model)


def _share_since(traffic: Sequence[TrafficSpan], model: str) -> datetime | None:
    since = None
    for span in reversed(traffic):
        if span.traffic.get(model, 0) <= 0:
            break
        since = span.since
    return since


def traffic_sent(
    spec: ModelRouteSpec, memory: RouteMemory, model: str, requests: float | None, now: datetime
) -> bool:
    """Whether traffic was sent to ``model``: it reports requests; or route.json has given it a share
    without a break and it reported requests since that share began; or that share has lasted the settle
    time (``SETTLE_INTERVALS`` evaluation intervals, at least ``SETTLE_FLOOR_SECONDS``): before that, no
    data from a model that never reported may just mean "not scraped yet"."""
    if requests is not None and requests > 0:
        return True
    since = routed_since(memory, model)
    if since is None:
        return False
    reported = memory.reported.get(model)
    if reported is not None and reported >= since:
        return True  # it reported while routed, and now its data is gone
    settle = timedelta(seconds=max(SETTLE_INTERVALS * parse_duration(spec.interval), SETTLE_FLOOR_SECONDS))
    return now - since >= settle


def _reported(
    previous: Mapping[str, datetime],
    models: Sequence[ModelHealth],
    traffic: Sequence[TrafficSpan],
    now: datetime,
) -> dict[str, datetime]:
    """``memory.reported``: per model, a time it reported requests, moved only when that time no longer
    shows a report within the model's current share. `traffic_sent` asks only whether the model reported
    since its share began, so the first report of each share is enough; a time moved at every evaluation
    would make every route's status differ at every evaluation, and be written each time."""
    reported = dict(previous)
    for m in models:
        if m.requests is None or m.requests <= 0:
            continue
        since = _share_since(traffic, m.name)
        old = reported.get(m.name)
        if old is None or (since is not None and old < since):
            reported[m.name] = now
    return {m.name: reported[m.name] for m in models if m.name in reported}


def _share(memory: RouteMemory, model: str) -> int:
    return memory.traffic[-1].traffic.get(model, 0) if memory.traffic else 0


def model_health(
    spec: ModelRouteSpec,
    observation: Mapping[RouteKey, Reading],
    ready: Mapping[str, bool],
    memory: RouteMemory | None = None,
    now: datetime | None = None,
    replicas: Mapping[str, int] | None = None,
) -> tuple[ModelHealth, ...]:
    """Levels, score, trend, state and alerts of every candidate, in priority order."""
    memory = memory or RouteMemory()
    result = []
    has_requests_metric = any(m.name == "requests" for m in spec.catalog)
    for priority, model in enumerate(spec.models):
        metrics, current, previous = [], [], []
        requests = None
        answered = True
        gone = True
        for metric in spec.catalog:
            reading = observation.get(("model", model.name, metric.name))
            value = _value(reading)
            before = _value(observation.get(("previous", model.name, metric.name)))
            answered = answered and _answered(reading)
            if metric.name == "requests":
                requests = value
                gone = value is None
            elif not has_requests_metric and value is not None:
                gone = False
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
        is_ready = ready.get(model.name, True)
        share = _share(memory, model.name)
        state: ModelState
        cause = ""
        lost = _lost_replicas(model.name, ready, memory, (replicas or {}).get(model.name, 0), share)
        if not answered:
            state, cause = "unknown", "Prometheus did not answer"
        elif lost:
            state, cause = "failing", lost
        elif gone:
            sent = now is not None and traffic_sent(spec, memory, model.name, requests, now)
            if sent:
                streak = memory.failing_streaks.get(model.name, 0) + 1
                state, cause = "failing", f"no data for {streak} evaluations while {_routed(memory, share)}"
            else:
                state, cause = "idle", "no traffic was sent to it"
        else:
            state = _LEVEL_STATE[level]
            if state == "critical" and not enough:
                state = "warning"  # too little evidence to call it critical; never idle: it served
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
                ready=is_ready,
                state=state,
                cause=cause,
                traffic_percent=share,
                lost_replicas=answered and bool(lost),
            )
        )
    return tuple(result)


def _lost_replicas(
    model: str, ready: Mapping[str, bool], memory: RouteMemory, wanted: int, share: int
) -> str:
    """Why ``model`` counts as failing at once for its Deployment ("" if it does not): it had replicas
    available and has none of the ``wanted``; or it was scaled to 0 while route.json gives it a share.
    A Deployment scaled to 0 without a share (a pre-warmed backup scaled back) is a backup waiting."""
    if model not in ready or ready[model] or model not in memory.available_seen:
        return ""
    if wanted > 0:
        return f"0 of {wanted} replicas available"
    if share > 0:
        return f"0 of 0 replicas available: scaled to 0 while route.json gives it {share} %"
    return ""


def _routed(memory: RouteMemory, share: int) -> str:
    if memory.route_rate is None or share == 0:
        return f"{share} % of the traffic was routed to it"
    return f"{memory.route_rate * share / 100:.3g} req/s ({share} %) were routed to it"


def best_backup(models: tuple[ModelHealth, ...], active: str) -> ModelHealth | None:
    """Highest priority healthy, warning or idle and ready; else the best health score among them; else
    the highest priority among them (idle, not ready: a backup scaled to zero)."""
    candidates = [m for m in models if m.name != active and m.state in _CANDIDATE_STATES]
    ready = [m for m in candidates if m.ready]
    if ready:
        return ready[0]
    scored = [m for m in candidates if m.score is not None]
    if scored:
        return max(scored, key=lambda m: (m.score or 0, -m.priority))
    # Idle backups scaled to zero: the first one, which pre-warm (or becoming active) scales up.
    return candidates[0] if candidates else None


def _with_alerts(
    spec: ModelRouteSpec, models: tuple[ModelHealth, ...], memory: RouteMemory
) -> tuple[tuple[ModelHealth, ...], dict[str, int], dict[str, int]]:
    """Attach alerts: a breach (or a failure) must hold ``failureThreshold`` evaluations to raise one."""
    catalog: dict[str, ModelMetric] = {m.name: m for m in spec.catalog}
    breach: dict[str, int] = {}
    failing: dict[str, int] = {}
    result = []
    for model in models:
        if model.state == "unknown":  # hold: neither count nor forget
            breach.update({k: v for k, v in memory.breach_streaks.items() if k.startswith(f"{model.name}/")})
            if model.name in memory.failing_streaks:
                failing[model.name] = memory.failing_streaks[model.name]
            result.append(model)
            continue
        if model.state == "failing":
            failing[model.name] = memory.failing_streaks.get(model.name, 0) + 1
        metrics = []
        for metric in model.metrics:
            key = f"{model.name}/{metric.name}"
            severity, threshold = alert_level(catalog[metric.name], metric.value)
            if severity is None or not model.enough_requests or model.state in ("idle", "failing"):
                metrics.append(metric)
                continue
            breach[key] = memory.breach_streaks.get(key, 0) + 1
            if breach[key] >= spec.failure_threshold:
                metric = replace(metric, alert=severity, alert_threshold=threshold)
            metrics.append(metric)
        raised = model.state == "failing" and (
            model.lost_replicas or failing[model.name] >= spec.failure_threshold
        )
        result.append(ModelHealth(**{**model.__dict__, "metrics": tuple(metrics), "failure_alert": raised}))
    return tuple(result), breach, failing


def _counts_toward_failover(model: ModelHealth) -> bool:
    return model.state == "failing" or (model.state == "critical" and model.enough_requests)


def _probation_length(spec: ModelRouteSpec, failures: int) -> timedelta:
    factor = min(2**failures, PROBATION_CAP)
    return timedelta(seconds=parse_duration(spec.rollback.stable_for) * factor)


def decide_route(
    spec: ModelRouteSpec,
    observation: Mapping[RouteKey, Reading],
    memory: RouteMemory,
    now: datetime,
    ready: Mapping[str, bool] | None = None,
    replicas: Mapping[str, int] | None = None,
) -> RouteDecision:
    """Choose the model to serve and the traffic split, following the transitions in this module's docstring.

    ``ready`` tells, per model with a Deployment, whether it has available replicas; ``replicas`` its
    current replica count (needed to scale a pre-warmed backup back to where it was).
    """
    ready = ready or {}
    models, breach, failing = _with_alerts(
        spec, model_health(spec, observation, ready, memory, now, replicas), memory
    )
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

    # The primary's probation while the route serves a backup.
    primary_health = by_name[primary]
    failures = memory.probation_failures
    paused_until = memory.trickle_paused_until
    if paused_until is not None and now >= paused_until:
        paused_until = None
    served = primary_health.requests or 0.0
    proving = primary_health.state == "healthy" and served > 0
    healthy_since = (memory.primary_healthy_since or now) if proving else None
    probation_streak = 0
    if active != primary and memory.primary_healthy_since is not None and not proving:
        probation_streak = memory.probation_streak + 1 if _counts_toward_failover(primary_health) else 0
        if probation_streak >= spec.failure_threshold:
            failures, probation_streak = failures + 1, 0
            paused_until = now + _probation_length(spec, failures)
        else:
            healthy_since = memory.primary_healthy_since  # not failed yet: the probation goes on
    stable_for = _probation_length(spec, failures)
    needed = max(spec.min_requests, 1)
    # The window's requests are the primary's own since it recovered only once a whole window has passed
    # since it was last failing or critical: before that, increase() still counts what it served before
    # it died (a restarted counter reads as a reset, not as nothing).
    bad_at = now if primary_health.state in ("failing", "critical") else memory.primary_bad_at
    window = duration(spec.window)
    clean = bad_at is None or now - bad_at >= window

    override = spec.override
    if override is not None and (override.until is None or now < override.until):
        active, state = override.model, "Overridden"
        reason = f"pinned by spec.override{': ' + override.reason if override.reason else ''}"
        streak = 0
    else:
        if state == "Overridden":
            state = "Primary" if active == primary else "FailedOver"
        if current.state != "unknown":  # Prometheus not answering holds the streak
            streak = streak + 1 if _counts_toward_failover(current) else 0
            if current.failure_alert and current.lost_replicas:
                streak = max(streak, spec.failure_threshold)
        if streak >= spec.failure_threshold:
            backup = best_backup(models, active)
            if backup is None:
                state, no_backup = "Degraded", True
                reason = f"{active} {current.state} and no healthy backup"
            elif len(failovers) >= spec.max_failovers_per_hour:
                capped = True
                reason = (
                    f"{active} {current.state}; failover cap of {spec.max_failovers_per_hour}/hour reached"
                )
            else:
                reason = f"{active} {current.state} for {streak} evaluations: {_why(current)}"
                active, state, streak = backup.name, "FailedOver", 0
                failovers.append(now)
                healthy_since = None
        elif active != primary and spec.rollback.enabled and proving and healthy_since is not None:
            if now - healthy_since >= stable_for and served >= needed and clean:
                reason = (
                    f"primary {primary} healthy for {_seconds(now - healthy_since)} with "
                    f"{served:.0f} requests served under its trickle: rolled back"
                )
                active, state, streak = primary, "Primary", 0
                failures, paused_until, healthy_since = 0, None, None
            else:
                reason = (
                    f"serving backup {active}; primary {primary} on probation: healthy for "
                    f"{_seconds(now - healthy_since)} of {_seconds(stable_for)}, "
                    f"{served:.0f} of {needed} requests"
                )
                if bad_at is not None and not clean:
                    reason += f", its window clean of pre-recovery data in {_seconds(bad_at + window - now)}"
        elif active != primary and paused_until is not None:
            reason = (
                f"serving backup {active}; primary {primary} failed under its trickle "
                f"({failures} time(s)): trickle off until {paused_until.isoformat()}, next probation "
                f"{_seconds(stable_for)}"
            )
        elif state == "Degraded" and current.state not in ("critical", "failing"):
            state = "Primary" if active == primary else "FailedOver"
            reason = steady

    switched = active != memory.active
    # An unknown model keeps the place it had: Prometheus not answering must not reshuffle route.json.
    fallbacks = tuple(
        m.name
        for m in models
        if m.name != active
        and (m.state in _CANDIDATE_STATES or (m.state == "unknown" and m.name in memory.fallbacks))
    )
    traffic = _traffic(spec, active, primary, state, fallbacks, paused_until)
    history = list(memory.traffic)
    if not history or history[-1].traffic != traffic:
        history.append(TrafficSpan(since=now, traffic=traffic))
    window_start = now - duration(spec.window)
    # Keep what the window (and the settle time) may still ask about: spans that end inside it.
    while len(history) > 1 and history[1].since <= window_start:
        history.pop(0)
    # The route's request rate, for messages: only while every model with a share reports (a dead one's
    # requests are retried elsewhere, so the others' sum would understate what was routed to it).
    total = [m.requests for m in models if m.requests is not None]
    route_rate = memory.route_rate
    routed_all = all(m.requests is not None for m in models if m.traffic_percent > 0)
    if routed_all and total and sum(total) > 0:
        route_rate = sum(total) / parse_duration(spec.window)
    scale, prewarmed = _prewarm(spec, models, memory, active, now, replicas or {})
    unknown = [
        f"{m.name}/{r.name}: {observation.get(('model', m.name, r.name))}"
        for m in models
        for r in m.metrics
        if not _answered(observation.get(("model", m.name, r.name)))
    ]
    seen = sorted({*memory.available_seen, *(m for m, ok in ready.items() if ok)})
    new_memory = RouteMemory(
        active=active,
        state=state,
        since=now if switched else memory.since,
        critical_streak=streak,
        primary_healthy_since=healthy_since if active != primary else None,
        failovers=failovers,
        prewarmed=prewarmed,
        revision=memory.revision,
        digest=memory.digest,
        traffic=history,
        failing_streaks=failing,
        breach_streaks=breach,
        available_seen=seen,
        probation_failures=failures,
        probation_streak=probation_streak,
        trickle_paused_until=paused_until,
        route_rate=route_rate,
        primary_bad_at=bad_at if active != primary else None,
        reported=_reported(memory.reported, models, history, now),
        fallbacks=list(fallbacks),
    )
    probation = None
    if active != primary and state != "Overridden":
        probation = Probation(
            requests=served,
            needed=needed,
            healthy_for=None if healthy_since is None else now - healthy_since,
            stable_for=stable_for,
            failures=failures,
            paused_until=paused_until,
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
        metrics_message="; ".join(unknown) if unknown else "Prometheus answered every model query",
        memory=new_memory,
        traffic=traffic,
        fallbacks=fallbacks,
        probation=probation,
    )


def _traffic(
    spec: ModelRouteSpec,
    active: str,
    primary: str,
    state: State,
    fallbacks: tuple[str, ...],
    paused_until: datetime | None,
) -> dict[str, int]:
    """route.json's split: the active model, plus the primary's trickle or a warm-verified backup."""
    trickle = spec.rollback.traffic_percent if spec.rollback.enabled and paused_until is None else 0
    if state != "Overridden" and active != primary and trickle:
        return {active: 100 - trickle, primary: trickle}
    if state != "Overridden" and active == primary and spec.backup_traffic_percent and fallbacks:
        return {primary: 100 - spec.backup_traffic_percent, fallbacks[0]: spec.backup_traffic_percent}
    return {active: 100}


def _seconds(delta: timedelta) -> str:
    return f"{delta.total_seconds():.0f}s"


def _why(model: ModelHealth) -> str:
    if model.state == "failing":
        return model.cause
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
    if health[active].state in ("warning", "critical", "failing"):
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
                why = f"pre-warm: {active} is {health[active].state}" if name == wanted else "now active"
                actions.append(ScaleAction(name, candidate.deployment, candidate.prewarm_replicas, why))
        elif prewarmed[name].idle_since is not None:
            prewarmed[name] = prewarmed[name].model_copy(update={"idle_since": None})
    scale_down_after = duration(spec.rollback.scale_down_after)
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
