"""Status conditions follow the API conventions: lastTransitionTime moves only on a status change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from detection_operator.record import conditions

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_rfc3339_is_utc_whole_seconds() -> None:
    assert conditions.rfc3339(T0 + timedelta(microseconds=5)) == "2026-01-01T12:00:00Z"


def test_transition_time_kept_while_status_unchanged() -> None:
    first = conditions.merge([], conditions.spec_validity(None, 1, T0))
    later = conditions.merge(first, conditions.spec_validity(None, 2, T0 + timedelta(minutes=5)))
    ready = conditions.find(later, conditions.READY)
    assert ready is not None
    assert ready["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert ready["observedGeneration"] == 2


def test_transition_time_moves_on_status_change() -> None:
    first = conditions.merge([], conditions.spec_validity(None, 1, T0))
    broken = conditions.merge(first, conditions.spec_validity("spec.x: bad", 2, T0 + timedelta(minutes=5)))
    ready = conditions.find(broken, conditions.READY)
    invalid = conditions.find(broken, conditions.INVALID_SPEC)
    assert ready is not None and invalid is not None
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["lastTransitionTime"] == "2026-01-01T12:05:00Z"
    assert invalid["status"] == "True" and "spec.x" in invalid["message"]


def test_unrelated_conditions_survive_and_ready_sorts_first() -> None:
    other = conditions.condition("MetricsAvailable", True, "Ok", "", 1, T0)
    merged = conditions.merge([other], conditions.spec_validity(None, 1, T0))
    assert [c["type"] for c in merged] == [
        "Ready",
        "InvalidSpec",
        "MetricsAvailable",
        "Reconciling",
        "Stalled",
    ]


@pytest.mark.parametrize(
    ("ready", "reconciling", "stalled"),
    [
        (conditions.spec_validity(None, 3, T0), "False", "False"),
        (conditions.spec_validity("spec.x: bad", 3, T0), "False", "True"),
        ([conditions.readiness(False, "forbidden", "r", 3, T0)], "True", "False"),
        ([conditions.readiness(False, None, "r", 3, T0)], "False", "False"),
    ],
    ids=["accepted", "invalid-spec", "output-failed", "published"],
)
def test_kstatus_conditions_follow_ready(ready: list[dict[str, Any]], reconciling: str, stalled: str) -> None:
    # kstatus: Stalled=True is Failed (only a spec change helps), Reconciling=True is InProgress.
    merged = {c["type"]: c for c in conditions.merge([], ready)}
    assert merged["Reconciling"]["status"] == reconciling and merged["Stalled"]["status"] == stalled
    assert merged["Stalled"]["observedGeneration"] == merged["Reconciling"]["observedGeneration"] == 3
    if stalled == "True":
        assert merged["Stalled"]["reason"] == "InvalidSpec" and "spec.x" in merged["Stalled"]["message"]
