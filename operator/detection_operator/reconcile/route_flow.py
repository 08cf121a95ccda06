"""ModelRoute evaluation: observe (two windows + Deployments) -> decide -> act -> notify -> record."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..act import kube
from ..api.base import parse_duration
from ..api.model_route import ModelRouteSpec
from ..decide.alerts import ObjectKey, route_alerts
from ..decide.publish import RoutePublication, route_publication
from ..decide.route import RouteDecision, RouteKey, RouteMemory, decide_route, query_plan
from ..record import conditions
from ..record.conditions import rfc3339
from ..runtime import telemetry
from ..runtime.scheduler import Key

if TYPE_CHECKING:
    from .reconciler import Reconciler

HISTORY_LIMIT = 20
METRICS_AVAILABLE = "MetricsAvailable"
INSUFFICIENT_DATA = "InsufficientData"
DEGRADED = "Degraded"


async def evaluate_route(
    r: Reconciler,
    key: Key,
    ref: kube.ObjectRef,
    annotations: Mapping[str, str] | None,
    spec: ModelRouteSpec,
    status: dict[str, Any],
    generation: int | None,
    now: datetime,
) -> bool:
    """One ModelRoute evaluation, from queries to status; whether every needed metric answered."""
    plan = query_plan(spec, ref.namespace, ref.name)
    previous_plan: dict[RouteKey, str] = {("previous", m, metric): q for (_, m, metric), q in plan.items()}
    window_start = now.timestamp() - parse_duration(spec.window)
    deployments = {m.name: m.deployment for m in spec.models if m.deployment}
    current, previous, states = await asyncio.gather(
        r.observe(ref, spec.prometheus, plan),
        r.observe(ref, spec.prometheus, previous_plan, at=window_start),
        asyncio.gather(
            *(r.blocking(kube.read_deployment, r.api, ref.namespace, d) for d in deployments.values())
        ),
    )
    state_of = dict(zip(deployments, states, strict=True))
    ready = {model: state is not None and state.available > 0 for model, state in state_of.items()}
    replicas = {model: state.replicas if state else 0 for model, state in state_of.items()}
    memory = RouteMemory.load(status.get("memory"))
    decision = decide_route(spec, {**current, **previous}, memory, now, ready, replicas)
    r.decided(key)
    pub = route_publication(spec, decision, ref.namespace, ref.name, memory.digest, memory.revision, now)
    config_map = spec.output.config_map_name or f"{ref.name}-model-route"
    output_error = None
    written = status.get("configMap")
    if not spec.dry_run:
        # Also re-applied when the ConfigMap was deleted or hand-edited (outputs.py).
        publish = (
            pub.changed
            or written != config_map
            or not await r.output_intact(key, ref, config_map, pub.revision)
        )
        act = _act(r, key, ref, spec, decision, pub, config_map, publish)
        output_error = await r.write(ref, f"ConfigMap {config_map} or Deployment scale", act)
        written = config_map if output_error is None else written
        if output_error is None and publish:
            r.published(key, ref, config_map, pub.revision)
    new_memory = decision.memory
    if output_error is None:
        new_memory = new_memory.model_copy(update={"revision": pub.revision, "digest": pub.digest})
    else:
        # Not published: keep the memory's view of what is live, so the next evaluation retries.
        # Nor did the router see the new split: traffic history stays what was published.
        new_memory = new_memory.model_copy(update={"prewarmed": memory.prewarmed, "traffic": memory.traffic})
    await _notify(r, ref, decision, status)
    fields = _fields(decision, status, new_memory, now)
    fields.update(observedGeneration=generation, configMap=written)
    alerts = route_alerts(spec, decision, ObjectKey(ref.kind, ref.namespace, ref.name))
    fields["alerts"], delivered = await r.alerts(
        ref, annotations, spec.alerts, alerts, status, generation, now
    )
    await r.record(
        key, ref, status, fields, [*_conditions(spec, decision, output_error, generation, now), delivered]
    )
    r.series.publish(
        telemetry.ACTIVE_MODEL, key, {m.name: float(m.name == decision.active) for m in spec.models}
    )
    r.series.publish(telemetry.MODEL_HEALTH, key, {m.name: m.score for m in decision.models})
    if decision.switched and decision.previous is not None:
        r.series.switched(ref.kind, key)
    return decision.metrics_available


async def _act(
    r: Reconciler,
    key: Key,
    ref: kube.ObjectRef,
    spec: ModelRouteSpec,
    decision: RouteDecision,
    pub: RoutePublication,
    config_map: str,
    publish: bool,
) -> None:
    # Scale first: a backup must be warm before the router is told to use it.
    for action in decision.scale:
        if await r.mutate(kube.scale_deployment, r.api, ref.namespace, action.deployment, action.replicas):
            message = f"scaled Deployment {action.deployment} to {action.replicas} ({action.reason})"
            await r.event(ref, "Normal", "BackupScaled", message)
        else:
            await r.event(ref, "Warning", "DeploymentNotFound", f"Deployment {action.deployment} not found")
    if not publish:
        return
    annotations = {kube.REVISION_ANNOTATION: str(pub.revision)}
    await r.apply_config_map(key, ref, config_map, {"route.json": pub.route_json}, annotations)
    router = spec.output.router_deployment
    if router and not await r.mutate(kube.annotate_deployment, r.api, ref.namespace, router, pub.digest):
        await r.event(ref, "Warning", "DeploymentNotFound", f"router Deployment {router} not found")


async def _notify(
    r: Reconciler, ref: kube.ObjectRef, decision: RouteDecision, status: Mapping[str, Any]
) -> None:
    if decision.switched and decision.previous is not None:
        rolled_back = decision.state == "Primary"
        reason = "ModelRolledBack" if rolled_back else "ModelSwitched"
        message = f"Switched from {decision.previous} to {decision.active}: {decision.reason}"
        await r.event(ref, "Normal" if rolled_back else "Warning", reason, message)
    previous = conditions.find(status.get("conditions"), DEGRADED)
    was_degraded = previous is not None and previous.get("status") == "True"
    if (decision.no_healthy_backup or decision.failover_capped) and not was_degraded:
        reason = "NoHealthyBackup" if decision.no_healthy_backup else "FailoverCapReached"
        await r.event(ref, "Warning", reason, decision.reason)


def _conditions(
    spec: ModelRouteSpec,
    decision: RouteDecision,
    output_error: str | None,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    def cond(type_: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
        return conditions.condition(type_, ok, reason, message, generation, now)

    ready = conditions.readiness(spec.dry_run, output_error, decision.reason, generation, now)
    degraded_reason = (
        "NoHealthyBackup"
        if decision.no_healthy_backup
        else "FailoverCapReached"
        if decision.failover_capped
        else ""
    )
    active = next(m for m in decision.models if m.name == decision.active)
    served = "an unknown number of" if active.requests is None else f"{active.requests:g}"
    return [
        ready,
        cond(conditions.INVALID_SPEC, False, "SpecAccepted", ""),
        cond(
            METRICS_AVAILABLE,
            decision.metrics_available,
            "QueriesAnswered" if decision.metrics_available else "MetricsUnavailable",
            decision.metrics_message,
        ),
        cond(
            INSUFFICIENT_DATA,
            decision.insufficient_data,
            "TooFewRequests" if decision.insufficient_data else "EnoughRequests",
            f"{decision.active} served {served} requests in {spec.window} (minRequests {spec.min_requests})",
        ),
        cond(
            DEGRADED,
            bool(degraded_reason),
            degraded_reason or "Healthy",
            decision.reason if degraded_reason else "",
        ),
    ]


def _fields(
    decision: RouteDecision, status: Mapping[str, Any], memory: RouteMemory, now: datetime
) -> dict[str, Any]:
    """The ModelRoute-specific part of status."""
    history = [dict(h) for h in status.get("switchHistory") or []]
    if decision.switched and decision.previous is not None:
        active = next(m for m in decision.models if m.name == decision.active)
        if decision.state == "Primary" and history and "rolledBackAt" not in history[-1]:
            history[-1]["rolledBackAt"] = rfc3339(now)
        entry: dict[str, Any] = {
            "from": decision.previous,
            "to": decision.active,
            "reason": decision.reason,
            "at": rfc3339(now),
        }
        if active.score is not None:
            entry["score"] = active.score
        history = [*history, entry][-HISTORY_LIMIT:]
    return {
        "activeModel": decision.active,
        "state": decision.state,
        "reason": decision.reason,
        "revision": memory.revision,
        "switchHistory": history,
        "lastEvaluated": rfc3339(now),
        "models": [
            {
                "name": m.name,
                "level": m.level,
                "state": m.state,
                "trafficPercent": decision.traffic.get(m.name, 0),
                **({"reason": m.cause} if m.cause else {}),
                "trend": m.trend,
                **({"score": m.score} if m.score is not None else {}),
                **({"requests": m.requests} if m.requests is not None else {}),
                "metrics": {r.name: r.value for r in m.metrics if r.value is not None},
                "levels": {r.name: r.level for r in m.metrics},
            }
            for m in decision.models
        ],
        "probation": _probation(decision),
        "memory": memory.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def _probation(decision: RouteDecision) -> dict[str, Any] | None:
    """The primary's evidence while the route serves a backup (None on the primary)."""
    p = decision.probation
    if p is None:
        return None
    return {
        "requests": p.requests,
        "minRequests": p.needed,
        "healthyForSeconds": None if p.healthy_for is None else p.healthy_for.total_seconds(),
        "stableForSeconds": p.stable_for.total_seconds(),
        "failures": p.failures,
        "trafficPausedUntil": None if p.paused_until is None else rfc3339(p.paused_until),
    }
