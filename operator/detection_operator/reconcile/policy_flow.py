"""DetectionPolicy: its observe and act steps and the pure parts the evaluation skeleton runs between them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Gauge
from pydantic import BaseModel

from .. import telemetry
from ..api.conditions import ConditionType, EventReason
from ..api.detection_policy import DetectionPolicySpec
from ..core.errors import OutputError
from ..core.readings import Reading
from ..core.signing import sign
from ..core.times import rfc3339
from ..decide.alerts import Alert, policy_alerts
from ..decide.policy import EXPENSE_RANK, PolicyDecision, PolicyMemory, QueryKey, decide_policy, query_plan
from ..decide.publish import Publication, latency_row, publication, rule_rows, switch_message
from ..record import conditions
from .context import Evaluation
from .effects import Effects
from .flow import Event, Flow

HISTORY_LIMIT = 20


class PolicyFlow(
    Flow[DetectionPolicySpec, dict[QueryKey, Reading], PolicyDecision, Publication, PolicyMemory]
):
    """observe (the rules' queries) -> decide -> publish profile.json and scorecard.json."""

    kind = "DetectionPolicy"

    async def observe(self, ev: Evaluation[DetectionPolicySpec], fx: Effects) -> dict[QueryKey, Reading]:
        """Every query the rules, latency check, expense and external contributors need."""
        return await fx.observe(
            ev.ref, ev.spec.prometheus, query_plan(ev.spec, ev.ref.namespace, ev.ref.name)
        )

    def decide(
        self, ev: Evaluation[DetectionPolicySpec], observation: dict[QueryKey, Reading]
    ) -> tuple[PolicyDecision, Publication]:
        """The profile, and the documents that publish it."""
        memory = PolicyMemory.load(ev.memory)
        decision = decide_policy(ev.spec, observation, memory, ev.now)
        ref = ev.ref
        pub = publication(ev.spec, decision, ref.namespace, ref.name, memory.digest, memory.revision, ev.now)
        return decision, pub

    def config_map(self, ev: Evaluation[DetectionPolicySpec]) -> str:
        """``spec.output.configMapName``, by default ``<name>-detection-profile``."""
        return ev.spec.output.config_map_name or f"{ev.ref.name}-detection-profile"

    def output(self, config_map: str) -> str:
        """The ConfigMap."""
        return f"ConfigMap {config_map}"

    async def act(
        self,
        ev: Evaluation[DetectionPolicySpec],
        decision: PolicyDecision,
        pub: Publication,
        config_map: str,
        publish: bool,
        fx: Effects,
    ) -> None:
        """Apply the ConfigMap (signed if the spec names a key), then roll the detector's Deployment."""
        if not publish:
            return
        spec, ref = ev.spec, ev.ref
        data = {"profile.json": pub.profile_json, "scorecard.json": pub.scorecard_json}
        if (key_ref := spec.output.signing_key_ref) is not None:
            key = await fx.secret_key(ref.namespace, key_ref.name, key_ref.key)
            data["profile.json.sig"] = sign(key, pub.profile_json.encode())
        await fx.apply_config_map(ev.key, ref, config_map, data, pub.revision)
        if spec.output.deployment:
            found = await fx.annotate_deployment(ref.namespace, spec.output.deployment, pub.digest)
            if not found:
                message = f"Deployment {spec.output.deployment} not found; profile.json is published anyway"
                await fx.event(ref, "Warning", EventReason.DEPLOYMENT_NOT_FOUND, message)

    def memory(
        self,
        ev: Evaluation[DetectionPolicySpec],
        decision: PolicyDecision,
        pub: Publication,
        error: OutputError | None,
    ) -> PolicyMemory:
        """The decision's memory, with the published revision once it is written."""
        if error is not None:
            return decision.memory
        return decision.memory.model_copy(update={"revision": pub.revision, "digest": pub.digest})

    def events(self, ev: Evaluation[DetectionPolicySpec], decision: PolicyDecision) -> list[Event]:
        """Switches, circuits, expired escalations, shadow decisions, metrics lost and recovered."""
        events = []
        if decision.switched:
            reason = (
                EventReason.PROFILE_SELECTED if decision.previous is None else EventReason.PROFILE_SWITCHED
            )
            events.append(Event("Normal", reason, switch_message(ev.spec, decision)))
        for change in decision.circuit_changes:
            opened = change.endswith("-> open")
            reason = (
                EventReason.EXTERNAL_SERVICE_UNAVAILABLE if opened else EventReason.EXTERNAL_SERVICE_RECOVERED
            )
            events.append(Event("Warning" if opened else "Normal", reason, change))
        for profile in decision.expired_now:
            message = (
                f"Escalation to {profile} reached its maxDuration: relaxed to {decision.profile}; "
                "a fresh breach escalates again"
            )
            events.append(Event("Warning", EventReason.ESCALATION_EXPIRED, message))
        if decision.shadow is not None and decision.shadow != (ev.memory or {}).get("shadow"):
            message = (
                f"Would switch to shadow profile {decision.shadow} due to {decision.shadow_reason}; "
                f"keeping {decision.profile} (shadow: not enforced)"
            )
            events.append(Event("Normal", EventReason.SHADOW_PROFILE, message))
        previous = ev.condition(ConditionType.METRICS_AVAILABLE)
        was_available = previous is None or previous.get("status") == "True"
        if was_available and not decision.metrics_available:
            events.append(Event("Warning", EventReason.METRICS_UNAVAILABLE, decision.metrics_message))
        elif not was_available and decision.metrics_available:
            events.append(Event("Normal", EventReason.METRICS_RECOVERED, "every rule query answered again"))
        return events

    def alerts(self, ev: Evaluation[DetectionPolicySpec], decision: PolicyDecision) -> list[Alert]:
        """Metrics unavailable, latency target missed, escalation expired, profile switched."""
        return policy_alerts(ev.spec, decision, ev.ref)

    def status(
        self, ev: Evaluation[DetectionPolicySpec], decision: PolicyDecision, memory: PolicyMemory
    ) -> dict[str, Any]:
        """Profile, history, the scorecard's rows, contributors and their expense, external circuits."""
        return _fields(ev.spec, decision, ev.status, memory, ev.stamp)

    def conditions(
        self, ev: Evaluation[DetectionPolicySpec], decision: PolicyDecision, error: OutputError | None
    ) -> list[dict[str, Any]]:
        """Ready, InvalidSpec (False) and MetricsAvailable."""
        generation, now = ev.generation, ev.now
        return [
            conditions.readiness(ev.spec.dry_run, error, decision.reason, generation, now),
            conditions.spec_accepted(generation, now),
            conditions.metrics_available(
                decision.metrics_available, decision.metrics_message, generation, now
            ),
        ]

    def series(
        self, ev: Evaluation[DetectionPolicySpec], decision: PolicyDecision
    ) -> list[tuple[Gauge, dict[str, float | None]]]:
        """The active profile and each contributor's expense class."""
        profiles: dict[str, float | None] = {
            p.name: float(p.name == decision.profile) for p in ev.spec.profiles
        }
        expense: dict[str, float | None] = {c.name: float(EXPENSE_RANK[c.expense]) for c in decision.costs}
        return [(telemetry.ACTIVE_PROFILE, profiles), (telemetry.CONTRIBUTOR_EXPENSE, expense)]

    def switched(self, decision: PolicyDecision) -> bool:
        """A switch from a previous profile (the first selection is not one)."""
        return decision.switched and decision.previous is not None


def _dump(row: BaseModel) -> dict[str, Any]:
    # Status leaves out what a row says by default (no cause, no conditions): kubectl output stays short.
    return row.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)


def _fields(
    spec: DetectionPolicySpec,
    decision: PolicyDecision,
    status: Mapping[str, Any],
    memory: PolicyMemory,
    now: str,
) -> dict[str, Any]:
    """The DetectionPolicy-specific part of status."""
    history = list(status.get("history") or [])
    if decision.switched:
        entry = {"to": decision.profile, "reason": switch_message(spec, decision), "at": now}
        if decision.previous is not None:
            entry["from"] = decision.previous
        history = ([*history, entry])[-HISTORY_LIMIT:]
    return {
        "profile": decision.profile,
        "since": rfc3339(memory.since) if memory.since else None,
        "reason": decision.reason,
        "revision": memory.revision,
        "history": history,
        "lastEvaluated": now,
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
