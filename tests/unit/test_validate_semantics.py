"""`validate` judges a manifest as kubectl reads it and the apiserver admits it; nothing it reads raises.

Each case is a manifest a user might write. The agreement with the real apiserver is shown by
tests/integration/test_validate_agreement.py; these pin the behaviours one by one, without a cluster.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from detection_operator.api import admission, crd
from detection_operator.api.detection_policy import DetectionPolicySpec
from detection_operator.api.kinds import KINDS
from detection_operator.api.validation import validate_spec
from detection_operator.tools import validate
from detection_operator.tools.documents import go_scalar, parse
from detection_testing.documents import edited

REPO = Path(__file__).resolve().parents[2]
POLICY = yaml.safe_load((REPO / "examples/detection-policy.yaml").read_text())
ROUTE = yaml.safe_load((REPO / "examples/model-route.yaml").read_text())


def check(tmp_path: Path, text: str) -> validate.Report:
    path = tmp_path / "doc.yaml"
    path.write_text(text)
    return validate.validate([str(path)])


def findings(tmp_path: Path, document: Any) -> list[tuple[str, str, str]]:
    report = check(tmp_path, yaml.safe_dump(document) if not isinstance(document, str) else document)
    return [(f.field, f.stage, f.message) for f in report.findings]


def fields(tmp_path: Path, document: Any, stage: str = admission.ADMISSION) -> list[str]:
    return [field for field, found_stage, _ in findings(tmp_path, document) if found_stage == stage]


@pytest.mark.parametrize(
    ("base", "change", "field"),
    [
        (POLICY, {"spec.rules[0].threshold": "200"}, "spec.rules[0].threshold"),  # a quoted number
        (POLICY, {"spec.dryRun": "true"}, "spec.dryRun"),  # a string for a boolean
        (POLICY, {"spec.rules[0].for": True}, "spec.rules[0].for"),  # a boolean for a count
        (POLICY, {"spec.rules[0].for": 2.5}, "spec.rules[0].for"),  # a fraction for a count
        (ROUTE, {"spec.override": {"model": "neuroweaver-v2", "until": 1893456000}}, "spec.override.until"),
        (
            ROUTE,
            {"spec.override": {"model": "neuroweaver-v2", "until": "2030-02-30T00:00:00Z"}},
            "spec.override.until",
        ),
        (ROUTE, {"spec.minRequests": 2**63}, "spec.minRequests"),  # beyond int64: a float to the apiserver
        (ROUTE, {"spec.minRequests": 10**20}, "spec.minRequests"),
        (POLICY, {"spec.profiles[0].description": 5}, "spec.profiles[0].description"),
        (POLICY, {"spec.rules[0].extra": 1}, "spec.rules[0].extra"),  # unknown field, nested
        (POLICY, {"status": {"bogus": 1}}, "status.bogus"),  # strict decoding looks at status too
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, str) else "",
)
def test_types_are_strict_as_in_the_structural_schema(
    tmp_path: Path, base: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    assert field in fields(tmp_path, edited(base, change))


def test_whole_floats_are_integers_and_integers_are_numbers(tmp_path: Path) -> None:
    # kube-openapi takes 2.0 for an integer (a JSON integer) and 200 for a number, as the apiserver does.
    assert fields(tmp_path, edited(POLICY, {"spec.rules[0].for": 2.0, "spec.rules[0].threshold": 200})) == []
    assert fields(tmp_path, edited(POLICY, {"spec.rules[0].threshold": 2**64})) == []  # a float, storable
    # kube-openapi's type check allows a 1e-9 relative error, its range check then refuses any fraction.
    model, errors = validate_spec(
        DetectionPolicySpec, edited(POLICY, {"spec.rules[0].for": 3.0000000001})["spec"]
    )
    assert model is None and [e.path for e in errors] == ["spec.rules[0].for"]


@pytest.mark.parametrize("literal", [".inf", "-.inf", ".nan", ".NaN"])
def test_numbers_that_cannot_be_stored(tmp_path: Path, literal: str) -> None:
    text = yaml.safe_dump(POLICY).replace("threshold: 200", f"threshold: {literal}")
    assert "spec.rules[0].threshold" in fields(tmp_path, text)


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"name": "bot-detector\n"}, "metadata.name"),
        ({"name": 5}, "metadata.name"),
        ({"name": "a" * 254}, "metadata.name"),
        ({"name": "Bot"}, "metadata.name"),
        ({"name": "a..b"}, "metadata.name"),
        ({}, "metadata.name"),
        ({"name": "bot", "namespace": "Team_A"}, "metadata.namespace"),
        ({"name": "bot", "namespace": "a" * 64}, "metadata.namespace"),
        ({"name": "bot", "labels": {"app": "x" * 64}}, "metadata.labels.app"),
        ({"name": "bot", "labels": {"bad key": "x"}}, "metadata.labels"),
        ({"name": "bot", "labels": {"app": 5}}, "metadata.labels.app"),
        ({"name": "bot", "annotations": {"a/b/c": "x"}}, "metadata.annotations"),
        ({"name": "bot", "nmae": "x"}, "metadata.nmae"),
        ({"generateName": "Bot-"}, "metadata.generateName"),
        ([], "metadata"),
    ],
    ids=lambda v: json.dumps(v)[:40] if not isinstance(v, str) else "",
)
def test_metadata_follows_the_apiservers_rules(tmp_path: Path, metadata: Any, field: str) -> None:
    assert field in fields(tmp_path, dict(POLICY, metadata=metadata))


@pytest.mark.parametrize(
    "metadata",
    [
        {"name": "a" * 253},
        {"name": "a." * 126 + "a"},
        {"generateName": "bot-"},
        {"name": "bot", "namespace": "team-a"},
    ],
    ids=["253", "dots", "generateName", "namespace"],
)
def test_valid_metadata_passes(tmp_path: Path, metadata: dict[str, Any]) -> None:
    assert findings(tmp_path, dict(POLICY, metadata=metadata)) == []


def test_unknown_top_level_field(tmp_path: Path) -> None:
    assert fields(tmp_path, dict(POLICY, specs={})) == ["specs"]


def test_explicit_null_is_pruned_then_defaulted(tmp_path: Path) -> None:
    document = edited(
        POLICY, {"spec.holdFor": None, "spec.rules[0].clearThreshold": None, "spec.alerts": None}
    )
    assert findings(tmp_path, document) == []
    required = edited(POLICY, {"spec.defaultProfile": None})  # pruned, then missing
    assert findings(tmp_path, required) == [("spec.defaultProfile", "admission", "Required value")]


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: detection.adaptive.io/v1alpha1\nkind: DetectionPolicy\nmetadata: [a]\nspec: {}\n",
        "apiVersion: detection.adaptive.io/v1alpha1\nkind: DetectionPolicy\nmetadata: {name: a}\nspec: [a]\n",
        "apiVersion: detection.adaptive.io/v1alpha1\nkind: DetectionPolicy\nmetadata: {name: a}\nspec: x\n",
        "- just\n- a list\n",
        "plain text\n",
        "a: [unclosed\n",
        "a: !!int abc\n",
        "a: 1\na: 2\n",
        "? [complex, key]\n: 1\n",
        "apiVersion: 5\nkind: DetectionPolicy\n",
    ],
    ids=[
        "metadata-list",
        "spec-list",
        "spec-string",
        "list",
        "scalar",
        "syntax",
        "bad-tag",
        "dup-key",
        "key",
        "apiv",
    ],
)
def test_odd_documents_are_findings_not_tracebacks(tmp_path: Path, text: str) -> None:
    report = check(tmp_path, text)
    assert not report.ok and report.findings[0].document == 1 and report.findings[0].message


def test_an_impossible_date_is_a_finding_not_a_value_error(tmp_path: Path) -> None:
    # PyYAML raises ValueError building 2026-02-30; kubectl keeps the text and the apiserver refuses it.
    text = yaml.safe_dump(edited(ROUTE, {"spec.override": {"model": "neuroweaver-v2"}}))
    text = text.replace("model: neuroweaver-v2\n", "model: neuroweaver-v2\n    until: 2026-02-30\n", 1)
    assert "spec.override.until" in fields(tmp_path, text)


def test_a_binary_file_is_a_finding_and_an_unreadable_one_exit_2(tmp_path: Path) -> None:
    binary = tmp_path / "image.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    result = subprocess.run(
        [sys.executable, "-m", "detection_operator", "validate", str(binary)], capture_output=True, text=True
    )
    assert result.returncode == 1 and "image.yaml#1" in result.stdout and "binary" in result.stdout
    assert "Traceback" not in result.stderr
    if os.geteuid() != 0:  # root reads anything
        unreadable = tmp_path / "secret.yaml"
        unreadable.write_text("a: 1")
        unreadable.chmod(0)
        assert validate_exit(unreadable) == 2
    assert validate_exit(tmp_path / "missing.yaml") == 2


def validate_exit(path: Path) -> int:
    return subprocess.run([sys.executable, "-m", "detection_operator", "validate", str(path)]).returncode


@pytest.mark.parametrize(
    ("query", "message"),
    [("   ", "query is blank"), ("rate(x[${window}])", "${window} is never substituted: write $window")],
)
def test_queries_only_we_can_judge(tmp_path: Path, query: str, message: str) -> None:
    found = findings(tmp_path, edited(POLICY, {"spec.rules[0].query": query}))
    assert [(f, s) for f, s, _ in found] == [("spec.rules[0].query", "operator")]
    assert message in found[0][2]


def test_cel_twins_are_reported_even_when_a_query_fails_lint(tmp_path: Path) -> None:
    document = edited(POLICY, {"spec.rules[0].query": "rate(x[$windw])", "spec.rules[0].profile": "turbo"})
    assert [(f, s) for f, s, _ in findings(tmp_path, document)] == [
        ("spec.rules", "admission"),
        ("spec.rules[0].query", "operator"),
    ]


@pytest.mark.parametrize(
    ("api_version", "kind", "hint"),
    [
        ("detection.adaptive.io/v1alpha1", "DetectionPolicies", "did you mean DetectionPolicy?"),
        ("detection.adaptive.io/v1alpha1", "ModelRoutes", "did you mean ModelRoute?"),
        ("detection.adaptive.io/v1", "DetectionPolicy", "no version 'v1'"),
        ("detection.adaptiv.io/v1alpha1", "DetectionPolicy", "served as apiVersion"),
    ],
)
def test_our_group_or_kind_misspelled_is_a_finding(
    tmp_path: Path, api_version: str, kind: str, hint: str
) -> None:
    report = check(tmp_path, yaml.safe_dump(dict(POLICY, apiVersion=api_version, kind=kind)))
    assert report.checked == 1 and hint in report.findings[0].message


def test_other_objects_are_skipped(tmp_path: Path) -> None:
    report = check(tmp_path, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nreplicas: 3\n")
    assert (report.checked, report.skipped, report.findings) == (0, 2, [])


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e3", 1000.0),
        ("0x1F", 31),
        ("0755", 493),
        ("09", 9.0),
        ("1_000", 1000),
        ("yes", True),
        ("n", False),
        ("~", None),
        ("2026-01-01", "2026-01-01"),  # timestamps keep their text
        ("1e400", "1e400"),  # out of float range: go-yaml keeps the string
        ("99999999999999999999", 1e20),
        ("18446744073709551615", 2**64 - 1),
        (".5", 0.5),
        ("+.inf", math.inf),
        ("bot", "bot"),
    ],
)
def test_plain_scalars_resolve_as_kubectl_resolves_them(text: str, value: Any) -> None:
    assert go_scalar(text) == value and type(go_scalar(text)) is type(value)


def test_keys_become_strings_as_sigs_k8s_io_yaml_writes_them() -> None:
    (doc,) = parse("x", b"1: a\ntrue: b\n2.5: c\n")
    assert doc.body == {"1": "a", "true": "b", "2.5": "c"}


def test_every_schema_keyword_is_enforced() -> None:
    # A keyword the admission layer does not know would be silently ignored by validate: fail instead.
    used: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            used.update(node)
            for value in node.get("properties", {}).values():
                walk(value)
            for key in ("items", "additionalProperties"):
                walk(node.get(key))

    for kind in KINDS:
        walk(crd.structural_schema(kind.spec))
        walk(crd.structural_schema(kind.status))
    assert used <= admission.KNOWN_KEYWORDS, used - admission.KNOWN_KEYWORDS


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    spec=JSON_VALUES,
    metadata=JSON_VALUES,
    kind=st.sampled_from(["DetectionPolicy", "ModelRoute", "Other", 5]),
    extra=JSON_VALUES,
)
def test_no_manifest_raises(spec: Any, metadata: Any, kind: Any, extra: Any) -> None:
    body = {"apiVersion": "detection.adaptive.io/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec}
    for document in (body, dict(body, extra=extra), extra):
        text = yaml.safe_dump(document, allow_unicode=True)
        report = validate.validate_text(text)
        assert report.ok == (not report.findings)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_no_bytes_raise(data: bytes) -> None:
    validate.validate_text(data)


def test_a_huge_file_is_judged_quickly(tmp_path: Path) -> None:
    one = yaml.safe_dump(edited(POLICY, {"spec.rules[0].threshold": "x"}))
    text = "---\n".join(one.replace("name: bot-detector", f"name: p-{i}") for i in range(1000))
    report = check(tmp_path, text)  # about 4 MB
    assert report.checked == 1000 and len(report.findings) == 1000
