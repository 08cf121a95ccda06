"""`metricsFrom: sdk`: queries generated from the SDK metric catalog, explicit ones winning field by field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from detection_operator.api import sdk_catalog
from detection_operator.api.detection_policy import CONTRIBUTOR_VARIABLES, DetectionPolicySpec
from detection_operator.api.model_route import MODEL_VARIABLES, MetricName, ModelRouteSpec
from detection_operator.api.validation import validate_spec
from detection_operator.core import promql
from detection_operator.decide import policy as policy_plan
from detection_operator.decide import route as route_plan
from detection_operator.tools import validate

REPO = Path(__file__).resolve().parents[2]
SDK_ROUTE = yaml.safe_load((REPO / "examples/model-route-sdk.yaml").read_text())
POLICY = yaml.safe_load((REPO / "examples/detection-policy.yaml").read_text())
ROUTE_METRICS = list(get_args(MetricName))


def route(**spec: Any) -> ModelRouteSpec:
    return ModelRouteSpec.model_validate({"models": [{"name": "a"}, {"name": "b"}], **spec})


def test_a_route_with_metrics_from_sdk_needs_no_query() -> None:
    spec = route(metricsFrom="sdk")
    assert [m.name for m in spec.catalog] == ROUTE_METRICS
    assert spec.generated == frozenset(ROUTE_METRICS)
    plan = route_plan.query_plan(spec, "team-a", "r")
    assert len(plan) == 2 * len(ROUTE_METRICS)
    requests = plan[("model", "b", "requests")]
    assert requests == (
        'sum(increase(neuroweaver_requests_total{model="b",namespace="team-a"}[10m])) '
        'and count(neuroweaver_requests_total{model="b",namespace="team-a"})'
    )
    assert "$" not in "".join(plan.values())


def test_explicit_queries_and_thresholds_win_metric_by_metric() -> None:
    spec = route(
        metricsFrom="sdk",
        metrics=[
            {"name": "latencyP95Ms", "warning": 1500, "critical": 3000},
            {"name": "accuracy", "query": 'avg(my_accuracy{model="$model"})'},
        ],
    )
    by_name = {m.name: m for m in spec.catalog}
    assert by_name["latencyP95Ms"].thresholds == (1500, 3000)
    assert (
        by_name["latencyP95Ms"].query
        == sdk_catalog.route_queries(sdk_catalog.DEFAULT_SELECTOR)["latencyP95Ms"]
    )
    assert by_name["accuracy"].query == 'avg(my_accuracy{model="$model"})'
    assert "accuracy" not in spec.generated and "latencyP95Ms" in spec.generated
    assert sorted(by_name) == sorted(ROUTE_METRICS)


def test_explicit_routes_are_unchanged() -> None:
    doc = yaml.safe_load((REPO / "examples/model-route.yaml").read_text())
    spec = ModelRouteSpec.model_validate(doc["spec"])
    assert spec.catalog == tuple(spec.metrics) and spec.generated == frozenset()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"metrics": []}, "metrics must not be empty unless metricsFrom is sdk"),
        ({"metrics": [{"name": "requests"}]}, "every metric needs a query unless metricsFrom is sdk"),
    ],
)
def test_without_sdk_every_metric_needs_its_query(spec: dict[str, Any], message: str) -> None:
    _, errors = validate_spec(ModelRouteSpec, {"models": [{"name": "a"}], "minRequests": 0, **spec})
    assert [(e.path, e.message) for e in errors] == [("spec.metrics", message)]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", '{model="$model"}'),
        ('cluster="prod", namespace=~"team-.*"', '{model="$model",cluster="prod", namespace=~"team-.*"}'),
    ],
)
def test_the_selector_is_added_to_every_generated_query(selector: str, expected: str) -> None:
    spec = route(metricsFrom="sdk", sdk={"selector": selector})
    memory = next(m for m in spec.catalog if m.name == "memoryMb")
    assert memory.query == f"max(neuroweaver_memory_bytes{expected}) / 1e6"


@pytest.mark.parametrize(
    ("selector", "stage"),
    [
        ('namespace="$namespace', "admission"),
        ("namespace=$namespace", "admission"),
        ('a="$policy"', "operator"),
    ],
)
def test_a_bad_selector_is_rejected_naming_the_field(selector: str, stage: str) -> None:
    _, errors = validate_spec(
        ModelRouteSpec, {"models": [{"name": "a"}], "metricsFrom": "sdk", "sdk": {"selector": selector}}
    )
    assert [(e.path, e.stage) for e in errors] == [
        ("spec.sdk.selector" if stage == "admission" else "spec.sdk", stage)
    ]


@pytest.mark.parametrize("selector", ["", sdk_catalog.DEFAULT_SELECTOR, 'a="x",b!~"y|z"'])
def test_every_generated_query_passes_the_lint_of_hand_written_ones(selector: str) -> None:
    for query in sdk_catalog.route_queries(selector).values():
        assert promql.lint(query, MODEL_VARIABLES) == []
    for query in [
        *sdk_catalog.expense_queries(selector).values(),
        *sdk_catalog.external_queries(selector).values(),
    ]:
        assert promql.lint(query, CONTRIBUTOR_VARIABLES) == []


def policy(**changes: Any) -> DetectionPolicySpec:
    spec = {**POLICY["spec"], **changes}
    return DetectionPolicySpec.model_validate(spec)


def test_a_policy_gets_its_expense_and_external_queries_generated_field_by_field() -> None:
    spec = dict(POLICY["spec"])
    spec["expense"] = {
        **spec["expense"],
        "queries": {"cacheHitRatio": POLICY["spec"]["expense"]["queries"]["cacheHitRatio"]},
    }
    spec["externalContributors"] = {
        **spec["externalContributors"],
        "queries": {"accuracy": "max(my_accuracy)"},
    }
    parsed = DetectionPolicySpec.model_validate({**spec, "metricsFrom": "sdk"})
    expense = parsed.measured_expense
    assert expense is not None and expense.light == parsed.expense.light  # type: ignore[union-attr]
    assert expense.queries.cache_hit_ratio == POLICY["spec"]["expense"]["queries"]["cacheHitRatio"]
    assert (
        expense.queries.runtime_ms == sdk_catalog.expense_queries(sdk_catalog.DEFAULT_SELECTOR)["runtime_ms"]
    )
    assert parsed.external_queries.accuracy == "max(my_accuracy)"
    assert "detector_external_errors_total" in (parsed.external_queries.error_rate or "")
    assert parsed.generated == {
        ("expense", "runtime_ms"),
        ("expense", "memory_mb"),
        ("expense", "timeout_rate"),
        ("external", "error_rate"),
        ("external", "p95_latency_ms"),
    }
    plan = policy_plan.query_plan(parsed, "team-a", "p")
    assert plan[("expense", "llm-judge", "timeout_rate")] == (
        '(sum(rate(neuroweaver_requests_total{model="llm-judge",outcome!="success",namespace="team-a"}[5m])) '
        'or vector(0)) / sum(rate(neuroweaver_requests_total{model="llm-judge",namespace="team-a"}[5m]))'
    )
    assert plan[("external", "ip-intel", "p95_latency_ms")].startswith("histogram_quantile(0.95")


def test_a_policy_without_an_expense_section_is_measured_with_the_default_classes() -> None:
    spec = {k: v for k, v in POLICY["spec"].items() if k != "expense"}
    explicit = DetectionPolicySpec.model_validate(spec)
    assert explicit.measured_expense is None and explicit.generated == frozenset()
    sdk = DetectionPolicySpec.model_validate({**spec, "metricsFrom": "sdk"})
    assert sdk.measured_expense is not None and sdk.measured_expense.light.runtime_ms == 5
    assert ("expense", "strict-rules", "runtime_ms") in policy_plan.query_plan(sdk, "ns", "p")


def test_validate_names_generated_queries_and_lints_them() -> None:
    spec = route(metricsFrom="sdk", metrics=[{"name": "requests", "query": 'sum(x{model="$model"})'}])
    fields = validate.rendered_queries("ModelRoute", spec, "ns", "r")
    assert "spec.metrics[0].query (model a)" in fields
    assert "spec.metricsFrom: sdk (latencyP95Ms, model b)" in fields
    generated = policy(metricsFrom="sdk", expense={"queries": {}})
    names = validate.rendered_queries("DetectionPolicy", generated, "ns", "p")
    assert "spec.metricsFrom: sdk (expense.queries.runtimeMs, llm-judge)" in names
    assert "spec.expense.queries.cacheHitRatio (llm-judge)" not in names  # nothing generates it
    assert validate.generated_queries("DetectionPolicy", generated)["expense.queries.memoryMb"].startswith(
        "max(neuroweaver_memory_bytes"
    )


def test_validate_accepts_the_sdk_example() -> None:
    report = validate.validate([str(REPO / "examples/model-route-sdk.yaml")])
    assert report.ok and report.checked == 1
    assert SDK_ROUTE["spec"]["metricsFrom"] == "sdk"


def test_explain_shows_the_generated_queries_and_the_health_band() -> None:
    from detection_operator.tools import explain

    spec = route(metricsFrom="sdk")
    status = {
        "activeModel": "a",
        "state": "Primary",
        "reason": "primary healthy",
        "health": "Good",
        "models": [{"name": "a", "level": "ok", "score": 75.0, "band": "Good", "trend": "stable"}],
    }
    text = explain.render(
        {
            "kind": "ModelRoute",
            "namespace": "ns",
            "name": "r",
            "status": status,
            "published": None,
            "generated": validate.generated_queries("ModelRoute", spec),
        }
    )
    assert "Health: Good" in text and "75     Good" in text
    assert "Queries generated from the SDK catalog (metricsFrom: sdk):" in text
    assert '  memoryMb: max(neuroweaver_memory_bytes{model="$model",namespace="$namespace"}) / 1e6' in text
