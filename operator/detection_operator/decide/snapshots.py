"""What a per-evaluation snapshot holds: a route's models or a policy's rules, as values and thresholds.

Pure: built from a decision alone. The history store keeps them (``model_performance_metrics``) at the
configured sampling, for analysis over months that status and Prometheus' retention do not cover.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .policy import PolicyDecision
from .route import RouteDecision

__all__ = ["Snapshot", "snapshot_of"]


@dataclass(frozen=True)
class Snapshot:
    """One object's state at one evaluation: the chosen model or profile and the numbers behind it."""

    to: str
    values: dict[str, float | None] = field(default_factory=dict)
    thresholds: dict[str, float | None] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def _route(decision: RouteDecision) -> Snapshot:
    values: dict[str, float | None] = {}
    thresholds: dict[str, float | None] = {}
    for model in decision.models:
        values[f"{model.name}.score"] = model.score
        values[f"{model.name}.requests"] = model.requests
        for metric in model.metrics:
            values[f"{model.name}.{metric.name}"] = metric.value
            thresholds[f"{model.name}.{metric.name}.warning"] = metric.warning
            thresholds[f"{model.name}.{metric.name}.critical"] = metric.critical
    details = {
        "model": decision.active,
        "state": decision.state,
        "traffic": dict(decision.traffic),
        "levels": {m.name: m.level for m in decision.models},
        "metricsAvailable": decision.metrics_available,
    }
    return Snapshot(decision.active, values, thresholds, details)


def _policy(decision: PolicyDecision) -> Snapshot:
    values = {rule.name: rule.value for rule in decision.rules}
    thresholds = {rule.name: rule.threshold for rule in decision.rules}
    details = {
        "profile": decision.profile,
        "activeRules": [rule.name for rule in decision.rules if rule.active],
        "heldBy": decision.held_by,
        "metricsAvailable": decision.metrics_available,
    }
    return Snapshot(decision.profile, values, thresholds, details)


def snapshot_of(decision: object) -> Snapshot | None:
    """The snapshot of a route's or a policy's decision; None for a kind that has none."""
    if isinstance(decision, RouteDecision):
        return _route(decision)
    if isinstance(decision, PolicyDecision):
        return _policy(decision)
    return None
