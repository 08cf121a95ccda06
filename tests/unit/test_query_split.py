"""Splitting the answer of a request of several queries back into each query's reading."""

from __future__ import annotations

from typing import Any

from detection_operator.core.readings import Missing, Value
from detection_operator.observe.source import BATCH_LABEL, _split


def series(tag: str | None, value: str, **labels: str) -> dict[str, Any]:
    metric = dict(labels) | ({BATCH_LABEL: tag} if tag is not None else {})
    return {"metric": metric, "value": [1.0, value]}


def test_each_query_reads_the_series_tagged_with_its_index() -> None:
    answer = [series("0", "1"), series("2", "NaN"), series("3", "4", pod="a"), series("3", "5", pod="b")]
    readings = _split(answer, ["a", "b", "c", "d"])
    assert readings["a"] == Value(1.0)
    assert readings["b"] == Missing("empty", "the query returned no series")
    assert readings["c"] == Missing("nan", "the value is NaN")
    assert isinstance(readings["d"], Missing) and readings["d"].cause == "many-series"


def test_an_answer_not_computed_from_the_request_is_every_part_s_answer() -> None:
    # A proxy or a cache that answers without the tags: each part gets what it would have got alone.
    assert _split([series(None, "+Inf")], ["a", "b"]) == {"a": Missing("inf", "the value is infinite")} | {
        "b": Missing("inf", "the value is infinite")
    }
    assert _split([series("0", "1"), series(None, "2")], ["a", "b"])["a"].cause == "many-series"  # type: ignore[union-attr]
    assert all(r.cause == "empty" for r in _split([], ["a", "b"]).values())  # type: ignore[union-attr]
    assert all(r.cause == "bad-response" for r in _split({"x": 1}, ["a", "b"]).values())  # type: ignore[union-attr]
