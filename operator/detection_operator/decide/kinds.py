"""The pure parts of each kind, found by kind name: what to query, how to decide, what is wrong.

One entry per kind, so the tools (backtest, validate) dispatch through :data:`LOGIC` instead of testing
the spec's type; a new kind is one more entry. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from ..core.identity import ObjectRef
from ..core.readings import Reading
from ..core.times import parse_duration
from . import policy, route
from .alerts import Alert, policy_alerts, route_alerts
from .memory import Memory

S = TypeVar("S")
M = TypeVar("M", bound=Memory)


D = TypeVar("D")


@dataclass(frozen=True)
class Window:
    """Queries evaluated ``seconds_back`` before the decision's time (0: now)."""

    plan: Mapping[Any, str]
    seconds_back: float = 0.0


@dataclass(frozen=True)
class Choice:
    """What a decision chose, in terms common to both kinds (a profile or a model)."""

    current: str
    previous: str | None
    switched: bool
    reason: str


@dataclass(frozen=True)
class KindLogic(Generic[S, D, M]):
    """One kind's pure parts: S its spec, D its decision (with the next ``memory``), M its memory."""

    memory: type[M]
    windows: Callable[[S, str, str], list[Window]]
    """Every query one evaluation runs (spec, namespace, name), by window."""
    decide: Callable[[S, Mapping[Any, Reading], M, datetime], D]
    """The decision (a ModelRoute's Deployments count as ready: the tools cannot see them)."""
    alerts: Callable[[S, D, ObjectRef], list[Alert]]
    """What is wrong now."""
    choice: Callable[[D], Choice]
    """What was chosen."""


def _route_windows(spec: Any, namespace: str, name: str) -> list[Window]:
    """Each model's metrics now, and one window back (the trend)."""
    plan = route.query_plan(spec, namespace, name)
    return [Window(plan), Window(route.previous_plan(plan), parse_duration(spec.window))]


LOGIC: Mapping[str, KindLogic[Any, Any, Any]] = {
    "DetectionPolicy": KindLogic(
        policy.PolicyMemory,
        lambda spec, namespace, name: [Window(policy.query_plan(spec, namespace, name))],
        policy.decide_policy,
        policy_alerts,
        lambda d: Choice(d.profile, d.previous, d.switched, d.reason),
    ),
    "ModelRoute": KindLogic(
        route.RouteMemory,
        _route_windows,
        route.decide_route,
        route_alerts,
        lambda d: Choice(d.active, d.previous, d.switched, d.reason),
    ),
}
"""Kind name -> its pure parts."""
