"""ModelRoute: its observe and act steps and the pure parts the evaluation skeleton runs between them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Gauge

from .. import telemetry
from ..api.common import HISTORY_LIMIT
from ..api.conditions import ConditionReason, ConditionType, EventReason
from ..api.model_route import ModelRouteSpec, ModelRouteStatus, ModelStatus, ModelSwitch, ProbationStatus
from ..api.records import AuditRecord
from ..core.errors import OutputError
from ..core.readings import Reading
from ..core.times import parse_duration
from ..decide.alerts import Alert, route_alerts
from ..decide.publish import RoutePublication, route_publication
from ..decide.route import RouteDecision, RouteKey, RouteMemory, decide_route, previous_plan, query_plan
from ..record import conditions
from ..record.audit import Origin, route_records
from ..record.status import entries
from .context import Evaluation
from .effects import Effects
from .flow import Event, Flow


@dataclass(frozen=True)
class RouteObservation:
    """Both windows' readings and the models' Deployments."""

    readings: dict[RouteKey, Reading]
    ready: dict[str, bool]
    """Per model with a Deployment: whether it has an available replica."""
    replicas: dict[str, int]
    """Per model with a Deployment: its desired replicas (0 if the Deployment does not exist)."""


class RouteFlow(Flow[ModelRouteSpec, RouteObservation, RouteDecision, RoutePublication, RouteMemory]):
    """observe (two windows + Deployments) -> decide -> scale, publish route.json, roll the router."""

    kind = "ModelRoute"

    async def observe(self, ev: Evaluation[ModelRouteSpec], fx: Effects) -> RouteObservation:
        """Each model's metrics now and one window back, and the availability of its Deployment."""
        spec, ref = ev.spec, ev.ref
        plan = query_plan(spec, ref.namespace, ref.name)
        window_start = ev.now.timestamp() - parse_duration(spec.window)
        current, previous, state_of = await asyncio.gather(
            fx.observe(ref, spec.prometheus, plan),
            fx.observe(ref, spec.prometheus, previous_plan(plan), at=window_start),
            fx.deployments(ref.namespace, {m.name: m.deployment for m in spec.models if m.deployment}),
        )
        ready = {model: state is not None and state.available > 0 for model, state in state_of.items()}
        replicas = {model: state.replicas if state else 0 for model, state in state_of.items()}
        return RouteObservation({**current, **previous}, ready, replicas)

    def decide(
        self, ev: Evaluation[ModelRouteSpec], observation: RouteObservation
    ) -> tuple[RouteDecision, RoutePublication]:
        """The active model and traffic split, and the route.json that publishes them."""
        spec, ref = ev.spec, ev.ref
        memory = RouteMemory.load(ev.memory)
        decision = decide_route(
            spec, observation.readings, memory, ev.now, observation.ready, observation.replicas
        )
        pub = route_publication(
            spec, decision, ref.namespace, ref.name, memory.digest, memory.revision, ev.now
        )
        return decision, pub

    def config_map(self, ev: Evaluation[ModelRouteSpec]) -> str:
        """``spec.output.configMapName``, by default ``<name>-model-route``."""
        return ev.spec.output.config_map_name or f"{ev.ref.name}-model-route"

    def output(self, config_map: str) -> str:
        """The ConfigMap and the Deployments it scales."""
        return f"ConfigMap {config_map} or Deployment scale"

    async def act(
        self,
        ev: Evaluation[ModelRouteSpec],
        decision: RouteDecision,
        pub: RoutePublication,
        config_map: str,
        publish: bool,
        fx: Effects,
    ) -> None:
        """Scale first (a backup must be warm before the router is told to use it), then publish."""
        ref = ev.ref
        for action in decision.scale:
            if await fx.scale_deployment(ref.namespace, action.deployment, action.replicas):
                message = f"scaled Deployment {action.deployment} to {action.replicas} ({action.reason})"
                await fx.event(ref, "Normal", EventReason.BACKUP_SCALED, message)
            else:
                message = f"Deployment {action.deployment} not found"
                await fx.event(ref, "Warning", EventReason.DEPLOYMENT_NOT_FOUND, message)
        if not publish:
            return
        await fx.apply_config_map(ev.key, ref, config_map, {"route.json": pub.route_json}, pub.revision)
        router = ev.spec.output.router_deployment
        if router and not await fx.annotate_deployment(ref.namespace, router, pub.digest):
            await fx.event(
                ref, "Warning", EventReason.DEPLOYMENT_NOT_FOUND, f"router Deployment {router} not found"
            )

    def memory(
        self,
        ev: Evaluation[ModelRouteSpec],
        decision: RouteDecision,
        pub: RoutePublication,
        error: OutputError | None,
    ) -> RouteMemory:
        """The decision's memory with the published revision; unpublished, what is live stays remembered."""
        if error is None:
            return decision.memory.model_copy(update={"revision": pub.revision, "digest": pub.digest})
        # Not published: keep the memory's view of what is live, so the next evaluation retries.
        # Nor did the router see the new split: traffic history stays what was published.
        before = RouteMemory.load(ev.memory)
        return decision.memory.model_copy(update={"prewarmed": before.prewarmed, "traffic": before.traffic})

    def events(self, ev: Evaluation[ModelRouteSpec], decision: RouteDecision) -> list[Event]:
        """None beyond its records' (switches, rollbacks, refused failovers: see reconcile/events.py)."""
        return []

    def records(
        self, ev: Evaluation[ModelRouteSpec], decision: RouteDecision, origin: Origin
    ) -> list[AuditRecord]:
        """Model switch, rollback, override set or cleared, failover refused."""
        state = RouteMemory.load(ev.memory).state
        return route_records(origin, ev.spec, decision, state, _was_degraded(ev))

    def alerts(self, ev: Evaluation[ModelRouteSpec], decision: RouteDecision) -> list[Alert]:
        """Per-model metric and failure alerts, metrics unavailable, no healthy backup, model switched."""
        return route_alerts(ev.spec, decision, ev.ref)

    def status(
        self, ev: Evaluation[ModelRouteSpec], decision: RouteDecision, memory: RouteMemory
    ) -> ModelRouteStatus:
        """Active model, state, history, every model's health, the primary's probation."""
        return _status(decision, ev, memory)

    def conditions(
        self, ev: Evaluation[ModelRouteSpec], decision: RouteDecision, error: OutputError | None
    ) -> list[dict[str, Any]]:
        """Ready, InvalidSpec (False), MetricsAvailable, InsufficientData, Degraded."""
        return _conditions(ev.spec, decision, error, ev.generation, ev.now)

    def series(
        self, ev: Evaluation[ModelRouteSpec], decision: RouteDecision
    ) -> list[tuple[Gauge, dict[str, float | None]]]:
        """The active model and each model's health score."""
        active: dict[str, float | None] = {m.name: float(m.name == decision.active) for m in ev.spec.models}
        return [
            (telemetry.ACTIVE_MODEL, active),
            (telemetry.MODEL_HEALTH, {m.name: m.score for m in decision.models}),
        ]

    def switched(self, decision: RouteDecision) -> bool:
        """A switch from a previous model."""
        return decision.switched and decision.previous is not None


def _was_degraded(ev: Evaluation[ModelRouteSpec]) -> bool:
    """Whether the status this evaluation started from said Degraded (its Event and record were made)."""
    previous = ev.condition(ConditionType.DEGRADED)
    return previous is not None and previous.get("status") == "True"


def _conditions(
    spec: ModelRouteSpec,
    decision: RouteDecision,
    output_error: OutputError | None,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    def cond(type_: ConditionType, ok: bool, reason: ConditionReason, message: str) -> dict[str, Any]:
        return conditions.condition(type_, ok, reason, message, generation, now)

    degraded: ConditionReason | None = None
    if decision.no_healthy_backup:
        degraded = ConditionReason.NO_HEALTHY_BACKUP
    elif decision.failover_capped:
        degraded = ConditionReason.FAILOVER_CAP_REACHED
    active = next(m for m in decision.models if m.name == decision.active)
    served = "an unknown number of" if active.requests is None else f"{active.requests:g}"
    insufficient = decision.insufficient_data
    return [
        conditions.readiness(spec.dry_run, output_error, decision.reason, generation, now),
        conditions.spec_accepted(generation, now),
        conditions.metrics_available(decision.metrics_available, decision.metrics_message, generation, now),
        cond(
            ConditionType.INSUFFICIENT_DATA,
            insufficient,
            ConditionReason.TOO_FEW_REQUESTS if insufficient else ConditionReason.ENOUGH_REQUESTS,
            f"{decision.active} served {served} requests in {spec.window} (minRequests {spec.min_requests})",
        ),
        cond(
            ConditionType.DEGRADED,
            degraded is not None,
            degraded or ConditionReason.HEALTHY,
            decision.reason if degraded else "",
        ),
    ]


def _status(decision: RouteDecision, ev: Evaluation[ModelRouteSpec], memory: RouteMemory) -> ModelRouteStatus:
    """The ModelRoute-specific part of status."""
    history = entries(ev.status.get("switchHistory"), ModelSwitch)
    if decision.switched and decision.previous is not None:
        active = next(m for m in decision.models if m.name == decision.active)
        if decision.state == "Primary" and history and history[-1].rolled_back_at is None:
            history[-1] = history[-1].model_copy(update={"rolled_back_at": ev.now})
        entry = ModelSwitch(
            from_=decision.previous, to=decision.active, reason=decision.reason, score=active.score, at=ev.now
        )
        history = [*history, entry][-HISTORY_LIMIT:]
    return ModelRouteStatus(
        active_model=decision.active,
        state=decision.state,
        reason=decision.reason,
        revision=memory.revision,
        switch_history=history,
        last_evaluated=ev.now,
        models=[
            ModelStatus(
                name=m.name,
                level=m.level,
                state=m.state,
                traffic_percent=decision.traffic.get(m.name, 0),
                reason=m.cause or None,
                trend=m.trend,
                score=m.score,
                requests=m.requests,
                metrics={r.name: r.value for r in m.metrics if r.value is not None},
                levels={r.name: r.level for r in m.metrics},
            )
            for m in decision.models
        ],
        probation=_probation(decision),
    )


def _probation(decision: RouteDecision) -> ProbationStatus | None:
    """The primary's evidence while the route serves a backup (None on the primary)."""
    p = decision.probation
    if p is None:
        return None
    return ProbationStatus(
        requests=p.requests,
        min_requests=p.needed,
        healthy_for_seconds=None if p.healthy_for is None else p.healthy_for.total_seconds(),
        stable_for_seconds=p.stable_for.total_seconds(),
        failures=p.failures,
        traffic_paused_until=p.paused_until,
    )
