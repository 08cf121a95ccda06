"""Bodies sent to receivers: the documented webhook JSON and Alertmanager API v2 alerts. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..decide.alerts import ObjectKey, Outgoing
from ..record.conditions import rfc3339

WEBHOOK_VERSION = "1"


def webhook_body(obj: ObjectKey, items: tuple[Outgoing, ...], now: datetime) -> dict[str, Any]:
    """One grouped notification for one object and one evaluation (documented in the README)."""
    return {
        "version": WEBHOOK_VERSION,
        "groupKey": f"{obj.kind}/{obj.namespace}/{obj.name}",
        "object": {"kind": obj.kind, "namespace": obj.namespace, "name": obj.name},
        "sentAt": rfc3339(now),
        "alerts": [
            {
                "fingerprint": item.fingerprint,
                "status": item.status,
                "type": item.alert.type,
                "severity": item.alert.severity,
                "subject": item.alert.subject,
                "summary": item.alert.summary,
                "recommendation": item.alert.recommendation,
                "value": item.alert.value,
                "threshold": item.alert.threshold,
                "window": item.alert.window,
                "startsAt": rfc3339(item.started_at),
                "repeat": item.repeat,
                "notice": item.alert.notice,
            }
            for item in items
        ],
    }


def alertmanager_alerts(
    obj: ObjectKey, items: tuple[Outgoing, ...], now: datetime, cooldown: timedelta
) -> list[dict[str, Any]]:
    """Alerts for ``POST /api/v2/alerts``: Alertmanager then groups, routes, silences and resolves them.

    A firing alert's endsAt lies beyond the next repeat, so Alertmanager keeps it firing between our
    sends; a resolved one ends now; a notice ends at once (it reports an event, not a state).
    """
    alerts = []
    for item in items:
        ends = (
            now if item.status == "resolved" or item.alert.notice else now + cooldown + timedelta(minutes=5)
        )
        alerts.append(
            {
                "labels": {
                    "alertname": "Detection" + "".join(w.capitalize() for w in item.alert.type.split("-")),
                    "severity": item.alert.severity,
                    "kind": obj.kind,
                    "namespace": obj.namespace,
                    "name": obj.name,
                    "subject": item.alert.subject,
                    "fingerprint": item.fingerprint,
                },
                "annotations": {
                    "summary": item.alert.summary,
                    "recommendation": item.alert.recommendation,
                    **({"value": f"{item.alert.value:g}"} if item.alert.value is not None else {}),
                    **(
                        {"threshold": f"{item.alert.threshold:g}"} if item.alert.threshold is not None else {}
                    ),
                },
                "startsAt": rfc3339(item.started_at),
                "endsAt": rfc3339(ends),
            }
        )
    return alerts
