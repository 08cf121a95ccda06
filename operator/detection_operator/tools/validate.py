"""`detection-operator validate`: check policies and routes before they merge.

Each document is read as kubectl reads it, checked as the apiserver admits it (strict types and ranges,
unknown fields, nulls pruned then defaulted, ObjectMeta rules, the CEL rules' twins), then as the
operator reads it (PromQL lint and template variables per query kind); with ``--prometheus`` each
rendered query is also parsed by that server. Findings name file, document, field path and what to
change, and say whether the apiserver would reject the object or only the operator would.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from pydantic import BaseModel

from ..api.admission import ADMISSION, OPERATOR
from ..api.base import API_VERSION, GROUP
from ..api.detection_policy import CONTRIBUTOR_VARIABLES, DetectionPolicySpec
from ..api.kinds import KINDS, Kind
from ..api.model_route import MODEL_VARIABLES, ModelRouteSpec
from ..api.validation import validate_object
from ..core import promql
from ..decide.kinds import LOGIC
from .documents import Document, parse, read_documents


@dataclass(frozen=True)
class Finding:
    """One problem: where it is and what is wrong."""

    file: str
    document: int
    kind: str
    name: str
    field: str
    message: str
    stage: str = ADMISSION
    """``admission``: the apiserver rejects the object too; ``operator``: it is stored, then InvalidSpec."""

    def __str__(self) -> str:
        what = f" {self.kind}/{self.name}" if self.kind else ""
        field = f" {self.field}:" if self.field else ""
        later = (
            " (admitted by the apiserver; the operator marks it InvalidSpec)"
            if self.stage == OPERATOR
            else ""
        )
        return f"{self.file}#{self.document}{what}:{field} {self.message}{later}"


@dataclass(frozen=True)
class Report:
    """Everything validate found."""

    checked: int
    skipped: int
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        """No findings."""
        return not self.findings


def rendered_queries(kind: str, spec: BaseModel, namespace: str, name: str) -> dict[str, str]:
    """Field path -> rendered query, for every query the operator would run now."""
    plan = LOGIC[kind].windows(spec, namespace, name)[0].plan
    return {_FIELD_OF[kind](spec, key): query for key, query in plan.items()}


def _route_field(spec: ModelRouteSpec, key: tuple[str, ...]) -> str:
    _, model, metric = key
    names: list[str] = [m.name for m in spec.metrics]
    if metric in spec.generated:
        return f"spec.metricsFrom: sdk ({metric}, model {model})"
    return f"spec.metrics[{names.index(metric)}].query (model {model})"


def generated_queries(kind: str, spec: BaseModel) -> dict[str, str]:
    """Metric or dimension -> query template, for every query generated from the SDK catalog."""
    return _GENERATED[kind](spec)


def _route_generated(spec: ModelRouteSpec) -> dict[str, str]:
    return {m.name: m.query for m in spec.catalog if m.name in spec.generated and m.query}


def _policy_generated(spec: DetectionPolicySpec) -> dict[str, str]:
    expense = spec.measured_expense
    sections = {"external": spec.external_queries, "expense": expense.queries if expense else None}
    return {
        f"{_SECTIONS[section]}.queries.{_CAMEL[dim]}": getattr(sections[section], dim)
        for section, dim in sorted(spec.generated)
    }


_GENERATED: dict[str, Callable[[Any], dict[str, str]]] = {
    "DetectionPolicy": _policy_generated,
    "ModelRoute": _route_generated,
}
"""Kind name -> the queries its spec generated from the SDK catalog."""

_VARIABLES = {"DetectionPolicy": CONTRIBUTOR_VARIABLES, "ModelRoute": MODEL_VARIABLES}
"""Kind name -> the placeholders its generated queries may use."""


def _lint_generated(kind: str, spec: BaseModel) -> list[tuple[str, str]]:
    """(field, problem) of generated queries that fail the lint hand-written ones pass (a selector
    with a placeholder this kind does not substitute is caught on sdk.selector already)."""
    return [
        (f"spec.metricsFrom: sdk ({field})", "; ".join(problems))
        for field, query in generated_queries(kind, spec).items()
        if (problems := promql.lint(query, _VARIABLES[kind]))
    ]


def _policy_field(spec: DetectionPolicySpec, key: tuple[str, ...]) -> str:
    if key[0] == "latency":
        return "spec.latency.query"
    if key[0] in ("rule", "samples"):
        index = [r.name for r in spec.rules].index(key[1])
        rule = spec.rules[index]
        if key[0] == "samples":
            return f"spec.rules[{index}].samplesQuery" if rule.samples_query else "spec.samplesQuery"
        if len(key) == 2:
            return f"spec.rules[{index}].query"
        if key[2] == "window":
            return f"spec.rules[{index}].burnRate (errors / total over {key[3]})"
        group = "allOf" if rule.all_of else "anyOf"
        position = [c.name for c in rule.conditions].index(key[3])
        return f"spec.rules[{index}].{group}[{position}].query"
    field = f"{_SECTIONS[key[0]]}.queries.{_CAMEL[key[2]]}"
    if (key[0], key[2]) in spec.generated:
        return f"spec.metricsFrom: sdk ({field}, {key[1]})"
    return f"spec.{field} ({key[1]})"


_SECTIONS = {"expense": "expense", "external": "externalContributors"}
_CAMEL = {
    "runtime_ms": "runtimeMs",
    "memory_mb": "memoryMb",
    "cache_hit_ratio": "cacheHitRatio",
    "timeout_rate": "timeoutRate",
    "error_rate": "errorRate",
    "p95_latency_ms": "p95LatencyMs",
    "accuracy": "accuracy",
}


_FIELD_OF: dict[str, Callable[[Any, tuple[str, ...]], str]] = {
    "DetectionPolicy": _policy_field,
    "ModelRoute": _route_field,
}
"""Kind name -> the spec field a query key comes from."""


def check_with_prometheus(client: httpx.Client, url: str, query: str) -> str | None:
    """Ask Prometheus to parse (and run) the query; return its error, or None if it accepts it."""
    try:
        response = client.get(f"{url.rstrip('/')}/api/v1/query", params={"query": query, "time": "0"})
    except httpx.HTTPError as exc:
        return f"could not reach Prometheus: {type(exc).__name__}"
    if response.status_code == 400:
        return f"Prometheus rejects it: {response.json().get('error', response.text)}"
    return None


def validate(paths: list[str], prometheus: str | None = None) -> Report:
    """Validate every DetectionPolicy / ModelRoute document in ``paths``.

    Raises :class:`~.documents.ReadError` only when a path cannot be read; everything else, however
    broken, is a finding.
    """
    return _judge(read_documents(paths), prometheus)


def validate_text(text: str | bytes, source: str = "<text>", prometheus: str | None = None) -> Report:
    """Validate the manifests in ``text``, exactly as if a file held them."""
    return _judge(list(parse(source, text.encode() if isinstance(text, str) else text)), prometheus)


def _judge(documents: list[Document], prometheus: str | None) -> Report:
    findings: list[Finding] = []
    checked = skipped = 0
    client = httpx.Client(timeout=5, trust_env=False) if prometheus else None
    try:
        for doc in documents:
            found = _check_document(doc, client, prometheus)
            if found is None:
                skipped += 1
                continue
            checked += 1
            findings += found
    finally:
        if client is not None:
            client.close()
    return Report(checked, skipped, findings)


def _check_document(
    doc: Document, client: httpx.Client | None, prometheus: str | None
) -> list[Finding] | None:
    """The findings of one document; None when it is somebody else's object (skipped)."""

    def problem(message: str, field: str = "", kind: str = "", name: str = "") -> list[Finding]:
        return [Finding(doc.source, doc.index, kind, name, field, message, ADMISSION)]

    if doc.problem is not None:
        return problem(doc.problem)
    body = doc.body
    if not isinstance(body, dict):
        return problem(f"not a Kubernetes object: the document is {_a(body)}, not a mapping")
    if "apiVersion" not in body and "kind" not in body:
        return None  # not a manifest at all (a values file, a kustomize patch): nothing to say
    api_version, kind_name = body.get("apiVersion"), body.get("kind")
    for field, value in (("apiVersion", api_version), ("kind", kind_name)):
        if not isinstance(value, str) or not value:
            return problem(f"Required value: a non-empty string, not {_a(value)}", field)
    assert isinstance(api_version, str) and isinstance(kind_name, str)
    ours = {k.kind: k for k in KINDS}
    group = api_version.rpartition("/")[0]
    if group != GROUP:
        if kind_name in ours:
            return problem(
                f"{kind_name} is served as apiVersion {API_VERSION}, not {api_version}",
                "apiVersion",
                kind_name,
            )
        return None
    if api_version != API_VERSION:
        return problem(
            f"no version {api_version.rpartition('/')[2]!r} in {GROUP}: use {API_VERSION}",
            "apiVersion",
            kind_name,
        )
    if kind_name not in ours:
        close = difflib.get_close_matches(kind_name, ours, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        return problem(
            f"no kind {kind_name!r} in {API_VERSION}: {hint}expected one of {', '.join(ours)}",
            "kind",
            kind_name,
        )
    return _check(doc, ours[kind_name], client, prometheus)


def _a(value: object) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _check(doc: Document, kind: Kind, client: httpx.Client | None, prometheus: str | None) -> list[Finding]:
    body: dict[str, Any] = doc.body
    metadata = body.get("metadata")
    raw_name = metadata.get("name") if isinstance(metadata, dict) else None
    name = raw_name if isinstance(raw_name, str) and raw_name else "<unnamed>"
    spec, errors = validate_object(kind.spec, kind.status, body)
    found = [Finding(doc.source, doc.index, kind.kind, name, e.path, e.message, e.stage) for e in errors]
    if spec is not None:
        found += [
            Finding(doc.source, doc.index, kind.kind, name, field, problem, OPERATOR)
            for field, problem in _lint_generated(kind.kind, spec)
        ]
    if spec is not None and client is not None and prometheus is not None and not errors:
        raw_namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
        namespace = raw_namespace if isinstance(raw_namespace, str) and raw_namespace else "default"
        for field, query in rendered_queries(kind.kind, spec, namespace, name).items():
            if (problem := check_with_prometheus(client, prometheus, query)) is not None:
                found.append(Finding(doc.source, doc.index, kind.kind, name, field, problem, OPERATOR))
    return found


def render(report: Report, output: str) -> str:
    """The report as text (one line per finding) or JSON (for CI bots)."""
    if output == "json":
        body: dict[str, Any] = {
            "ok": report.ok,
            "checked": report.checked,
            "skipped": report.skipped,
            "findings": [asdict(f) for f in report.findings],
        }
        return json.dumps(body, indent=2)
    lines = [str(f) for f in report.findings]
    verdict = "valid" if report.ok else f"{len(report.findings)} problem(s)"
    lines.append(f"{report.checked} object(s) checked, {report.skipped} other document(s) skipped: {verdict}")
    return "\n".join(lines)
