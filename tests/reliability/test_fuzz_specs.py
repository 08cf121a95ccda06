"""Bad input: hypothesis mutates the example DetectionPolicy and ModelRoute into valid and near-valid
documents and applies each to the real apiserver (strict field validation, as kubectl sends). Every
document must end either rejected at admission, or stored and judged by the operator exactly as the
pydantic models judge the stored spec: `InvalidSpec=True` naming each bad field, or accepted. The operator
must stay alive throughout. `RELIABILITY_FUZZ_EXAMPLES` sets how many documents are tried (default 150).
"""

from __future__ import annotations

import copy
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from detection_operator.api.base import GROUP, VERSION
from detection_operator.api.kinds import by_kind
from detection_operator.api.validation import summary, validate_spec
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.report import Report

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [
    yaml.safe_load((REPO / "examples" / name).read_text())
    for name in ("detection-policy.yaml", "model-route.yaml")
]
EXAMPLE_COUNT = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "150"))

# PromQL only the operator can judge (the apiserver sees a string): template typos, unbalanced brackets,
# unterminated strings; and one good query.
BAD_PROMQL = st.sampled_from(
    [
        'max(detector_latency{namespace="$namspace"})',
        "sum(rate(x[$window])",
        'max(x{a="unterminated})',
        "max(x) * $threshold",
        "up",
    ]
)

# Values that are wrong in a plausible way: wrong types, bounds, bad durations, unknown names, PromQL the
# apiserver cannot check (template typos, unbalanced brackets, unterminated strings).
NEAR_VALID = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=10**7),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=6),
    st.sampled_from(["", "5x", "-1s", "0s", "90m", "2h", "lean", "nope", "heavy", ">", "=~", "ua", "email"]),
    BAD_PROMQL,
)


def paths(node: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path below ``node`` (dict keys and list indexes), parents before children."""
    found: list[tuple[str | int, ...]] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        found.append((*prefix, key))
        found += paths(child, (*prefix, key))
    return found


def _get(node: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def mutate(spec: dict[str, Any], draw: st.DataObject) -> list[str]:
    """Apply one to three near-valid mutations to ``spec`` in place; return what was done."""
    done = []
    for _ in range(draw.draw(st.integers(min_value=0, max_value=3), label="mutations")):
        actions = ["replace", "delete", "unknown-field", "duplicate", "query"]
        action = draw.draw(st.sampled_from(actions), label="action")
        if action == "query":
            # Aim at the queries: rarely reached by chance, and only the operator can reject them.
            candidates = [p for p in paths(spec) if isinstance(p[-1], str) and "query" in p[-1].lower()]
            candidates = [p for p in candidates if isinstance(_get(spec, p), str)]
            if not candidates:
                continue
            path = draw.draw(st.sampled_from(candidates), label="query path")
            _get(spec, path[:-1])[path[-1]] = draw.draw(BAD_PROMQL, label="query")
            done.append(f"bad query at spec.{'.'.join(map(str, path))}")
            continue
        path = draw.draw(st.sampled_from(paths(spec)), label="path")
        *parents, last = path
        parent = _get(spec, tuple(parents))
        if action == "replace":
            parent[last] = draw.draw(NEAR_VALID, label="value")
        elif action == "delete":
            del parent[last]
        elif action == "unknown-field" and isinstance(parent, dict):
            parent[f"{last}Typo"] = parent[last]
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
        else:
            continue
        done.append(f"{action} spec.{'.'.join(map(str, path))}")
        if not paths(spec):
            break
    return done


def verdict(objects: client.CustomObjectsApi, namespace: str, plural: str, name: str) -> dict[str, Any]:
    """Wait until the operator has evaluated the stored object's current generation; return the object."""

    def evaluated() -> dict[str, Any] | None:
        obj: dict[str, Any] = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        status = obj.get("status") or {}
        return obj if status.get("observedGeneration") == obj["metadata"]["generation"] else None

    return wait_for(evaluated, timeout=60, interval=0.1, what=f"operator verdict on {plural}/{name}")


def test_fuzzed_documents_are_rejected_or_judged_naming_the_field(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess, report: Report
) -> None:
    objects = client.CustomObjectsApi(kube)
    counts: Counter[str] = Counter()
    started = time.monotonic()

    @settings(
        max_examples=EXAMPLE_COUNT,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate),  # no shrinking against a real apiserver: it would take long
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(draw=st.data())
    def one_document(draw: st.DataObject) -> None:
        document = copy.deepcopy(draw.draw(st.sampled_from(EXAMPLES), label="example"))
        kind = by_kind(document["kind"])
        mutations = mutate(document["spec"], draw)
        counts["tried"] += 1
        name = f"fuzz-{counts['tried']}"
        document["metadata"] = {"name": name}
        sent_model, _ = validate_spec(kind.spec, document["spec"])
        try:
            objects.create_namespaced_custom_object(
                GROUP, VERSION, namespace, kind.plural, document, field_validation="Strict"
            )
        except ApiException as exc:
            assert exc.status in (400, 422), (exc.status, exc.body)
            counts["rejected at admission"] += 1
            # What the apiserver rejects, the operator's own validation (used by `validate`) rejects too.
            assert sent_model is None, f"apiserver rejected a spec the models accept: {mutations}: {exc.body}"
            return
        try:
            stored = verdict(objects, namespace, kind.plural, name)
            model, errors = validate_spec(kind.spec, stored["spec"])
            invalid = next(c for c in stored["status"]["conditions"] if c["type"] == "InvalidSpec")
            if model is None:
                counts["accepted, then InvalidSpec"] += 1
                assert invalid["status"] == "True", (mutations, invalid)
                assert invalid["message"] == summary(errors), (mutations, invalid)
                for error in errors[:5]:
                    assert error.path in invalid["message"]
            else:
                counts["valid"] += 1
                assert invalid["status"] == "False", (mutations, invalid)
            assert operator.alive(), operator.log_tail()
        finally:
            objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, kind.plural, name)

    one_document()
    assert operator.alive(), operator.log_tail()
    assert "Traceback" not in operator.log_file.read_text(), operator.log_tail()
    elapsed = time.monotonic() - started
    report.numbers["fuzzed documents"] = dict(counts)
    report.fault(
        f"{counts['tried']} fuzzed DetectionPolicy/ModelRoute documents (valid and near-valid)",
        "rejected at admission, or stored and judged as the models judge it (InvalidSpec naming each field)",
        f"{counts['rejected at admission']} rejected at admission, {counts['accepted, then InvalidSpec']} "
        f"accepted then InvalidSpec naming the field, {counts['valid']} valid; operator alive, no traceback "
        f"({elapsed:.0f} s)",
    )
