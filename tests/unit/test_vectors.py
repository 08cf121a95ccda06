"""The shared vectors (clients/vectors/): every client SDK's tests read the same files, so the languages
agree byte for byte. Here the Python client, the operator's signing and the JSON Schemas are held to them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from prometheus_client import CollectorRegistry

from detection_operator.api.contract import ProfileDocument, RouteDocument
from detection_operator.client import accuracy, routing
from detection_operator.client.monitor import ExternalMetrics, PerformanceMonitor
from detection_operator.client.readers import ProfileReader, RouteReader
from detection_operator.core.signing import SignatureError, sign, sign_webhook, verify, verify_webhook

VECTORS = Path(__file__).resolve().parents[2] / "clients" / "vectors"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def number(value: Any) -> Any:
    """Decode the vectors' ``{"$number": "NaN" | "Infinity" | "-Infinity"}`` (JSON has no such numbers)."""
    if isinstance(value, dict):
        if set(value) == {"$number"}:
            return float(value["$number"])
        return {key: number(item) for key, item in value.items()}
    if isinstance(value, list):
        return [number(item) for item in value]
    return value


DOCUMENTS = load("documents.json")["vectors"]
SIGNATURES = load("signatures.json")
ACCURACY = load("accuracy.json")
CHOOSE = load("choose.json")
SCHEMAS = {
    "profile.json": load("schemas/profile.schema.json"),
    "route.json": load("schemas/route.schema.json"),
}
READERS = {"profile.json": ProfileReader, "route.json": RouteReader}
MODELS = {"profile.json": ProfileDocument, "route.json": RouteDocument}


def by_name(cases: list[dict[str, Any]]) -> Any:
    return pytest.mark.parametrize("case", cases, ids=[case["name"] for case in cases])


def test_there_are_vectors_of_every_kind() -> None:
    assert {case["valid"] for case in DOCUMENTS} == {True, False}
    assert {case["document"] for case in DOCUMENTS} == set(READERS)
    assert {case["type"] for case in ACCURACY["cases"]} == {
        "number",
        "bool",
        "string",
        "object",
        "list",
        "null",
    }
    assert len(SIGNATURES["documents"]) >= 10 and len(SIGNATURES["webhooks"]) >= 5
    assert len(CHOOSE["cases"]) >= 10


@by_name(DOCUMENTS)
def test_document_vectors(case: dict[str, Any]) -> None:
    payload = case["payload"].encode()
    reader = READERS[case["document"]]()
    schema_errors = []
    try:
        schema_errors = list(
            jsonschema.Draft202012Validator(
                SCHEMAS[case["document"]], format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
            ).iter_errors(json.loads(payload))
        )
        parsed_json = True
    except json.JSONDecodeError:
        parsed_json = False
    if case["valid"]:
        document = reader.accept(payload)
        assert document.model_dump(mode="json", by_alias=True) == case["expected"]
        assert reader.current == document
        assert parsed_json and not schema_errors  # the schema and the reader agree
    else:
        with pytest.raises(ValueError, match="not a valid document"):
            reader.accept(payload)
        assert reader.current is None
        assert not parsed_json or schema_errors, "the schema accepts what the reader refuses"


@by_name(SIGNATURES["documents"])
def test_document_signature_vectors(case: dict[str, Any]) -> None:
    key, payload = bytes.fromhex(case["keyHex"]), case["payload"].encode()
    assert sign(key, payload) == case["expected"]
    assert verify(key, payload, case["signature"]) is case["valid"]


@by_name(SIGNATURES["webhooks"])
def test_webhook_signature_vectors(case: dict[str, Any]) -> None:
    key, body = bytes.fromhex(case["keyHex"]), case["body"].encode()
    assert sign_webhook(key, body, case["timestamp"]) == case["expected"]
    if case["valid"]:
        assert verify_webhook(key, body, case["header"], case["now"], case["tolerance"]) == case["timestamp"]
    else:
        with pytest.raises(SignatureError, match=case["reason"]):
            verify_webhook(key, body, case["header"], case["now"], case["tolerance"])


def test_a_signed_document_vector_is_refused_by_a_reader_once_tampered() -> None:
    case = next(c for c in SIGNATURES["documents"] if c["valid"] and c["payload"].startswith("{"))
    key, payload = bytes.fromhex(case["keyHex"]), case["payload"].encode()
    reader = RouteReader(key=key)
    assert reader.accept(payload, case["signature"]).revision >= 1
    with pytest.raises(ValueError, match="does not match its signature"):
        reader.accept(payload.replace(b'"revision": 1', b'"revision": 9'), case["signature"])
    assert reader.current is not None and reader.current.revision == 1


@by_name(ACCURACY["cases"])
def test_accuracy_vectors(case: dict[str, Any]) -> None:
    got = accuracy.score(number(case["predicted"]), number(case["actual"]))
    assert got == pytest.approx(case["score"], abs=ACCURACY["tolerance"])
    assert 0.0 <= got <= 1.0


@by_name(CHOOSE["cases"])
def test_choose_vectors(case: dict[str, Any]) -> None:
    assert routing.choose(case["traffic"], case["active"], case["r"]) == case["chosen"]
    assert routing.attempts(case["traffic"], case["active"], case["fallbacks"], case["r"]) == case["attempts"]


def test_the_even_sequence_vector() -> None:
    sequence = routing.EvenSequence()
    assert [sequence.next() for _ in CHOOSE["evenSequence"]["first"]] == CHOOSE["evenSequence"]["first"]


def test_a_value_that_is_not_json_has_no_accuracy() -> None:
    with pytest.raises(TypeError, match="cannot score a set"):
        accuracy.score({1}, [1])
    assert accuracy.score((1, 2), [1, 2]) == 1.0  # a tuple is a JSON list
    with pytest.raises(ValueError, match=r"r must be in \[0, 1\)"):
        routing.choose({"a": 100}, "a", 1.0)


METRICS = load("metrics.json")


def _snake(call: dict[str, Any]) -> dict[str, Any]:
    return {"".join(f"_{c.lower()}" if c.isupper() else c for c in key): value for key, value in call.items()}


def _samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, dict(s.labels), s.value) for family in registry.collect() for s in family.samples]


def _same_labels(got: dict[str, str], want: dict[str, str]) -> bool:
    # `le` is compared as a number: clients print 1 as "1" or "1.0" (Prometheus normalizes it).
    if got.keys() != want.keys():
        return False
    return all(float(got[k]) == float(v) if k == "le" else got[k] == v for k, v in want.items())


def test_the_metric_catalog_vector() -> None:
    registry = CollectorRegistry()
    monitor, external = PerformanceMonitor(registry), ExternalMetrics(registry)
    monitor.record_run(model="m", status="error", duration_ms=1, tokens=1, cost=1, memory_mb=1, cpu_ms=1,
                       quality=0.5, confidence=0.5, error_type="x")  # fmt: skip
    monitor.record_accuracy(1, 1, "review", model="m")
    external.record_call("intel", "timeout", 0.1)
    external.record_accuracy("intel", 1, 1)
    samples = _samples(registry)
    for metric in METRICS["metrics"]:
        name, labels = metric["name"], set(metric["labels"])
        if metric["type"] == "histogram":
            buckets = [s for s in samples if s[0] == f"{name}_bucket"]
            assert [float(s[1]["le"]) for s in buckets] == [*METRICS[metric["buckets"]], float("inf")], name
            assert all(set(s[1]) - {"le"} == labels for s in buckets), name
            assert [s for s in samples if s[0] in (f"{name}_sum", f"{name}_count")], name
        else:
            found = [s for s in samples if s[0] == name]
            assert found and all(set(s[1]) == labels for s in found), name
    for family in registry.collect():
        described = {m["name"].removesuffix("_total") for m in METRICS["metrics"]}
        assert family.name in described, f"{family.name} is not in the catalog vector"


@by_name(METRICS["runs"])
def test_metric_run_vectors(case: dict[str, Any]) -> None:
    registry = CollectorRegistry()
    PerformanceMonitor(registry).record_run(**_snake(case["call"]))
    samples = _samples(registry)
    for want in case["samples"]:
        matches = [s for s in samples if s[0] == want["name"] and _same_labels(s[1], want["labels"])]
        assert len(matches) == 1, want
        assert matches[0][2] == pytest.approx(want["value"])
    assert not [s for s in samples if s[0] in case["absent"]]


@by_name(METRICS["invalidRuns"])
def test_invalid_metric_run_vectors(case: dict[str, Any]) -> None:
    registry = CollectorRegistry()
    with pytest.raises(ValueError):
        PerformanceMonitor(registry).record_run(**_snake(case["call"]))
    assert _samples(registry) == []
