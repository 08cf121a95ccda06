"""The pure parts of each kind, found by kind name: what to query, how to decide, what is wrong.

One entry per kind, so the operator's flows and the tools (backtest, validate) dispatch through
:data:`LOGIC` instead of testing the spec's type; a new kind is one more entry. Pure.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from ..api.detection_policy import DetectionPolicySpec
from ..api.model_route import ModelRouteSpec
from ..core.identity import ObjectRef
from ..core.readings import Reading
from ..core.times import parse_duration
from . import policy, route
from .alerts import Alert, policy_alerts, route_alerts
from .memory import Memory

S = TypeVar("S")
D = TypeVar("D")
M = TypeVar("M", bound=Memory)


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


class KindLogic(ABC, Generic[S, D, M]):
    """One kind's pure parts: S its spec, D its decision, M its memory."""

    kind: str
    spec: type[S]
    memory: type[M]

    @abstractmethod
    def windows(self, spec: S, namespace: str, name: str) -> list[Window]:
        """Every query one evaluation runs, by window."""

    @abstractmethod
    def decide(self, spec: S, observation: Mapping[Any, Reading], memory: M, now: datetime) -> D:
        """The decision (a ModelRoute's Deployments count as ready: the tools cannot see them)."""

    @abstractmethod
    def next_memory(self, decision: D) -> M:
        """The memory the next evaluation starts from."""

    @abstractmethod
    def alerts(self, spec: S, decision: D, obj: ObjectRef) -> list[Alert]:
        """What is wrong now."""

    @abstractmethod
    def choice(self, decision: D) -> Choice:
        """What was chosen."""


class PolicyLogic(KindLogic[DetectionPolicySpec, policy.PolicyDecision, policy.PolicyMemory]):
    """DetectionPolicy: a profile from the rules."""

    kind = "DetectionPolicy"
    spec = DetectionPolicySpec
    memory = policy.PolicyMemory

    def windows(self, spec: DetectionPolicySpec, namespace: str, name: str) -> list[Window]:
        """The rules', latency check's, expense and external contributors' queries, now."""
        return [Window(policy.query_plan(spec, namespace, name))]

    def decide(
        self,
        spec: DetectionPolicySpec,
        observation: Mapping[Any, Reading],
        memory: policy.PolicyMemory,
        now: datetime,
    ) -> policy.PolicyDecision:
        """:func:`~.policy.decide_policy`."""
        return policy.decide_policy(spec, observation, memory, now)

    def next_memory(self, decision: policy.PolicyDecision) -> policy.PolicyMemory:
        """The decision's memory."""
        return decision.memory

    def alerts(
        self, spec: DetectionPolicySpec, decision: policy.PolicyDecision, obj: ObjectRef
    ) -> list[Alert]:
        """:func:`~.alerts.policy_alerts`."""
        return policy_alerts(spec, decision, obj)

    def choice(self, decision: policy.PolicyDecision) -> Choice:
        """The profile."""
        return Choice(decision.profile, decision.previous, decision.switched, decision.reason)


class RouteLogic(KindLogic[ModelRouteSpec, route.RouteDecision, route.RouteMemory]):
    """ModelRoute: a model and traffic split from the models' health."""

    kind = "ModelRoute"
    spec = ModelRouteSpec
    memory = route.RouteMemory

    def windows(self, spec: ModelRouteSpec, namespace: str, name: str) -> list[Window]:
        """Each model's metrics now, and one window back (the trend)."""
        plan = route.query_plan(spec, namespace, name)
        return [Window(plan), Window(route.previous_plan(plan), parse_duration(spec.window))]

    def decide(
        self,
        spec: ModelRouteSpec,
        observation: Mapping[Any, Reading],
        memory: route.RouteMemory,
        now: datetime,
    ) -> route.RouteDecision:
        """:func:`~.route.decide_route`."""
        return route.decide_route(spec, observation, memory, now)

    def next_memory(self, decision: route.RouteDecision) -> route.RouteMemory:
        """The decision's memory."""
        return decision.memory

    def alerts(self, spec: ModelRouteSpec, decision: route.RouteDecision, obj: ObjectRef) -> list[Alert]:
        """:func:`~.alerts.route_alerts`."""
        return route_alerts(spec, decision, obj)

    def choice(self, decision: route.RouteDecision) -> Choice:
        """The active model."""
        return Choice(decision.active, decision.previous, decision.switched, decision.reason)


LOGIC: Mapping[str, KindLogic[Any, Any, Any]] = {logic.kind: logic for logic in (PolicyLogic(), RouteLogic())}
"""Kind name -> its pure parts."""
