"""`detection-operator validate`: check policies and routes before they merge.

Each document is checked against the same pydantic models the CRD schema is generated from (they carry
every CEL rule too), its PromQL templates are linted, and with ``--prometheus`` each rendered query is also
parsed by that server. Errors name file, document, field path and what to change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from pydantic import BaseModel

from ..api.detection_policy import DetectionPolicySpec
from ..api.model_route import ModelRouteSpec
from ..api.validation import validate_spec
from ..decide import policy as policy_plan
from ..decide import route as route_plan
from .documents import Document, read_documents

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True)
class Finding:
    """One problem: where it is and what is wrong."""

    file: str
    document: int
    kind: str
    name: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}#{self.document} {self.kind}/{self.name}: {self.field}: {self.message}"


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


def rendered_queries(spec: BaseModel, namespace: str, name: str) -> dict[str, str]:
    """Field path -> rendered query, for every query the operator would run."""
    if isinstance(spec, DetectionPolicySpec):
        plan: Mapping[tuple[str, ...], str] = policy_plan.query_plan(spec, namespace, name)
        return {_policy_field(spec, key): query for key, query in plan.items()}
    assert isinstance(spec, ModelRouteSpec)
    names: list[str] = [m.name for m in spec.metrics]
    return {
        f"spec.metrics[{names.index(metric)}].query (model {model})": query
        for (_, model, metric), query in route_plan.query_plan(spec, namespace, name).items()
    }


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
    camel = {
        "runtime_ms": "runtimeMs",
        "memory_mb": "memoryMb",
        "cache_hit_ratio": "cacheHitRatio",
        "timeout_rate": "timeoutRate",
        "error_rate": "errorRate",
        "p95_latency_ms": "p95LatencyMs",
        "accuracy": "accuracy",
    }[key[2]]
    section = "expense" if key[0] == "expense" else "externalContributors"
    return f"spec.{section}.queries.{camel} ({key[1]})"


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
    """Validate every DetectionPolicy / ModelRoute document in ``paths``."""
    findings: list[Finding] = []
    checked = skipped = 0
    client = httpx.Client(timeout=5, trust_env=False) if prometheus else None
    try:
        for doc in read_documents(paths):
            kind = doc.kind
            if kind is None:
                skipped += 1
                continue
            checked += 1
            findings += _check(doc, kind.kind, kind.spec, client, prometheus)
    finally:
        if client is not None:
            client.close()
    return Report(checked, skipped, findings)


def _check(
    doc: Document, kind: str, model: type[BaseModel], client: httpx.Client | None, prometheus: str | None
) -> list[Finding]:
    metadata = doc.body.get("metadata") or {}
    name = str(metadata.get("name") or "<unnamed>")

    def finding(field: str, message: str) -> Finding:
        return Finding(doc.source, doc.index, kind, name, field, message)

    found = []
    if not _NAME.match(str(metadata.get("name") or "")):
        found.append(finding("metadata.name", "required: a lowercase DNS name such as 'bot-detector'"))
    spec, errors = validate_spec(model, doc.body.get("spec"))
    found += [finding(e.path, e.message) for e in errors]
    if spec is not None and client is not None and prometheus is not None:
        namespace = str(metadata.get("namespace") or "default")
        for field, query in rendered_queries(spec, namespace, name).items():
            if (problem := check_with_prometheus(client, prometheus, query)) is not None:
                found.append(finding(field, problem))
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
