"""DetectionPolicy evaluation: observe -> decide -> publish -> notify -> record."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel

from ..act import kube
from ..api.detection_policy import DetectionPolicySpec
from ..core.signing import sign
from ..decide.alerts import ObjectKey, policy_alerts
from ..decide.policy import EXPENSE_RANK, PolicyDecision, PolicyMemory, decide_policy, query_plan
from ..decide.publish import Publication, latency_row, publication, rule_rows, switch_message
from ..record import conditions
from ..record.conditions import rfc3339
from ..runtime import telemetry
from ..runtime.scheduler import Key

if TYPE_CHECKING:
    from .reconciler import Reconciler

HISTORY_LIMIT = 20
METRICS_AVAILABLE = "MetricsAvailable"


async def evaluate_policy(
    r: Reconciler,
    key: Key,
    ref: kube.ObjectRef,
    annotations: Mapping[str, str] | None,
    spec: DetectionPolicySpec,
    status: dict[str, Any],
    generation: int | None,
    now: datetime,
) -> bool:
    """One DetectionPolicy evaluation, from queries to status; whether every needed metric answered."""
    observation = await r.observe(ref, spec.prometheus, query_plan(spec, ref.namespace, ref.name))
    memory = PolicyMemory.load(status.get("memory"))
    decision = decide_policy(spec, observation, memory, now)
    r.decided(key)
    pub = publication(spec, decision, ref.namespace, ref.name, memory.digest, memory.revision, now)
    config_map = spec.output.config_map_name or f"{ref.name}-detection-profile"
    output_error = None
    written = status.get("configMap")
    # Also re-applied when the ConfigMap was deleted or hand-edited (outputs.py).
    if not spec.dry_run and (
        pub.changed or written != config_map or not await r.output_intact(key, ref, config_map, pub.revision)
    ):
        publish = _publish(r, key, ref, spec, config_map, pub)
        output_error = await r.write(ref, f"ConfigMap {config_map}", publish)
        written = config_map if output_error is None else written
        if output_error is None:
            r.published(key, ref, config_map, pub.revision)
    new_memory = decision.memory
    if output_error is None:
        new_memory = new_memory.model_copy(update={"revision": pub.revision, "digest": pub.digest})
    await _notify(r, ref, spec, decision, status)
    fields = _fields(spec, decision, status, new_memory, now)
    fields.update(observedGeneration=generation, configMap=written)
    ready = conditions.readiness(spec.dry_run, output_error, decision.reason, generation, now)
    metrics = conditions.condition(
        METRICS_AVAILABLE,
        decision.metrics_available,
        "QueriesAnswered" if decision.metrics_available else "MetricsUnavailable",
        decision.metrics_message,
        generation,
        now,
    )
    invalid = conditions.condition(conditions.INVALID_SPEC, False, "SpecAccepted", "", generation, now)
    alerts = policy_alerts(spec, decision, ObjectKey(ref.kind, ref.namespace, ref.name))
    fields["alerts"], delivered = await r.alerts(
        ref, annotations, spec.alerts, alerts, status, generation, now
    )
    await r.record(key, ref, status, fields, [ready, invalid, metrics, delivered])
    profiles = {p.name: float(p.name == decision.profile) for p in spec.profiles}
    r.series.publish(telemetry.ACTIVE_PROFILE, key, profiles)
    expense = {c.name: float(EXPENSE_RANK[c.expense]) for c in decision.costs}
    r.series.publish(telemetry.CONTRIBUTOR_EXPENSE, key, expense)
    if decision.switched and decision.previous is not None:
        r.series.switched(ref.kind, key)
    return decision.metrics_available


async def _publish(
    r: Reconciler,
    key: Key,
    ref: kube.ObjectRef,
    spec: DetectionPolicySpec,
    config_map: str,
    pub: Publication,
) -> None:
    data = {"profile.json": pub.profile_json, "scorecard.json": pub.scorecard_json}
    if (key_ref := spec.output.signing_key_ref) is not None:
        secret = await r.blocking(kube.read_secret, r.api, ref.namespace, key_ref.name)
        if key_ref.key not in secret:
            raise ApiException(status=404, reason=f"key {key_ref.key} not in Secret {key_ref.name}")
        data["profile.json.sig"] = sign(secret[key_ref.key], pub.profile_json.encode())
    annotations = {kube.REVISION_ANNOTATION: str(pub.revision)}
    await r.apply_config_map(key, ref, config_map, data, annotations)
    if spec.output.deployment:
        found = await r.mutate(
            kube.annotate_deployment, r.api, ref.namespace, spec.output.deployment, pub.digest
        )
        if not found:
            message = f"Deployment {spec.output.deployment} not found; profile.json is published anyway"
            await r.event(ref, "Warning", "DeploymentNotFound", message)


async def _notify(
    r: Reconciler,
    ref: kube.ObjectRef,
    spec: DetectionPolicySpec,
    decision: PolicyDecision,
    status: Mapping[str, Any],
) -> None:
    if decision.switched:
        reason = "ProfileSelected" if decision.previous is None else "ProfileSwitched"
        await r.event(ref, "Normal", reason, switch_message(spec, decision))
    for change in decision.circuit_changes:
        opened = change.endswith("-> open")
        reason = "ExternalServiceUnavailable" if opened else "ExternalServiceRecovered"
        await r.event(ref, "Warning" if opened else "Normal", reason, change)
    for profile in decision.expired_now:
        message = (
            f"Escalation to {profile} reached its maxDuration: relaxed to {decision.profile}; "
            "a fresh breach escalates again"
        )
        await r.event(ref, "Warning", "EscalationExpired", message)
    if decision.shadow is not None and decision.shadow != (status.get("memory") or {}).get("shadow"):
        message = (
            f"Would switch to shadow profile {decision.shadow} due to {decision.shadow_reason}; "
            f"keeping {decision.profile} (shadow: not enforced)"
        )
        await r.event(ref, "Normal", "ShadowProfile", message)
    previous = conditions.find(status.get("conditions"), METRICS_AVAILABLE)
    was_available = previous is None or previous.get("status") == "True"
    if was_available and not decision.metrics_available:
        await r.event(ref, "Warning", "MetricsUnavailable", decision.metrics_message)
    elif not was_available and decision.metrics_available:
        await r.event(ref, "Normal", "MetricsRecovered", "every rule query answered again")


def _dump(row: BaseModel) -> dict[str, Any]:
    # Status leaves out what a row says by default (no cause, no conditions): kubectl output stays short.
    return row.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)


def _fields(
    spec: DetectionPolicySpec,
    decision: PolicyDecision,
    status: Mapping[str, Any],
    memory: PolicyMemory,
    now: datetime,
) -> dict[str, Any]:
    """The DetectionPolicy-specific part of status."""
    history = list(status.get("history") or [])
    if decision.switched:
        entry = {"to": decision.profile, "reason": switch_message(spec, decision), "at": rfc3339(now)}
        if decision.previous is not None:
            entry["from"] = decision.previous
        history = ([*history, entry])[-HISTORY_LIMIT:]
    return {
        "profile": decision.profile,
        "since": rfc3339(memory.since) if memory.since else None,
        "reason": decision.reason,
        "revision": memory.revision,
        "history": history,
        "lastEvaluated": rfc3339(now),
        "rules": [_dump(row) for row in rule_rows(decision)],
        "heldBy": decision.held_by,
        "shadow": decision.shadow,
        "latency": _dump(row) if (row := latency_row(decision)) is not None else None,
        "contributors": list(decision.contributors),
        "expense": {c.name: c.expense for c in decision.costs},
        "externalContributors": [
            {
                "name": e.name,
                "enabled": e.enabled,
                "circuit": e.circuit,
                "weight": e.weight,
                **({"reason": e.circuit_reason} if e.circuit_reason else {}),
            }
            for e in decision.externals
        ],
        "memory": memory.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
