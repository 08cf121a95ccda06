"""The fault proxy's canned answers get the causes the reliability tests expect from the operator."""

from __future__ import annotations

import json

import pytest

from detection_operator.observe.source import Missing, normalise
from detection_testing.faultproxy import fault_answer


@pytest.mark.parametrize(
    ("mode", "cause"), [("empty", "empty"), ("nan", "nan"), ("inf", "inf"), ("many", "many-series")]
)
def test_vector_faults_normalise_to_their_cause(mode: str, cause: str) -> None:
    status, body = fault_answer(mode, series=3)  # type: ignore[arg-type]
    assert status == 200
    reading = normalise(json.loads(body)["data"]["result"])
    assert isinstance(reading, Missing) and reading.cause == cause


def test_error_and_malformed_answers() -> None:
    assert fault_answer("error", 1)[0] == 503
    status, body = fault_answer("malformed", 1)
    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
    with pytest.raises(ValueError, match="forwards"):
        fault_answer("pass", 1)
