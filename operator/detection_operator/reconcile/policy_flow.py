"""DetectionPolicy: its observe and act steps and the pure parts the evaluation skeleton runs between them."""

from __future__ import annotations

from typing import Any

from prometheus_client import Gauge

from .. import telemetry
from ..api.common import HISTORY_LIMIT
from ..api.conditions import ConditionType, EventReason
from ..api.detection_policy import (
    DetectionPolicySpec,
    DetectionPolicyStatus,
    ExternalContributorStatus,
    ProfileSwitch,
)
from ..api.records import AuditRecord
from ..core.errors import OutputError
from ..core.readings import Reading
from ..core.signing import sign
from ..decide.alerts import Alert, policy_alerts
from ..decide.policy import EXPENSE_RANK, PolicyDecision, PolicyMemory, QueryKey, decide_policy, query_plan
from ..decide.publish import Publication, latency_row, publication, rule_rows, switch_message
from ..record import conditions
from ..record.audit import Origin, policy_records
from ..record.status import entries, short
from .context import Evaluation
from .effects import Effects
from .flow import Event, Flow


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
        """Circuits, expired escalations, shadow decisions, metrics lost and recovered (switches are
        records, with their Events: see reconcile/events.py)."""
        events = []
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

    def records(
        self, ev: Evaluation[DetectionPolicySpec], decision: PolicyDecision, origin: Origin
    ) -> list[AuditRecord]:
        """A profile switch."""
        return policy_records(origin, ev.spec, decision)

    def alerts(self, ev: Evaluation[DetectionPolicySpec], decision: PolicyDecision) -> list[Alert]:
        """Metrics unavailable, latency target missed, escalation expired, profile switched."""
        return policy_alerts(ev.spec, decision, ev.ref)

    def status(
        self, ev: Evaluation[DetectionPolicySpec], decision: PolicyDecision, memory: PolicyMemory
    ) -> DetectionPolicyStatus:
        """Profile, history, the scorecard's rows, contributors and their expense, external circuits."""
        return _status(decision, ev, memory)

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


def _status(
    decision: PolicyDecision, ev: Evaluation[DetectionPolicySpec], memory: PolicyMemory
) -> DetectionPolicyStatus:
    """The DetectionPolicy-specific part of status."""
    spec = ev.spec
    history = entries(ev.status.get("history"), ProfileSwitch)
    if decision.switched:
        entry = ProfileSwitch(to=decision.profile, reason=switch_message(spec, decision), at=ev.now)
        if decision.previous is not None:
            entry = entry.model_copy(update={"from_": decision.previous})
        history = [*history, entry][-HISTORY_LIMIT:]
    latency = latency_row(decision)
    return DetectionPolicyStatus(
        profile=decision.profile,
        since=memory.since,
        reason=decision.reason,
        revision=memory.revision,
        history=history,
        last_evaluated=ev.now,
        rules=[short(row) for row in rule_rows(decision)],
        held_by=decision.held_by,
        shadow=decision.shadow,
        latency=None if latency is None else short(latency),
        contributors=list(decision.contributors),
        expense={c.name: c.expense for c in decision.costs},
        external_contributors=[
            ExternalContributorStatus(
                name=e.name,
                enabled=e.enabled,
                circuit=e.circuit,
                weight=e.weight,
                reason=e.circuit_reason or None,
            )
            for e in decision.externals
        ],
    )
