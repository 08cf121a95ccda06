"""Observability end to end: /healthz, /readyz and /metrics of the real operator, JSON logs, and the
Grafana dashboard, whose every query is parsed by the real Prometheus and whose key panels return series
once that Prometheus scrapes the operator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_testing.exporter import MetricExporter
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.ports import free_port
from detection_testing.prometheus import PrometheusServer
from detection_testing.receiver import WebhookReceiver

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts/detection-operator/dashboards/detection-operator.json"
POLICY, ROUTE = "detector", "classifier"
MODELS = ("nw-a", "nw-b")
KEY_PANELS = (
    "Profile timeline per policy",
    "Active model per route",
    "Model health score per route",
    "Contributor expense",
    "Switches",
    "Evaluations by result",
    "Evaluation duration p95",
    "Decision to ConfigMap p95",
    "Prometheus query duration p95",
    "Leader and objects",
    "Alerts sent and failed",
)
"""Panels that must show data for a policy that switched and a route alerting to two receivers."""


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def substitute(expr: str, namespace: str = ".*") -> str:
    """Grafana's variables as Grafana would expand them."""
    return expr.replace("$__rate_interval", "30s").replace("$namespace", namespace)


def policy() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DetectionPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "interval": "1s",
            "defaultProfile": "balanced",
            "minDwell": "1s",
            "profiles": [
                {"name": "lean", "latencyTargetMs": 50, "contributors": ["rules"]},
                {"name": "balanced", "latencyTargetMs": 150, "contributors": ["rules", "llm"]},
            ],
            "rules": [
                {
                    "name": "high-latency",
                    "query": 'max(obs_latency_p95_ms{namespace="$namespace"})',
                    "op": ">",
                    "threshold": 200,
                    "profile": "lean",
                    "reason": "high latency",
                }
            ],
            "contributors": [{"name": "rules", "expense": "light"}, {"name": "llm", "expense": "heavy"}],
        },
    }


def route() -> dict[str, Any]:
    labels = '{namespace="$namespace",model="$model"}'
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelRoute",
        "metadata": {"name": ROUTE},
        "spec": {
            "interval": "1s",
            "window": "30s",
            "models": [{"name": m} for m in MODELS],
            "metrics": [
                # Explicit thresholds: alerts at 0.80 (without them, only below the 0.70 alert default).
                {
                    "name": "accuracy",
                    "query": f"max(obs_accuracy{labels})",
                    "warning": 0.85,
                    "critical": 0.75,
                },
                {"name": "requests", "query": f"max(obs_requests{labels})"},
            ],
            "alerts": {"receivers": ["hook", "down"]},
        },
    }


def test_dashboard_is_well_formed() -> None:
    document = dashboard()
    ids = [p["id"] for p in document["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert variables["namespace"]["includeAll"] and variables["namespace"]["allValue"] == ".*"
    for panel in document["panels"]:
        assert (
            set(panel["gridPos"]) == {"x", "y", "w", "h"}
            and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        )
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"] and target["refId"] and target["datasource"]["uid"] == "${datasource}"
    assert set(KEY_PANELS) <= {p["title"] for p in panels()}


def test_every_dashboard_query_parses_in_prometheus(prometheus: PrometheusServer) -> None:
    variable = dashboard()["templating"]["list"][1]["query"]["query"]
    selector = variable.removeprefix("label_values(").rsplit(",", 1)[0]
    exprs = [substitute(t["expr"]) for p in panels() for t in p["targets"]] + [selector]
    with httpx.Client(timeout=10, trust_env=False) as http:
        for expr in exprs:
            answer = http.get(f"{prometheus.url}/api/v1/query", params={"query": expr})
            assert answer.status_code == 200 and answer.json()["status"] == "success", (expr, answer.text)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hook:
        yield hook


@pytest.fixture
def json_operator(
    cluster: Any,
    crds: list[str],
    namespace: str,
    prometheus: PrometheusServer,
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    receivers = {
        "allowedHosts": ["127.0.0.1"],
        "receivers": [
            {"name": "hook", "type": "webhook", "url": receiver.url + "/hook"},
            # Nothing listens there: every delivery fails, after one attempt.
            {"name": "down", "type": "webhook", "url": f"http://127.0.0.1:{free_port()}/", "attempts": 1},
        ],
    }
    (tmp_path / "receivers.json").write_text(json.dumps(receivers))
    env = {
        "DETECTION_OPERATOR_PROMETHEUS_URL": prometheus.url,
        "DETECTION_OPERATOR_RECEIVERS_FILE": str(tmp_path / "receivers.json"),
    }
    log = tmp_path / "operator.log"
    with OperatorProcess(cluster.kubeconfig, log, [namespace], env, log_format="json") as proc:
        yield proc


@pytest.fixture
def operator_scraper(json_operator: OperatorProcess, tmp_path: Path) -> Iterator[PrometheusServer]:
    """A second real Prometheus that scrapes the operator's /metrics, as the chart's ServiceMonitor does."""
    with PrometheusServer(tmp_path / "scraper", targets=[f"127.0.0.1:{json_operator.http_port}"]) as prom:
        yield prom


def test_metrics_health_and_json_logs_of_the_running_operator(
    json_operator: OperatorProcess,
    operator_scraper: PrometheusServer,
    kube: client.ApiClient,
    exporter: MetricExporter,
    namespace: str,
) -> None:
    with httpx.Client(timeout=10, trust_env=False) as http:
        assert http.get(f"{json_operator.url}/healthz").status_code == 200
        wait_for(lambda: http.get(f"{json_operator.url}/readyz").status_code == 200, what="/readyz")
    exporter.set("obs_latency_p95_ms", 80, {"namespace": namespace})
    for model in MODELS:
        # The active model at warning level (accuracy below 0.85, above critical 0.75): an alert, no failover.
        exporter.set(
            "obs_accuracy", 0.8 if model == MODELS[0] else 0.95, {"namespace": namespace, "model": model}
        )
        exporter.set("obs_requests", 500, {"namespace": namespace, "model": model})
    objects = client.CustomObjectsApi(kube)
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "detectionpolicies", policy())
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelroutes", route())

    def profile() -> str | None:
        status = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "detectionpolicies", POLICY)
        return (status.get("status") or {}).get("profile")

    wait_for(lambda: profile() == "balanced", timeout=60, what="profile balanced")
    exporter.set("obs_latency_p95_ms", 300, {"namespace": namespace})
    wait_for(lambda: profile() == "lean", timeout=60, what="profile lean")

    own = {("namespace", namespace), ("name", POLICY)}
    samples = json_operator.metrics()
    assert samples["detection_operator_leader"][frozenset()] == 1
    assert samples["detection_operator_active_profile"][frozenset({*own, ("profile", "lean")})] == 1
    assert samples["detection_operator_active_profile"][frozenset({*own, ("profile", "balanced")})] == 0
    assert samples["detection_operator_contributor_expense"][frozenset({*own, ("contributor", "llm")})] == 2
    switches = frozenset({*own, ("kind", "DetectionPolicy")})
    assert samples["detection_operator_switches_total"][switches] == 1
    ok = frozenset({("kind", "DetectionPolicy"), ("result", "ok")})
    assert samples["detection_operator_evaluations_total"][ok] > 0

    def delivered() -> bool:
        current = json_operator.metrics()
        sent = current.get("detection_operator_alerts_sent_total", {}).get(
            frozenset({("receiver", "hook")}), 0
        )
        failed = current.get("detection_operator_alerts_failed_total", {})
        return sent >= 1 and failed.get(frozenset({("receiver", "down")}), 0) >= 1

    wait_for(delivered, timeout=60, what="one alert delivered to hook and one failed to down")

    # The key panels show data once Prometheus has scraped the operator.
    by_title = {p["title"]: p for p in panels()}
    for title in KEY_PANELS:
        expr = substitute(by_title[title]["targets"][0]["expr"], namespace)
        wait_for(lambda e=expr: operator_scraper.query(e), timeout=90, what=f"series for panel {title!r}")  # type: ignore[misc]

    # A deleted object leaves no stale series behind.
    objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, "detectionpolicies", POLICY)

    def policy_series_gone() -> bool:
        current = json_operator.metrics()
        return not any(
            own <= labels
            for name in ("detection_operator_active_profile", "detection_operator_switches_total")
            for labels in current.get(name, {})
        )

    wait_for(policy_series_gone, timeout=30, what="the deleted policy's series to go")

    # One JSON object per line (ours and kopf's); our per-object lines name the object and the replica.
    log = json_operator.log_file.read_text().splitlines()
    lines = [line for line in log if line and not line.startswith("====")]  # OperatorProcess's markers
    not_json = [line for line in lines if not line.startswith("{")]
    assert not not_json, not_json[:5]
    records = [json.loads(line) for line in lines]
    # kopf's per-event success line for the watch handlers is dropped (runtime/handlers.py).
    assert not [r for r in records if r["message"] == "Handler 'track' succeeded."]
    assert [r for r in records if r["message"] == "Handler 'track' is invoked."]  # verbose: it ran
    writes = [r for r in records if r["message"].startswith("applied ConfigMap")]
    assert writes and all(
        r["identity"] == "operator-0" and r["object"]["namespace"] == namespace for r in writes
    )
    assert {r["object"]["name"] for r in writes} == {POLICY, ROUTE}
