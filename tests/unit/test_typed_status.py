"""Status is built from the typed status models, and every kind has a flow and pure parts."""

from __future__ import annotations

from datetime import UTC, datetime

from detection_operator.api.detection_policy import DetectionPolicyStatus, ProfileSwitch
from detection_operator.api.kinds import KINDS
from detection_operator.api.model_route import ModelRouteStatus, ModelStatus
from detection_operator.decide.kinds import LOGIC
from detection_operator.reconcile.reconciler import FLOWS
from detection_operator.record.status import entries, fields

AT = datetime(2026, 1, 1, 12, 0, 0, 987654, tzinfo=UTC)


def test_every_kind_has_a_flow_and_pure_parts() -> None:
    assert set(FLOWS) == set(LOGIC) == {kind.kind for kind in KINDS}


def test_fields_are_camel_case_times_as_the_apiserver_writes_them_and_none_clears() -> None:
    status = DetectionPolicyStatus(profile="lean", held_by=None, last_evaluated=AT, since=AT)
    assert fields(status) == {
        "profile": "lean",
        "heldBy": None,  # set to None: clears the value the previous status had
        "lastEvaluated": "2026-01-01T12:00:00Z",
        "since": "2026-01-01T12:00:00Z",
    }


def test_nested_unset_and_none_values_are_left_out() -> None:
    model = ModelStatus(name="m1", level="ok", trend="stable", score=None, traffic_percent=100)
    assert fields(ModelRouteStatus(models=[model])) == {
        "models": [{"name": "m1", "level": "ok", "trend": "stable", "trafficPercent": 100}]
    }


def test_history_entries_read_back_and_a_damaged_one_is_dropped() -> None:
    raw = [{"to": "lean", "reason": "r", "at": "2026-01-01T12:00:00Z"}, {"to": "lean"}, "garbage"]
    history = entries(raw, ProfileSwitch)  # type: ignore[arg-type]
    assert history == [ProfileSwitch(to="lean", reason="r", at=datetime(2026, 1, 1, 12, tzinfo=UTC))]
