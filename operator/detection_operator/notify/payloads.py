"""Bodies sent to receivers, from audit records: the documented webhook JSON and Alertmanager API v2
alerts. Pure.

Every alert in a body carries its record's ``id``: a receiver that sees the same id twice (a delivery
repeated after a restart) keeps one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from ..api.records import AuditRecord
from ..core.times import duration, rfc3339

WEBHOOK_VERSION = "1"


def webhook_body(records: Sequence[AuditRecord], now: datetime) -> dict[str, Any]:
    """One grouped notification of one object's alert records (documented in the README)."""
    obj = records[0].object
    return {
        "version": WEBHOOK_VERSION,
        "groupKey": f"{obj.kind}/{obj.namespace}/{obj.name}",
        "object": {"kind": obj.kind, "namespace": obj.namespace, "name": obj.name},
        "sentAt": rfc3339(now),
        "alerts": [
            {
                "id": r.id,
                "fingerprint": r.details["fingerprint"],
                "status": r.details["status"],
                "type": r.details["alertType"],
                "severity": r.details["severity"],
                "subject": r.details["subject"],
                "summary": r.reason,
                "recommendation": r.details["recommendation"],
                "value": r.values.get("value"),
                "threshold": r.thresholds.get("threshold"),
                "window": r.details.get("window"),
                "startsAt": r.details["startsAt"],
                "repeat": r.details["repeat"],
                "notice": r.details["notice"],
            }
            for r in records
        ],
    }


def alertmanager_alerts(records: Sequence[AuditRecord]) -> list[dict[str, Any]]:
    """Alerts for ``POST /api/v2/alerts``: Alertmanager then groups, routes, silences and resolves them.

    A firing alert's endsAt lies beyond the next repeat (from the time it was decided, however late it
    is delivered), so Alertmanager keeps it firing between our sends; a resolved one ends when it
    resolved; a notice ends at once (it reports an event, not a state).
    """
    alerts = []
    for r in records:
        d = r.details
        ends = r.time
        if d["status"] == "firing" and not d["notice"]:
            ends = r.time + duration(d["cooldown"]) + timedelta(minutes=5)
        value, threshold = r.values.get("value"), r.thresholds.get("threshold")
        alerts.append(
            {
                "labels": {
                    "alertname": "Detection" + "".join(w.capitalize() for w in d["alertType"].split("-")),
                    "severity": d["severity"],
                    "kind": r.object.kind,
                    "namespace": r.object.namespace,
                    "name": r.object.name,
                    "subject": d["subject"],
                    "fingerprint": d["fingerprint"],
                },
                "annotations": {
                    "summary": r.reason,
                    "recommendation": d["recommendation"],
                    "recordId": r.id,
                    **({"value": f"{value:g}"} if value is not None else {}),
                    **({"threshold": f"{threshold:g}"} if threshold is not None else {}),
                },
                "startsAt": d["startsAt"],
                "endsAt": rfc3339(ends),
            }
        )
    return alerts
