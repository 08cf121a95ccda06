"""`validate` says what the apiserver says: hypothesis generates valid and near-valid manifests (type
confusions, boundary values, int64 and float edges, nulls, unknown fields at every level, metadata
variants, timestamps, bad PromQL) and each one goes both through `validate` (the CLI's path, from the JSON
text the API client sends) and through a server-side dry-run create with strict field validation on the
real apiserver. They must agree on admission for every document. PromQL is compared apart: there, and
only there, validate may be stricter (the apiserver sees a string; the operator would mark InvalidSpec).

`VALIDATE_AGREEMENT_EXAMPLES` sets how many documents are tried (default 1000); the run is derandomized, so
CI tries the same documents every time.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from detection_operator.api.admission import ADMISSION, OPERATOR, spec_schema
from detection_operator.api.base import GROUP, VERSION
from detection_operator.api.kinds import by_kind
from detection_operator.tools import validate
from detection_testing.documents import edited

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [
    yaml.safe_load((REPO / "examples" / name).read_text())
    for name in ("detection-policy.yaml", "model-route.yaml")
]
EXAMPLE_COUNT = int(os.environ.get("VALIDATE_AGREEMENT_EXAMPLES", "1000"))

Path_ = tuple[str | int, ...]

# Values a hand-written manifest plausibly holds where another type belongs, and numbers at the edges
# of what JSON, int64 and float64 can carry.
CONFUSIONS = st.sampled_from(
    [
        "200",
        "0.5",
        "true",
        "yes",
        "",
        " ",
        "30s",
        True,
        False,
        0,
        1,
        -1,
        2.0,
        2.5,
        1e-300,
        1e308,
        2**53,
        2**63 - 1,
        2**63,
        -(2**63),
        -(2**63) - 1,
        2**64,
        10**20,
        None,
        [],
        {},
        ["x"],
        {"a": 1},
    ]
)
NAMES = st.sampled_from(
    [
        "bot-detector",
        "bot-detector\n",
        " bot",
        "Bot",
        "a..b",
        "-a",
        "a-",
        "a_b",
        "ü",
        "a" * 63,
        "a" * 253,
        "a" * 254,
        "a." * 126 + "a",
        "",
        5,
        True,
        None,
    ]
)
LABELS = st.sampled_from(
    [
        {"app": "bot"},
        {"example.com/app": "bot"},
        {"bad key": "x"},
        {"a" * 64: "x"},
        {"app": "x" * 64},
        {"app": "-x"},
        {"app": 5},
        {"app": None},
        "app=bot",
        None,
    ]
)
TIMESTAMPS = st.sampled_from(
    [
        "2030-01-01T00:00:00Z",
        "2030-01-01T00:00:00.123456Z",
        "2030-01-01T00:00:00+02:00",
        "2030-01-01t00:00:00z",
        "2030-01-01",
        "2030-01-01T00:00:00",
        "2030-02-30T00:00:00Z",
        "2030-01-01T24:00:00Z",
        "2030-01-01 00:00:00Z",
        "tomorrow",
        1893456000,
    ]
)
BAD_PROMQL = st.sampled_from(
    [
        'max(x{namespace="$namspace"})',
        "sum(rate(x[$window])",
        'max(x{a="unterminated})',
        "rate(x[${window}])",
        "   ",
        "",
        "up",
    ]
)


def paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every path below ``node`` (dict keys and list indexes), parents before children."""
    found: list[Path_] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        found.append((*prefix, key))
        found += paths(child, (*prefix, key))
    return found


def get(node: Any, path: Path_) -> Any:
    for part in path:
        node = node[part]
    return node


def schema_at(schema: dict[str, Any] | None, path: Path_) -> dict[str, Any] | None:
    for part in path:
        if schema is None:
            return None
        if isinstance(part, int):
            schema = schema.get("items")
        else:
            schema = schema.get("properties", {}).get(part) or (
                schema["additionalProperties"]
                if isinstance(schema.get("additionalProperties"), dict)
                else None
            )
    return schema


def boundaries(schema: dict[str, Any], current: Any) -> list[Any]:
    """Values on and just past each bound the schema declares (and around the current value)."""
    found: list[Any] = []
    if isinstance(current, str):
        # Go's `$` ends the text (Python's also matches before a final newline); Go's \s is ASCII only.
        found += [current + "\n", current + "\u00a0", current.replace(".", "\u00a0", 1), current.upper()]
    if isinstance(current, int | float) and not isinstance(current, bool):
        found += [current + 0.5, current + 1e-10, float(current), str(current)]
    for bound, step in (("minimum", -1), ("maximum", 1)):
        if bound in schema:
            edge = schema[bound]
            nudge = step if schema.get("type") == "integer" else step * 1e-9 * max(1, abs(edge))
            found += [edge, edge + nudge]
    for bound, step in (("minLength", -1), ("maxLength", 1)):
        if bound in schema:
            length = schema[bound]
            found += ["a" * length, "a" * max(0, length + step)]
    for bound, step in (("minItems", -1), ("maxItems", 1)):
        if bound in schema:
            found += [[], ["a"] * (schema[bound] + max(step, 0))]
    if "enum" in schema:
        found += [schema["enum"][0], str(schema["enum"][0]).upper() + "x"]
    return found


def mutate(document: dict[str, Any], draw: st.DataObject, namespace: str) -> list[str]:
    """Apply zero to three near-valid edits to ``document`` in place; return what was done."""
    kind = by_kind(document["kind"])
    schema = dict(spec_schema(kind.spec))
    done = []
    actions = ["confuse", "boundary", "null", "delete", "unknown", "duplicate", "metadata", "query", "time"]
    for _ in range(draw.draw(st.integers(0, 3), label="edits")):
        action = draw.draw(st.sampled_from(actions), label="action")
        spec_paths = paths(document.get("spec"), ("spec",)) if isinstance(document.get("spec"), dict) else []
        if action == "metadata":
            done.append(_metadata(document, draw, namespace))
            continue
        if action == "time":
            if kind.kind == "ModelRoute" and isinstance(document.get("spec"), dict):
                until = draw.draw(TIMESTAMPS, label="until")
                document["spec"]["override"] = {"model": "neuroweaver-v2", "until": until}
                done.append(f"override.until={until!r}")
            continue
        if action == "query":
            queries = [p for p in spec_paths if p[-1] == "query" or (len(p) > 2 and p[-2] == "queries")]
            if queries:
                path = draw.draw(st.sampled_from(queries), label="query path")
                get(document, path[:-1])[path[-1]] = value = draw.draw(BAD_PROMQL, label="promql")
                done.append(f"{_dotted(path)}={value!r}")
            continue
        candidates = [*spec_paths, ("metadata",), ("spec",), ("kind",)] if action == "unknown" else spec_paths
        if not candidates:
            continue
        path = draw.draw(st.sampled_from(candidates), label="path")
        parent, last = get(document, path[:-1]), path[-1]
        if action == "confuse":
            parent[last] = value = draw.draw(CONFUSIONS, label="value")
        elif action == "boundary":
            edges = boundaries(schema_at(schema, path[1:]) or {}, parent[last])
            if not edges:
                continue
            parent[last] = value = draw.draw(st.sampled_from(edges), label="edge")
        elif action == "null":
            parent[last] = value = None
        elif action == "delete":
            del parent[last]
            value = "deleted"
        elif action == "unknown":
            target = get(document, path) if isinstance(get(document, path), dict) else parent
            if not isinstance(target, dict):
                continue
            target[f"{last}Typo" if isinstance(last, str) else "typo"] = value = 1
        elif isinstance(parent, list):  # duplicate
            parent.append(value := copy.deepcopy(parent[last]))
        else:
            continue
        done.append(f"{action} {_dotted(path)}={_short(value)}")
    return done


def _metadata(document: dict[str, Any], draw: st.DataObject, namespace: str) -> str:
    field = draw.draw(
        st.sampled_from(["name", "generateName", "namespace", "labels", "annotations", "unknown", "shape"]),
        label="metadata field",
    )
    if not isinstance(document.get("metadata"), dict):
        document["metadata"] = {"name": "reshaped"}
    meta = document["metadata"]
    if field == "name":
        meta["name"] = value = draw.draw(NAMES, label="name")
    elif field == "generateName":
        meta.pop("name", None)
        meta["generateName"] = value = draw.draw(st.sampled_from(["bot-", "Bot-", "a" * 300, ""]))
    elif field == "namespace":
        # The request goes to `namespace`: another valid name is refused for not matching the request,
        # which validate cannot know; so only the request's own namespace or invalid names.
        meta["namespace"] = value = draw.draw(st.sampled_from([namespace, "Bad_NS", "a" * 64, "", 7]))
    elif field == "labels":
        meta["labels"] = value = draw.draw(LABELS, label="labels")
    elif field == "annotations":
        meta["annotations"] = value = draw.draw(
            st.sampled_from([{"note": "x" * 2000}, {"Example.COM/Note": "x"}, {"a/b/c": "x"}, {"note": 1}])
        )
    elif field == "unknown":
        meta["nmae"] = value = "typo"
    else:
        document["metadata"] = value = draw.draw(st.sampled_from([[], "bot", None, {}]))
    return f"metadata.{field}={_short(value)}"


def _dotted(path: Path_) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 40 else text[:37] + "..."


def both(
    objects: client.CustomObjectsApi, namespace: str, document: dict[str, Any], path: Path
) -> tuple[list[validate.Finding], str | None]:
    """validate's findings on ``document``, and the apiserver's refusal of it (None: admitted)."""
    # The exact JSON text the API client sends is what validate reads (JSON is YAML).
    path.write_text(json.dumps(document))
    findings = validate.validate([str(path)]).findings
    try:
        objects.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            by_kind(document["kind"]).plural,
            document,
            dry_run="All",
            field_validation="Strict",
        )
    except ApiException as exc:
        assert exc.status in (400, 422), (exc.status, exc.body)
        return findings, f"{exc.status}: {exc.body[:300]}"
    except ValueError as exc:  # the client refuses to send NaN/Inf at all
        return findings, f"client: {exc}"
    return findings, None


def test_validate_agrees_with_the_apiserver_on_admission(
    kube: client.ApiClient,
    namespace: str,
    crds: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    objects = client.CustomObjectsApi(kube)
    counts: Counter[str] = Counter()
    disagreements: list[str] = []
    stricter_outside_promql: list[str] = []
    started = time.monotonic()
    document_file = tmp_path / "document.json"

    @settings(
        max_examples=EXAMPLE_COUNT,
        derandomize=True,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(draw=st.data())
    def one_document(draw: st.DataObject) -> None:
        document = copy.deepcopy(draw.draw(st.sampled_from(EXAMPLES), label="example"))
        document["metadata"]["namespace"] = namespace
        edits = mutate(document, draw, namespace)
        counts["tried"] += 1
        findings, server = both(objects, namespace, document, document_file)
        admission = [f for f in findings if f.stage == ADMISSION]
        operator_only = [f for f in findings if f.stage == OPERATOR]
        if server is None:
            counts["admitted by both" if not admission else "DISAGREE"] += 1
            if admission:
                disagreements.append(f"apiserver admits, validate rejects: {edits}: {admission}")
            if operator_only:
                counts["admitted, then PromQL finding (validate stricter)"] += 1
                off_promql = [f for f in operator_only if "quer" not in f.field]
                if off_promql:
                    stricter_outside_promql.append(f"{edits}: {off_promql}")
        elif admission:
            counts["rejected by both"] += 1
        else:
            counts["DISAGREE"] += 1
            disagreements.append(f"apiserver rejects, validate admits: {edits}: {server}")

    one_document()
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"\nvalidate/apiserver agreement: {dict(counts)} in {elapsed:.1f} s")
    assert not disagreements, "\n".join(disagreements[:20])
    assert not stricter_outside_promql, "\n".join(stricter_outside_promql[:20])
    assert (
        counts["rejected by both"] > EXAMPLE_COUNT // 4 and counts["admitted by both"] > EXAMPLE_COUNT // 10
    )


POLICY, ROUTE = EXAMPLES
UNTIL = "spec.override"
# The behaviours issue 16 names, and the edges next to them, each as one manifest; `admitted` is what the
# apiserver does with it (asserted, so a change in the apiserver shows up here too).
EDGES: list[tuple[str, dict[str, Any], bool]] = [
    ("quoted number", edited(POLICY, {"spec.rules[0].threshold": "200"}), False),
    ("string boolean", edited(POLICY, {"spec.dryRun": "true"}), False),
    ("boolean count", edited(POLICY, {"spec.rules[0].for": True}), False),
    ("whole float count", edited(POLICY, {"spec.rules[0].for": 2.0}), True),
    ("nearly whole float count", edited(POLICY, {"spec.rules[0].for": 3.0000000001}), False),
    ("fractional count", edited(POLICY, {"spec.rules[0].for": 2.5}), False),
    ("integer timestamp", edited(ROUTE, {UNTIL: {"model": "neuroweaver-v2", "until": 1893456000}}), False),
    (
        "impossible date",
        edited(ROUTE, {UNTIL: {"model": "neuroweaver-v2", "until": "2030-02-30T00:00:00Z"}}),
        False,
    ),
    ("date only", edited(ROUTE, {UNTIL: {"model": "neuroweaver-v2", "until": "2030-01-01"}}), False),
    (
        "lowercase t and z",
        edited(ROUTE, {UNTIL: {"model": "neuroweaver-v2", "until": "2030-01-01t10:00:00z"}}),
        True,
    ),
    (
        "no time zone",
        edited(ROUTE, {UNTIL: {"model": "neuroweaver-v2", "until": "2030-01-01T10:00:00"}}),
        False,
    ),
    # $window is a range selector's length, and a route's request rate is divided by it.
    ("zero window (route)", edited(ROUTE, {"spec.window": "0s"}), False),
    ("zero window in two parts (policy)", edited(POLICY, {"spec.window": "0m0s"}), False),
    ("sub-second window", edited(ROUTE, {"spec.window": "500ms"}), True),
    ("int64 max", edited(ROUTE, {"spec.minRequests": 2**63 - 1}), True),
    ("beyond int64", edited(ROUTE, {"spec.minRequests": 2**63}), False),
    ("beyond float64", edited(POLICY, {"spec.rules[0].threshold": 10**400}), False),
    ("uint64 as a number", edited(POLICY, {"spec.rules[0].threshold": 2**64}), True),
    ("float max", edited(POLICY, {"spec.rules[0].threshold": 1.7976931348623157e308}), True),
    ("null on a defaulted field", edited(POLICY, {"spec.holdFor": None, "spec.rules": None}), True),
    ("null on an optional field", edited(POLICY, {"spec.expense": None}), True),
    ("null on a required field", edited(POLICY, {"spec.profiles": None}), False),
    ("null list item", edited(POLICY, {"spec.contributors": [None]}), False),
    ("name with a newline", edited(POLICY, {"metadata.name": "bot-detector\n"}), False),
    ("name not a string", edited(POLICY, {"metadata.name": 5}), False),
    ("253-character name", edited(POLICY, {"metadata.name": "a" * 253}), True),
    ("254-character name", edited(POLICY, {"metadata.name": "a" * 254}), False),
    ("invalid namespace", edited(POLICY, {"metadata.namespace": "Team_A"}), False),
    ("unknown metadata field", edited(POLICY, {"metadata.nmae": "x"}), False),
    ("label value too long", edited(POLICY, {"metadata.labels": {"app": "x" * 64}}), False),
    ("unknown top-level field", dict(POLICY, specs={}), False),
    ("unknown status field", dict(POLICY, status={"bogus": 1}), False),
    ("blank query (PromQL only)", edited(POLICY, {"spec.rules[0].query": "   "}), True),
    ("braced variable (PromQL only)", edited(POLICY, {"spec.rules[0].query": "rate(x[${window}])"}), True),
]


@pytest.mark.parametrize(("case", "document", "admitted"), EDGES, ids=[e[0] for e in EDGES])
def test_each_named_behaviour_agrees_with_the_apiserver(
    kube: client.ApiClient,
    namespace: str,
    crds: list[str],
    tmp_path: Path,
    case: str,
    document: dict[str, Any],
    admitted: bool,
) -> None:
    document = edited(document, {"metadata.namespace": document["metadata"].get("namespace", namespace)})
    findings, said = both(client.CustomObjectsApi(kube), namespace, document, tmp_path / "document.json")
    findings = [f for f in findings if f.stage == ADMISSION]
    server_admits = said is None
    assert server_admits is admitted, f"{case}: the apiserver changed its mind: {said}"
    assert (not findings) is admitted, f"{case}: validate disagrees: {findings}"
