"""The pydantic models: CRDs generated from them, examples, invariants, field-naming errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from detection_operator.api import crd
from detection_operator.api.base import parse_duration
from detection_operator.api.generate import generated_files
from detection_operator.api.kinds import KINDS, by_kind, by_plural
from detection_operator.api.model_route import ModelRouteSpec
from detection_operator.api.validation import ValidatedSpecs, validate_spec
from detection_testing.documents import edited

REPO = Path(__file__).resolve().parents[2]
MALFORMED: list[dict[str, Any]] = yaml.safe_load((REPO / "tests/data/malformed.yaml").read_text())


def load(path: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / path).read_text())
    return doc


@pytest.mark.parametrize(
    ("path", "text"),
    sorted(generated_files(REPO).items()),
    ids=lambda v: str(v)[-40:] if isinstance(v, Path) else "",
)
def test_generated_files_match_the_models(path: Path, text: str) -> None:
    assert path.exists() and path.read_text() == text, f"{path} is stale: run `make crds`"


def test_chart_crds_are_the_top_level_crds() -> None:
    # Also catches a stray file in either directory, which the per-file check above cannot see.
    chart, top = REPO / "charts/detection-operator/crds", REPO / "crds"
    assert sorted(p.name for p in chart.iterdir()) == sorted(p.name for p in top.iterdir())
    for path in top.iterdir():
        assert (chart / path.name).read_bytes() == path.read_bytes(), f"{path.name} differs: run `make crds`"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.get("properties", {}).items():
            found += _walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            found += _walk(node["items"], f"{path}[]")
    return found


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_crd_schema_is_structural(kind: crd.Kind) -> None:
    schema = crd.crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "type" in node, f"{path} has no type"
        assert not {"$ref", "anyOf", "allOf", "oneOf", "$defs"} & node.keys(), path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("uniqueItems") is not True, path
        if node["type"] == "string" and "enum" not in node and "format" not in node:
            assert "maxLength" in node or not path.startswith(".spec"), f"{path}: CEL cost needs maxLength"


def test_every_spec_field_is_documented() -> None:
    for kind in KINDS:
        schema = crd.crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        undocumented = [p for p, n in _walk(schema["properties"]["spec"]) if p and "description" not in n]
        leaves = [p for p in undocumented if not p.endswith("[]")]
        assert not leaves, f"{kind.kind}: fields without description: {leaves}"


@pytest.mark.parametrize("path", sorted(p.name for p in (REPO / "examples").glob("*.yaml")))
def test_examples_are_valid(path: str) -> None:
    doc = load(f"examples/{path}")
    model, errors = validate_spec(by_kind(doc["kind"]).spec, doc["spec"])
    assert errors == []
    assert model is not None


@pytest.mark.parametrize("case", MALFORMED, ids=lambda c: c["name"])
def test_models_reject_every_malformed_case_naming_the_field(case: dict[str, Any]) -> None:
    doc = edited(load(case["base"]), case.get("set"), case.get("delete", ()))
    _, errors = validate_spec(by_kind(doc["kind"]).spec, doc["spec"])
    assert errors, "accepted"
    assert any(str(e).startswith(case["field"]) for e in errors), [str(e) for e in errors]


def test_a_spec_is_validated_once_per_uid_and_generation() -> None:
    doc = load("examples/model-route.yaml")
    spec_model = by_kind(doc["kind"]).spec
    bad = edited(doc, {"spec.models": []})["spec"]
    specs = ValidatedSpecs()
    first, _ = specs.validate("mr", spec_model, "uid-1", 1, doc["spec"])
    assert first is not None
    # The same generation is answered from memory, whatever the body says (it cannot differ).
    assert specs.validate("mr", spec_model, "uid-1", 1, bad)[0] is first
    assert specs.validate("mr", spec_model, "uid-1", 2, bad)[0] is None  # an edit
    assert specs.validate("mr", spec_model, "uid-2", 2, doc["spec"])[0] is not None  # re-created
    specs.forget("mr")
    assert specs.validate("mr", spec_model, "uid-2", 2, bad)[0] is None
    # Without a generation nothing is remembered.
    assert specs.validate("x", spec_model, "uid-3", None, doc["spec"])[0] is not None
    assert specs.validate("x", spec_model, "uid-3", None, bad)[0] is None


def test_malformed_corpus_is_large_enough() -> None:
    assert len(MALFORMED) >= 15
    assert {c["stage"] for c in MALFORMED} == {"admission", "operator"}


def test_model_metric_defaults_follow_the_spec() -> None:
    spec = ModelRouteSpec.model_validate(load("examples/model-route.yaml")["spec"])
    by_name = {m.name: m for m in spec.metrics}
    assert by_name["accuracy"].thresholds == (0.85, 0.75)
    assert by_name["latencyP95Ms"].thresholds == (2000, 5000)
    assert by_name["successRate"].thresholds == (0.95, 0.90)
    assert by_name["accuracy"].effective_direction == "higherIsBetter"
    assert by_name["latencyP95Ms"].effective_direction == "lowerIsBetter"
    assert spec.window == "10m"


def test_kind_lookup() -> None:
    assert by_plural("dp").kind == "DetectionPolicy"
    assert by_plural("modelroutes").kind == "ModelRoute"
    with pytest.raises(KeyError, match="unknown kind"):
        by_plural("pods")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("1.5s", 1.5)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5 m", "1d", "-1s", "m5"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)
