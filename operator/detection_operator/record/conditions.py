"""Status conditions per the Kubernetes API conventions: pure helpers, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

READY = "Ready"
INVALID_SPEC = "InvalidSpec"
RECONCILING = "Reconciling"
STALLED = "Stalled"
"""kstatus' two abnormal-true conditions (sigs.k8s.io/cli-utils kstatus, which Flux's health checks and
`kubectl wait`-style tools read): Stalled=True is Failed, Reconciling=True is InProgress. Both are derived
from Ready in :func:`merge`, so every status write states them consistently."""
_STALLED_REASONS = frozenset({INVALID_SPEC})
"""Ready=False reasons no retry can fix: only a spec change can."""


def rfc3339(moment: datetime) -> str:
    """Format an aware datetime the way the apiserver stores metav1.Time (whole seconds, UTC, 'Z')."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    type_: str, status: bool | None, reason: str, message: str, generation: int | None, now: datetime
) -> dict[str, Any]:
    """Build one condition; ``status`` None means Unknown."""
    return {
        "type": type_,
        "status": "Unknown" if status is None else ("True" if status else "False"),
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": rfc3339(now),
    }


def merge(
    existing: Iterable[Mapping[str, Any]] | None, updates: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Apply ``updates`` to ``existing`` conditions, keyed by type.

    lastTransitionTime only moves when a condition's status changes, so `kubectl describe` tells how long
    a state has lasted rather than when the operator last looked.
    """
    merged: dict[str, dict[str, Any]] = {c["type"]: dict(c) for c in existing or () if "type" in c}
    updates = list(updates)
    ready = next((u for u in updates if u["type"] == READY), None)
    if ready is not None:
        updates += _kstatus(ready)
    for update in updates:
        previous = merged.get(update["type"])
        if previous is not None and previous.get("status") == update["status"]:
            update = {**update, "lastTransitionTime": previous.get("lastTransitionTime")}
        merged[update["type"]] = update
    return sorted(merged.values(), key=lambda c: (c["type"] != READY, c["type"]))


def _kstatus(ready: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Reconciling and Stalled as kstatus reads them, from the Ready condition just computed.

    Ready=False for an invalid spec is Stalled (it stays so until the spec changes); for any other
    reason (an output that could not be written) the operator retries every interval: Reconciling.
    """
    failed = ready["status"] != "True"
    stalled = failed and ready["reason"] in _STALLED_REASONS
    reconciling = failed and not stalled
    generation, message = ready.get("observedGeneration"), ready.get("message", "")
    now = ready["lastTransitionTime"]

    def derived(type_: str, on: bool, off_reason: str) -> dict[str, Any]:
        return {
            "type": type_,
            "status": "True" if on else "False",
            "reason": ready["reason"] if on else off_reason if failed else "Reconciled",
            "message": message if on else "",
            "observedGeneration": generation,
            "lastTransitionTime": now,
        }

    return [derived(RECONCILING, reconciling, STALLED), derived(STALLED, stalled, "Retrying")]


def find(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    """Return the condition of ``type_``, if any."""
    return next((c for c in conditions or () if c.get("type") == type_), None)


def spec_validity(problems: str | None, generation: int | None, now: datetime) -> list[dict[str, Any]]:
    """Conditions stating whether the spec was accepted; ``problems`` names the offending fields."""
    if problems:
        return [
            condition(READY, False, INVALID_SPEC, problems, generation, now),
            condition(INVALID_SPEC, True, "ValidationFailed", problems, generation, now),
        ]
    return [
        condition(READY, True, "SpecAccepted", "spec is valid", generation, now),
        condition(INVALID_SPEC, False, "SpecAccepted", "", generation, now),
    ]


def readiness(
    dry_run: bool, output_error: str | None, reason: str, generation: int | None, now: datetime
) -> dict[str, Any]:
    """Ready after an evaluation: published (or dry run), or why the output could not be written."""
    if output_error:
        return condition(READY, False, "OutputFailed", output_error, generation, now)
    return condition(READY, True, "DryRun" if dry_run else "Published", reason, generation, now)
