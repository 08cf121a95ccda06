"""Audit records: stable ids, JSON without NaN, the wire form receivers and the store read."""

from __future__ import annotations

from datetime import UTC, datetime

from detection_operator.api.records import ID_LENGTH, AuditRecord, finite, record_id
from detection_operator.core.identity import ObjectRef

REF = ObjectRef("ModelRoute", "team-a", "checkout", uid="u-1")
AT = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def test_the_same_decision_gets_the_same_id_and_any_difference_another() -> None:
    first = record_id(REF, "model-switch", 3, "rev=7")
    assert first == record_id(
        ObjectRef("ModelRoute", "team-a", "checkout", uid="u-1"), "model-switch", 3, "rev=7"
    )
    assert len(first) == ID_LENGTH
    others = {
        record_id(REF, "rollback", 3, "rev=7"),
        record_id(REF, "model-switch", 4, "rev=7"),
        record_id(REF, "model-switch", 3, "rev=8"),
        record_id(ObjectRef("ModelRoute", "team-a", "checkout", uid="u-2"), "model-switch", 3, "rev=7"),
        record_id(ObjectRef("DetectionPolicy", "team-a", "checkout", uid="u-1"), "model-switch", 3, "rev=7"),
    }
    assert first not in others and len(others) == 5


def test_wire_form_is_camel_case_with_from_and_no_nan() -> None:
    record = AuditRecord(
        id=record_id(REF, "model-switch", 3, "rev=7"),
        type="model-switch",
        object=REF,
        time=AT,
        from_="m1",
        to="m2",
        reason="m1 critical 3 times",
        values=finite({"errorRate": float("nan"), "latencyP95": 0.8}),
        thresholds={"latencyP95": 0.5},
        operator="op-0",
        generation=3,
    )
    wire = record.model_dump(mode="json", by_alias=True)
    assert wire["from"] == "m1" and wire["time"] == "2026-01-01T12:00:00Z"
    assert wire["values"] == {"latencyP95": 0.8}
    assert wire["object"] == {"kind": "ModelRoute", "namespace": "team-a", "name": "checkout", "uid": "u-1"}
    assert AuditRecord.model_validate(wire) == record
