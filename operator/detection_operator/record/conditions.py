"""Status conditions per the Kubernetes API conventions: pure helpers, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ..api.conditions import ConditionReason as Reason
from ..api.conditions import ConditionType
from ..core.errors import OutputError
from ..core.times import rfc3339

# kstatus' two abnormal-true conditions (sigs.k8s.io/cli-utils kstatus, which Flux's health checks and
# `kubectl wait`-style tools read): Stalled=True is Failed, Reconciling=True is InProgress. Both are derived
# from Ready in merge(), so every status write states them consistently.
_STALLED_REASONS = frozenset({Reason.INVALID_SPEC})
"""Ready=False reasons no retry can fix: only a spec change can."""


def condition(
    type_: ConditionType,
    status: bool | None,
    reason: Reason,
    message: str,
    generation: int | None,
    now: datetime,
) -> dict[str, Any]:
    """Build one condition; ``status`` None means Unknown."""
    return {
        "type": str(type_),
        "status": "Unknown" if status is None else ("True" if status else "False"),
        "reason": str(reason),
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
    ready = next((u for u in updates if u["type"] == ConditionType.READY), None)
    if ready is not None:
        updates += _kstatus(ready)
    for update in updates:
        previous = merged.get(update["type"])
        if previous is not None and previous.get("status") == update["status"]:
            update = {**update, "lastTransitionTime": previous.get("lastTransitionTime")}
        merged[update["type"]] = update
    return sorted(merged.values(), key=lambda c: (c["type"] != ConditionType.READY, c["type"]))


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

    def derived(type_: ConditionType, on: bool, off_reason: Reason) -> dict[str, Any]:
        return {
            "type": str(type_),
            "status": "True" if on else "False",
            "reason": ready["reason"] if on else str(off_reason if failed else Reason.RECONCILED),
            "message": message if on else "",
            "observedGeneration": generation,
            "lastTransitionTime": now,
        }

    return [
        derived(ConditionType.RECONCILING, reconciling, Reason.STALLED),
        derived(ConditionType.STALLED, stalled, Reason.RETRYING),
    ]


def find(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    """Return the condition of ``type_``, if any."""
    return next((c for c in conditions or () if c.get("type") == type_), None)


def spec_validity(problems: str | None, generation: int | None, now: datetime) -> list[dict[str, Any]]:
    """Conditions stating whether the spec was accepted; ``problems`` names the offending fields."""
    if problems:
        return [
            condition(ConditionType.READY, False, Reason.INVALID_SPEC, problems, generation, now),
            condition(ConditionType.INVALID_SPEC, True, Reason.VALIDATION_FAILED, problems, generation, now),
        ]
    return [
        condition(ConditionType.READY, True, Reason.SPEC_ACCEPTED, "spec is valid", generation, now),
        spec_accepted(generation, now),
    ]


def readiness(
    dry_run: bool, output_error: OutputError | None, reason: str, generation: int | None, now: datetime
) -> dict[str, Any]:
    """Ready after an evaluation: published (or dry run), or why the output could not be written."""
    if output_error is not None:
        return condition(ConditionType.READY, False, Reason.OUTPUT_FAILED, str(output_error), generation, now)
    return condition(
        ConditionType.READY, True, Reason.DRY_RUN if dry_run else Reason.PUBLISHED, reason, generation, now
    )


def spec_accepted(generation: int | None, now: datetime) -> dict[str, Any]:
    """InvalidSpec=False: the spec passed every check."""
    return condition(ConditionType.INVALID_SPEC, False, Reason.SPEC_ACCEPTED, "", generation, now)


def metrics_available(available: bool, message: str, generation: int | None, now: datetime) -> dict[str, Any]:
    """MetricsAvailable: whether every query answered with a number; ``message`` names those that did not."""
    reason = Reason.QUERIES_ANSWERED if available else Reason.METRICS_UNAVAILABLE
    return condition(ConditionType.METRICS_AVAILABLE, available, reason, message, generation, now)
