"""Scores of models and agents from what they recorded, the health band, and a policy's health. Pure.

The formulas are documented for users in docs/sdk/scores.md; this module is their one implementation
(status, ``explain`` and ``report`` all read them from here).

- **reliability** = 100 x the share of requests that succeeded in the window.
- **efficiency** = 100 x the weighted mean, over p95 latency (40), cost per request (30), tokens per
  request (15) and memory (15), of ``best / own``: the lowest value among the peers (the candidates of a
  route, or every agent) divided by this one's. Only dimensions this one recorded (> 0) count; the
  cheapest scores 100. A lone model scores 100: efficiency is relative.
- **specialization** = 100 x (best - worst) mean accuracy over the ``source``s it was scored on (at least
  two): 0 means equally good everywhere; a high score says where it is better, and where to look for a
  peer that is.
- **health** is the route's health score (success 40, latency 30, errors 20, accuracy 10 against the
  metrics' thresholds, see :mod:`.route`): for a model with its route's thresholds, for an agent with
  the default ones; its trend is the route's (the score against the previous window's).
- **band**: Excellent 90-100, Good 70-89, Fair 50-69, Poor 0-49 (of a score rounded to one decimal: 89.9
  is Good).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..api.common import HealthBand

Trend = Literal["improving", "stable", "degrading", "unknown"]
Kind = Literal["model", "agent"]

BANDS: tuple[tuple[float, HealthBand], ...] = ((90, "Excellent"), (70, "Good"), (50, "Fair"), (0, "Poor"))
EFFICIENCY_WEIGHTS: dict[str, float] = {
    "latency_p95_ms": 40,
    "cost_per_request": 30,
    "tokens_per_request": 15,
    "memory_mb": 15,
}
SPECIALIZATION_MIN_SOURCES = 2
POLICY_WEIGHTS: dict[str, float] = {"rules": 50, "latency": 30, "external": 20}


def health_band(score: float | None) -> HealthBand | None:
    """The band of a 0-100 score (None: no score)."""
    if score is None:
        return None
    return next(band for floor, band in BANDS if round(score, 1) >= floor)


@dataclass(frozen=True)
class Usage:
    """What one model or agent recorded in a window (None: not recorded, or no traffic)."""

    name: str
    kind: Kind = "model"
    requests: float | None = None
    success_rate: float | None = None
    latency_p95_ms: float | None = None
    cost_per_request: float | None = None
    tokens_per_request: float | None = None
    memory_mb: float | None = None
    accuracy_by_source: Mapping[str, float] = field(default_factory=dict)
    health: float | None = None
    trend: Trend = "unknown"

    @property
    def served(self) -> bool:
        """Whether it served anything in the window."""
        return self.requests is not None and self.requests > 0


@dataclass(frozen=True)
class Scores:
    """A model's or agent's scores in one window, and how its health moved since the previous one."""

    name: str
    kind: Kind
    requests: float | None
    reliability: float | None
    efficiency: float | None
    specialization: float | None
    best_source: str | None
    worst_source: str | None
    health: float | None
    band: HealthBand | None
    trend: Trend
    accuracy_by_source: Mapping[str, float] = field(default_factory=dict)


def reliability(usage: Usage) -> float | None:
    """100 x its success rate, once it served anything."""
    if not usage.served or usage.success_rate is None:
        return None
    return round(100 * min(1.0, max(0.0, usage.success_rate)), 1)


def efficiency(usage: Usage, peers: Sequence[Usage]) -> float | None:
    """100 x the weighted mean of best/own over the dimensions it recorded (see the module docstring)."""
    if not usage.served:
        return None
    total = weight = 0.0
    for dim, dim_weight in EFFICIENCY_WEIGHTS.items():
        own = getattr(usage, dim)
        if own is None or own <= 0:
            continue
        values = [v for p in peers if p.served and (v := getattr(p, dim)) is not None and v > 0]
        best = min([own, *values])
        total += dim_weight * best / own
        weight += dim_weight
    return round(100 * total / weight, 1) if weight else None


def specialization(usage: Usage) -> tuple[float | None, str | None, str | None]:
    """(score, best source, worst source) of its accuracy over at least two sources."""
    by_source = usage.accuracy_by_source
    if len(by_source) < SPECIALIZATION_MIN_SOURCES:
        return None, None, None
    best = max(by_source, key=lambda s: (by_source[s], s))
    worst = min(by_source, key=lambda s: (by_source[s], s))
    return round(100 * min(1.0, max(0.0, by_source[best] - by_source[worst])), 1), best, worst


def score(usage: Usage, peers: Sequence[Usage]) -> Scores:
    """Every score of ``usage`` among ``peers`` (which may include it)."""
    special, best, worst = specialization(usage)
    return Scores(
        name=usage.name,
        kind=usage.kind,
        requests=usage.requests,
        reliability=reliability(usage),
        efficiency=efficiency(usage, peers),
        specialization=special,
        best_source=best,
        worst_source=worst,
        health=usage.health,
        band=health_band(usage.health),
        trend=usage.trend,
        accuracy_by_source=dict(usage.accuracy_by_source),
    )


def score_group(usages: Sequence[Usage]) -> tuple[Scores, ...]:
    """The scores of peers (a route's candidates, or every agent), each against the others."""
    return tuple(score(u, usages) for u in usages)


@dataclass(frozen=True)
class PolicyHealth:
    """A policy's health: 0-100 from its components (each 0-1), and its band."""

    score: float | None
    band: HealthBand | None
    components: Mapping[str, float]


def policy_health(
    verdicts: Sequence[str],
    latency_ms: float | None,
    target_ms: float | None,
    circuits: Sequence[str],
) -> PolicyHealth:
    """Health of a policy from its latest evaluation: the share of rules that answered (``unknown`` is
    not an answer), the detector latency against the profile's target (1 within it, else target / value)
    and the share of external circuits closed (half-open counts half), weighted 50 / 30 / 20 over the
    components it has."""
    components: dict[str, float] = {}
    if verdicts:
        components["rules"] = sum(v != "unknown" for v in verdicts) / len(verdicts)
    if target_ms is not None and latency_ms is not None:
        components["latency"] = 1.0 if latency_ms <= target_ms else target_ms / latency_ms
    if circuits:
        closed = {"closed": 1.0, "half-open": 0.5}
        components["external"] = sum(closed.get(c, 0.0) for c in circuits) / len(circuits)
    weight = sum(POLICY_WEIGHTS[k] for k in components)
    if not weight:
        return PolicyHealth(None, None, components)
    value = round(100 * sum(POLICY_WEIGHTS[k] * v for k, v in components.items()) / weight, 1)
    return PolicyHealth(value, health_band(value), components)
