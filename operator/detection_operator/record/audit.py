"""Audit records from decisions: which decisions are worth a record, and the numbers that decided them. Pure.

Each builder takes what one evaluation decided and returns its records; the evaluation puts them in the
outbox (:mod:`.outbox`) with the status write that records the decision itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ..api.common import AlertRecord
from ..api.conditions import EventReason
from ..api.detection_policy import DetectionPolicySpec
from ..api.model_route import ModelRouteSpec
from ..api.records import AuditRecord, RecordType, finite, record_id
from ..core.identity import ObjectRef
from ..core.times import rfc3339
from ..decide.alerts import AlertPlan, Outgoing
from ..decide.policy import PolicyDecision
from ..decide.publish import switch_message
from ..decide.route import ModelHealth, RouteDecision


@dataclass(frozen=True)
class Origin:
    """Who decided, about what, on which spec, and when: common to every record of one evaluation."""

    ref: ObjectRef
    generation: int | None
    operator: str
    now: datetime

    def record(self, type_: RecordType, discriminator: str = "", **fields: Any) -> AuditRecord:
        """A record of this evaluation; ``discriminator`` tells apart records of one type and moment."""
        sequence = f"{self.now.isoformat()}/{discriminator}"
        return AuditRecord(
            id=record_id(self.ref, type_, self.generation, sequence),
            type=type_,
            object=self.ref,
            time=self.now,
            operator=self.operator,
            generation=self.generation,
            **fields,
        )


def policy_records(origin: Origin, spec: DetectionPolicySpec, decision: PolicyDecision) -> list[AuditRecord]:
    """A profile switch (the first selection too), with every rule's value and threshold."""
    if not decision.switched:
        return []
    values: dict[str, float | None] = {r.name: r.value for r in decision.rules}
    thresholds: dict[str, float | None] = {r.name: r.threshold for r in decision.rules}
    if decision.latency is not None:
        values["latencyMs"] = decision.latency.value_ms
        thresholds["latencyTargetMs"] = decision.latency.target_ms
    details: dict[str, Any] = {
        "activeRules": [r.name for r in decision.rules if r.active],
        "metricsAvailable": decision.metrics_available,
    }
    if decision.held_by is not None:
        details["heldBy"] = decision.held_by
    return [
        origin.record(
            "profile-switch",
            from_=decision.previous,
            to=decision.profile,
            reason=switch_message(spec, decision),
            values=finite(values),
            thresholds=finite(thresholds),
            details=details,
        )
    ]


def route_records(
    origin: Origin,
    spec: ModelRouteSpec,
    decision: RouteDecision,
    previous_state: str | None,
    was_degraded: bool,
) -> list[AuditRecord]:
    """Model switch, rollback, override set or cleared, failover refused (no healthy backup, the cap)."""
    records: list[AuditRecord] = []
    involved = [m for m in decision.models if m.name in (decision.previous, decision.active)]
    values, thresholds = _model_numbers(involved)
    common: dict[str, Any] = {"reason": decision.reason, "values": values, "thresholds": thresholds}
    overridden, was_overridden = decision.state == "Overridden", previous_state == "Overridden"
    type_: RecordType | None = None
    if overridden and (decision.switched or not was_overridden):
        type_ = "override-set"
    elif was_overridden and not overridden:
        type_ = "override-cleared"
    elif decision.switched and decision.previous is not None:
        type_ = "rollback" if decision.state == "Primary" else "model-switch"
    if type_ is not None:
        details: dict[str, Any] = {"state": decision.state, "traffic": dict(decision.traffic)}
        if type_ == "override-set" and spec.override is not None and spec.override.until is not None:
            details["until"] = rfc3339(spec.override.until)
        if type_ == "rollback" and decision.probation is not None:
            details["probationRequests"] = decision.probation.requests
        records.append(
            origin.record(type_, from_=decision.previous, to=decision.active, details=details, **common)
        )
    if (decision.no_healthy_backup or decision.failover_capped) and not was_degraded:
        cause = "no-healthy-backup" if decision.no_healthy_backup else "failover-cap"
        refused_values = {**values, "failoversLastHour": float(len(decision.memory.failovers))}
        refused_thresholds = {**thresholds, "maxFailoversPerHour": float(spec.max_failovers_per_hour)}
        records.append(
            origin.record(
                "failover-refused",
                cause,
                from_=decision.active,
                reason=decision.reason,
                values=finite(refused_values),
                thresholds=finite(refused_thresholds),
                details={"cause": cause, "candidates": {m.name: m.state for m in decision.models}},
            )
        )
    return records


def _model_numbers(models: Iterable[ModelHealth]) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """``model.metric`` values and their warning/critical thresholds, and each model's health score."""
    values: dict[str, float | None] = {}
    thresholds: dict[str, float | None] = {}
    for model in models:
        values[f"{model.name}.score"] = model.score
        values[f"{model.name}.requests"] = model.requests
        for metric in model.metrics:
            values[f"{model.name}.{metric.name}"] = metric.value
            if metric.warning is not None:
                thresholds[f"{model.name}.{metric.name}.warning"] = metric.warning
            if metric.critical is not None:
                thresholds[f"{model.name}.{metric.name}.critical"] = metric.critical
    return finite(values), finite(thresholds)


def alert_records(
    origin: Origin, plan: AlertPlan, previous: Iterable[AlertRecord], cooldown: str
) -> list[AuditRecord]:
    """A record per notification sent (fired, repeated, escalated, resolved) and per new acknowledgement."""
    before = {r.fingerprint: r for r in previous}
    records = [_notification(origin, item, before.get(item.fingerprint), cooldown) for item in plan.outgoing]
    for record in plan.records:
        earlier = before.get(record.fingerprint)
        if record.acknowledged and earlier is not None and not earlier.acknowledged:
            records.append(
                origin.record(
                    "alert-acknowledged",
                    record.fingerprint,
                    from_=record.state,
                    to=record.state,
                    reason=record.summary,
                    details={
                        "fingerprint": record.fingerprint,
                        "alertType": record.type,
                        "severity": record.severity,
                        "subject": record.subject,
                    },
                )
            )
    return records


def _notification(origin: Origin, item: Outgoing, earlier: AlertRecord | None, cooldown: str) -> AuditRecord:
    type_: RecordType
    if item.status == "resolved":
        type_ = "alert-resolved"
    elif item.repeat:
        type_ = "alert-repeated"
    elif earlier is not None and earlier.state == "firing" and not item.alert.notice:
        type_ = "alert-escalated"
    else:
        type_ = "alert-fired"
    alert = item.alert
    return origin.record(
        type_,
        item.fingerprint,
        from_=earlier.severity if type_ == "alert-escalated" and earlier is not None else None,
        to=alert.severity,
        reason=alert.summary,
        values=finite({"value": alert.value}) if alert.value is not None else {},
        thresholds=finite({"threshold": alert.threshold}) if alert.threshold is not None else {},
        details={
            "fingerprint": item.fingerprint,
            "status": item.status,
            "alertType": alert.type,
            "severity": alert.severity,
            "subject": alert.subject,
            "recommendation": alert.recommendation,
            "startsAt": rfc3339(item.started_at),
            "repeat": item.repeat,
            "notice": alert.notice,
            "cooldown": cooldown,
            **({"window": alert.window} if alert.window else {}),
        },
    )


EventOf = tuple[Literal["Normal", "Warning"], EventReason, str]
"""An Event's type, reason and message."""


def record_event(record: AuditRecord) -> EventOf | None:
    """The Kubernetes Event that reports ``record`` on its object, if its type has one: switches,
    rollbacks, refused failovers, alerts starting, escalating and resolving (not repeats or notices)."""
    change = f"Switched from {record.from_} to {record.to}: {record.reason}"
    if record.type == "profile-switch":
        reason = EventReason.PROFILE_SELECTED if record.from_ is None else EventReason.PROFILE_SWITCHED
        return "Normal", reason, record.reason
    if record.type == "rollback":
        return "Normal", EventReason.MODEL_ROLLED_BACK, change
    if record.type == "model-switch" or (
        record.type in ("override-set", "override-cleared") and record.from_ and record.from_ != record.to
    ):
        return "Warning", EventReason.MODEL_SWITCHED, change
    if record.type == "failover-refused":
        refused = record.details.get("cause") == "no-healthy-backup"
        return (
            "Warning",
            EventReason.NO_HEALTHY_BACKUP if refused else EventReason.FAILOVER_CAP_REACHED,
            record.reason,
        )
    details = record.details
    if record.type in ("alert-fired", "alert-escalated", "alert-resolved") and not details.get("notice"):
        text = f"[{details.get('severity')}] {record.reason} (fingerprint {details.get('fingerprint')})"
        if record.type == "alert-resolved":
            return "Normal", EventReason.ALERT_RESOLVED, text
        return "Warning", EventReason.ALERT_FIRING, text
    return None
