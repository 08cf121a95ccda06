"""Alerts: what is wrong now (from a decision), and what to send given what was sent before. Pure.

An alert is identified by a stable fingerprint (object, type, subject). Its lifecycle:

- new -> sent at once ("firing");
- still firing -> repeated no sooner than ``cooldown``; at once if its level rises; never while
  acknowledged (annotation ``detection.adaptive.io/ack-<fingerprint prefix>``);
- gone -> one "resolved" notice (acknowledged or not);
- notices (profile or model switched) are sent once, when they happen.

Everything to send from one evaluation goes out as one grouped notification. The records live in status,
so a restart neither loses nor repeats an alert.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from ..api.base import GROUP
from ..api.common import AlertRecord, AlertTypeName, Severity
from ..api.detection_policy import DetectionPolicySpec
from ..api.model_route import ModelRouteSpec
from ..core.identity import ObjectRef
from .policy import PolicyDecision
from .route import RouteDecision

AlertType = AlertTypeName
ACK_PREFIX = f"{GROUP}/ack-"
MIN_ACK_PREFIX = 6
RECORD_LIMIT = 50
RESOLVED_RETENTION = timedelta(hours=24)
_RANK = {"info": 0, "warning": 1, "critical": 2}

METRIC_ALERT_TYPE: dict[str, AlertType] = {
    "accuracy": "performance-degradation",
    "latencyP95Ms": "latency",
    "successRate": "model-failure",
    "errorRate": "model-failure",
    "memoryMb": "resource-exhaustion",
    "costPerRequest": "resource-exhaustion",
    "tokensPerRequest": "resource-exhaustion",
}

RECOMMENDATIONS: dict[AlertType, str] = {
    "performance-degradation": "Check recent model or data changes; compare with the backup's accuracy.",
    "latency": (
        "Check the detector's or model's saturation and scale it out; a policy steps down with a latency "
        "rule, a route fails over."
    ),
    "model-failure": "Inspect the model server's errors and logs; the route fails over if this persists.",
    "resource-exhaustion": "Check memory and cost budgets; scale the model or move to a cheaper one.",
    "metrics-unavailable": "Check Prometheus and the queries in the spec; decisions fall back meanwhile.",
    "profile-switched": "No action needed unless the switch was unexpected; see the scorecard.",
    "model-switched": "Investigate why the previous model degraded; the route rolls back once healthy.",
    "no-healthy-backup": "Every candidate is critical or the failover cap is reached: intervene manually.",
    "escalation-expired": (
        "The signal that escalated has not cleared within maxDuration: check its query and source; "
        "a fresh breach escalates again."
    ),
}


@dataclass(frozen=True)
class Alert:
    """Something wrong now (or, for a notice, something that just happened)."""

    type: AlertType
    severity: Severity
    subject: str
    summary: str
    value: float | None = None
    threshold: float | None = None
    window: str | None = None
    notice: bool = False

    @property
    def recommendation(self) -> str:
        """What a person should do about it."""
        return RECOMMENDATIONS[self.type]

    def fingerprint(self, obj: ObjectRef) -> str:
        """Stable identity: the same problem on the same object always has the same fingerprint."""
        text = "/".join((obj.kind, obj.namespace, obj.name, self.type, self.subject))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Outgoing:
    """One alert in a notification."""

    alert: Alert
    fingerprint: str
    status: Literal["firing", "resolved"]
    started_at: datetime
    repeat: bool = False


@dataclass(frozen=True)
class AlertPlan:
    """What to send now (one grouped notification) and the records to store."""

    outgoing: tuple[Outgoing, ...]
    records: tuple[AlertRecord, ...]
    transitions: tuple[Outgoing, ...] = field(default=())


def acknowledged_prefixes(annotations: Mapping[str, str] | None) -> set[str]:
    """Fingerprint prefixes acknowledged through ``detection.adaptive.io/ack-<prefix>`` annotations."""
    return {
        key[len(ACK_PREFIX) :].lower()
        for key in (annotations or {})
        if key.startswith(ACK_PREFIX) and len(key) - len(ACK_PREFIX) >= MIN_ACK_PREFIX
    }


def plan_alerts(
    obj: ObjectRef,
    current: Iterable[Alert],
    records: Iterable[AlertRecord],
    acks: set[str],
    cooldown: timedelta,
    now: datetime,
) -> AlertPlan:
    """Apply the lifecycle in this module's docstring."""
    previous = {r.fingerprint: r for r in records}
    outgoing: list[Outgoing] = []
    transitions: list[Outgoing] = []
    kept: dict[str, AlertRecord] = {}
    for alert in current:
        fp = alert.fingerprint(obj)
        if alert.notice:
            outgoing.append(Outgoing(alert, fp, "firing", now))
            continue
        record = previous.get(fp)
        acked = any(fp.startswith(prefix) for prefix in acks)
        if record is None or record.state == "resolved":
            item = Outgoing(alert, fp, "firing", now)
            outgoing.append(item)
            transitions.append(item)
            kept[fp] = _record(alert, fp, "firing", now, now, acked)
            continue
        escalated = _RANK[alert.severity] > _RANK[record.severity]
        due = now - record.last_sent_at >= cooldown
        if escalated or (due and not acked):
            item = Outgoing(alert, fp, "firing", record.started_at, repeat=not escalated)
            outgoing.append(item)
            if escalated:
                transitions.append(item)
            kept[fp] = _record(alert, fp, "firing", record.started_at, now, acked)
        else:
            kept[fp] = record.model_copy(update={"acknowledged": acked, "summary": alert.summary})
    for fp, record in previous.items():
        if fp in kept:
            continue
        if record.state == "firing":
            alert = Alert(record.type, record.severity, record.subject, record.summary)
            item = Outgoing(alert, fp, "resolved", record.started_at)
            outgoing.append(item)
            transitions.append(item)
            kept[fp] = record.model_copy(
                update={"state": "resolved", "resolved_at": now, "last_sent_at": now}
            )
        elif record.resolved_at is not None and now - record.resolved_at < RESOLVED_RETENTION:
            kept[fp] = record
    ordered = sorted(kept.values(), key=lambda r: (r.state != "firing", r.last_sent_at), reverse=False)
    return AlertPlan(tuple(outgoing), tuple(ordered[:RECORD_LIMIT]), tuple(transitions))


def _record(
    alert: Alert,
    fp: str,
    state: Literal["firing", "resolved"],
    started: datetime,
    sent: datetime,
    acked: bool,
) -> AlertRecord:
    return AlertRecord(
        fingerprint=fp,
        type=alert.type,
        severity=alert.severity,
        subject=alert.subject,
        summary=alert.summary,
        state=state,
        started_at=started,
        last_sent_at=sent,
        acknowledged=acked,
    )


def policy_alerts(spec: DetectionPolicySpec, decision: PolicyDecision, obj: ObjectRef) -> list[Alert]:
    """Alerts a DetectionPolicy decision raises."""
    alerts: list[Alert] = []
    where = f"{obj.namespace}/{obj.name}"
    if not decision.metrics_available:
        fell_back = decision.held_by is None and "metrics unavailable" in decision.reason
        alerts.append(
            Alert(
                "metrics-unavailable",
                "critical" if fell_back else "warning",
                "rules",
                f"DetectionPolicy {where}: metrics unavailable ({decision.metrics_message}); "
                f"profile {decision.profile}" + (f", fallback after {spec.hold_for}" if fell_back else ""),
            )
        )
    if (latency := decision.latency) is not None and latency.breached and latency.value_ms is not None:
        alerts.append(
            Alert(
                "latency",
                "warning",
                "latency-target",
                f"DetectionPolicy {where}: detector latency {latency.value_ms:g} ms above the "
                f"{latency.profile} profile's target {latency.target_ms:g} ms "
                f"for {latency.streak} evaluations",
                value=latency.value_ms,
                threshold=latency.target_ms,
            )
        )
    for profile, expired_at in sorted(decision.memory.expired.items()):
        holding = ", ".join(r.name for r in decision.rules if r.expired and r.profile == profile)
        alerts.append(
            Alert(
                "escalation-expired",
                "warning",
                profile,
                f"DetectionPolicy {where}: escalation to {profile} reached its maxDuration at "
                f"{expired_at:%Y-%m-%dT%H:%M:%SZ} while {holding or 'its rules'} still hold; relaxed",
            )
        )
    if decision.switched and decision.previous is not None:
        alerts.append(
            Alert(
                "profile-switched",
                "info",
                f"{decision.previous}->{decision.profile}",
                f"DetectionPolicy {where}: switched from {decision.previous} to {decision.profile}: "
                f"{decision.reason}",
                notice=True,
            )
        )
    return alerts


def route_alerts(spec: ModelRouteSpec, decision: RouteDecision, obj: ObjectRef) -> list[Alert]:
    """Alerts a ModelRoute decision raises: the per-model ones :func:`~.route.decide_route` decided (a
    metric past its alert threshold, a failing model, each held ``failureThreshold`` evaluations), and
    route-level ones. Idle models raise nothing; ``metrics-unavailable`` means Prometheus did not answer."""
    alerts: list[Alert] = []
    where = f"{obj.namespace}/{obj.name}"
    for model in decision.models:
        if model.failure_alert:
            alerts.append(
                Alert(
                    "model-failure",
                    "critical",
                    f"{model.name}/traffic",
                    f"ModelRoute {where}: model {model.name} failing: {model.cause}",
                    window=spec.window,
                )
            )
        for metric in model.metrics:
            if metric.alert is None or metric.alert_threshold is None or metric.value is None:
                continue
            alerts.append(
                Alert(
                    METRIC_ALERT_TYPE[metric.name],
                    metric.alert,
                    f"{model.name}/{metric.name}",
                    f"ModelRoute {where}: model {model.name} {metric.name} = {metric.value:g} past "
                    f"{metric.alert} threshold {metric.alert_threshold:g} over {spec.window}",
                    value=metric.value,
                    threshold=metric.alert_threshold,
                    window=spec.window,
                )
            )
    if not decision.metrics_available:
        alerts.append(
            Alert(
                "metrics-unavailable", "warning", "models", f"ModelRoute {where}: {decision.metrics_message}"
            )
        )
    if decision.no_healthy_backup or decision.failover_capped:
        alerts.append(
            Alert("no-healthy-backup", "critical", "route", f"ModelRoute {where}: {decision.reason}")
        )
    if decision.switched and decision.previous is not None:
        alerts.append(
            Alert(
                "model-switched",
                "warning" if decision.state == "FailedOver" else "info",
                f"{decision.previous}->{decision.active}",
                f"ModelRoute {where}: switched from {decision.previous} to {decision.active}: "
                f"{decision.reason}",
                notice=True,
            )
        )
    return alerts
