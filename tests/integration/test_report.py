"""`detection-operator report` and `explain` on a metricsFrom: sdk route, against the real apiserver,
Prometheus and operator, with model servers serving what a router sends them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_operator.decide.scores import health_band
from detection_testing.exporter import MetricExporter
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.prometheus import PrometheusServer
from detection_testing.router import ModelFleet, Router
from detection_testing.specs import missing_metric_policy, sdk_route
from detection_testing.watched import Watched

REPO = Path(__file__).resolve().parents[2]
NAME = "classifier"
MODELS = ["nw-primary", "nw-backup1", "nw-backup2"]
PRIMARY = MODELS[0]


def cli(*args: str, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    env = {"KUBECONFIG": str(kubeconfig), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run(
        [sys.executable, "-m", "detection_operator", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def report_json(
    namespace: str, prometheus: PrometheusServer, kubeconfig: Path
) -> subprocess.CompletedProcess[str]:
    """`report` of the last minute as JSON."""
    args = ["report", "-n", namespace, "--since", "1m", "--prometheus", prometheus.url, "--output", "json"]
    return cli(*args, kubeconfig=kubeconfig)


@pytest.fixture
def route(
    kube: client.ApiClient, namespace: str, prometheus: PrometheusServer, tmp_path: Path
) -> Iterator[Watched]:
    before = prometheus.targets
    with ModelFleet(MODELS, tmp_path / "models", namespace=namespace, latency_ms=5) as fleet:
        prometheus.set_targets([*before, *fleet.targets])
        # 8 % of the primary's requests fail: success rate 0.92 is a warning (0.95 / 0.90), no failover.
        fleet.control(PRIMARY, errorShare=0.08)
        try:
            with Router(kube, namespace, f"{NAME}-model-route", fleet.endpoints, rate=40):
                yield Watched(kube, namespace, "ModelRoute", NAME, f"{NAME}-model-route")
        finally:
            prometheus.set_targets(before)


def test_report_scores_the_route_and_the_policy_and_says_what_to_do(
    route: Watched, operator: OperatorProcess, prometheus: PrometheusServer, namespace: str, cluster: Any
) -> None:
    route.create(sdk_route(MODELS))
    policy = missing_metric_policy("1s")
    policy["spec"]["rules"][0]["ignoreWhenMissing"] = False  # its metric does not exist: unknown
    route.objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "detectionpolicies", policy)
    primary = wait_for(
        lambda: (
            (m := next(iter(route.status().get("models", [])), None)) and m.get("state") == "warning" and m
        ),
        timeout=60,
        what="primary at warning",
    )
    assert primary["band"] == health_band(primary["score"]) and route.status()["health"] == primary["band"]
    route.evaluations(3)

    kubeconfig = cluster.kubeconfig
    result = report_json(namespace, prometheus, kubeconfig)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (entry,) = report["routes"]
    assert entry["name"] == NAME and entry["state"] == "Primary"
    rows = {m["name"]: m for m in entry["models"]}
    assert 88 <= rows[PRIMARY]["reliability"] <= 95  # 8 % failed, measured over the minute
    # The router retried the failed 8 % on the first fallback: nw-backup1 served them, all of them well.
    assert rows["nw-backup1"]["requests"] > 0 and rows["nw-backup1"]["reliability"] == 100
    assert rows["nw-backup1"]["band"] == "Excellent"
    assert rows["nw-backup2"]["requests"] is None and rows["nw-backup2"]["state"] == "idle"
    # success 0.92 and errors 0.08 score 0.4 of 40 and of 20, latency 1 of 30: about 60.
    assert entry["band"] == "Fair" and entry["band"] == health_band(entry["health"])
    found = {r["rule"]: r for r in entry["recommendations"]}
    assert found["R5"]["subject"] == PRIMARY and "of its requests failed" in found["R5"]["message"]
    assert found["R3"]["subject"] == PRIMARY and "nw-backup1 scored" in found["R3"]["message"]
    (policy_entry,) = report["policies"]
    assert policy_entry["name"] == "p" and policy_entry["band"] == "Poor"  # its one rule is unknown
    assert [r["rule"] for r in policy_entry["recommendations"]][:1] == ["P1"]
    assert report["agents"] == [] and report["unanswered"] == 0

    markdown = cli(
        "report", "-n", namespace, "--since", "1m", "--prometheus", prometheus.url, kubeconfig=kubeconfig
    )
    assert markdown.returncode == 0, markdown.stderr
    assert f"## ModelRoute {NAME}" in markdown.stdout and "| nw-primary |" in markdown.stdout
    assert "R5 nw-primary:" in markdown.stdout

    explained = cli("explain", f"mr/{NAME}", "-n", namespace, kubeconfig=kubeconfig)
    assert explained.returncode == 0, explained.stderr
    assert "Queries generated from the SDK catalog (metricsFrom: sdk):" in explained.stdout
    assert (
        'requests: sum(increase(neuroweaver_requests_total{model="$model",namespace="$namespace"}'
        in explained.stdout
    )
    assert re.search(
        r"^Health: (Excellent|Good|Fair|Poor) \(the active model's band\)$", explained.stdout, re.M
    )


def test_report_errors_are_clear_and_lose_nothing(
    prometheus: PrometheusServer, cluster: Any, crds: list[str], namespace: str
) -> None:
    kubeconfig = cluster.kubeconfig
    empty = cli("report", "-n", namespace, "--prometheus", prometheus.url, kubeconfig=kubeconfig)
    assert (
        empty.returncode == 0 and f"No ModelRoute or DetectionPolicy in namespace {namespace}" in empty.stdout
    )
    cases = [
        (["--since", "10s"], "use at least 1m"),
        (["--since", "1.5h"], "use a duration such as 1h"),
        (["--prometheus", "http://127.0.0.1:9"], "could not reach Prometheus"),
        (["--agent-selector", "namespace=$namespace"], "--agent-selector"),
        (["--agent-selector", 'a="$model"'], "--agent-selector"),
    ]
    for args, message in cases:
        base = ["report", "-n", namespace, "--prometheus", prometheus.url]
        result = cli(*base, *args, kubeconfig=kubeconfig)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, (
            result
        )
    no_url = subprocess.run(
        [sys.executable, "-m", "detection_operator", "report", "-n", namespace],
        capture_output=True,
        text=True,
        timeout=60,
        env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"},
    )
    assert no_url.returncode == 2 and "DETECTION_OPERATOR_PROMETHEUS_URL" in no_url.stderr
    no_cluster = cli("report", "--prometheus", prometheus.url, kubeconfig=Path("/nonexistent/kubeconfig"))
    assert no_cluster.returncode == 2 and "Traceback" not in no_cluster.stderr, no_cluster.stderr


def test_prometheus_parses_every_generated_query(prometheus: PrometheusServer, tmp_path: Path) -> None:
    policy = yaml.safe_load((REPO / "examples/detection-policy.yaml").read_text())
    policy["spec"]["metricsFrom"] = "sdk"
    del policy["spec"]["expense"]["queries"], policy["spec"]["externalContributors"]["queries"]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "detection_operator",
            "validate",
            str(path),
            str(REPO / "examples/model-route-sdk.yaml"),
            "--prometheus",
            prometheus.url,
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout)["checked"] == 2


AGENTS = {
    # name: (success share, seconds per run, cost per run, accuracy by source)
    "triage": (1.0, 0.04, 0.001, {"web": 0.97, "api": 0.62}),
    "summarize": (0.9, 0.4, 0.004, {"web": 0.9, "api": 0.9}),
}


def _record_runs(exporter: MetricExporter, namespace: str, runs: int) -> None:
    """What the SDK's PerformanceMonitor exports for ``runs`` runs of each agent (counters only grow)."""
    for name, (success, seconds, cost, accuracy) in AGENTS.items():
        labels = {"namespace": namespace, "model": name, "kind": "agent"}
        ok = round(runs * success)
        exporter.inc("neuroweaver_requests_total", ok, {**labels, "outcome": "success"})
        exporter.inc("neuroweaver_requests_total", runs - ok, {**labels, "outcome": "error"})
        for le in ("0.05", "0.5", "+Inf"):
            within = runs if le == "+Inf" or seconds <= float(le) else 0
            exporter.inc("neuroweaver_request_duration_seconds_bucket", within, {**labels, "le": le})
        exporter.inc("neuroweaver_request_duration_seconds_count", runs, labels)
        exporter.inc("neuroweaver_request_duration_seconds_sum", runs * seconds, labels)
        exporter.inc("neuroweaver_cost_total", runs * cost, labels)
        for source, share in accuracy.items():
            exporter.inc("neuroweaver_accuracy_score_sum", runs * share, {**labels, "source": source})
            exporter.inc("neuroweaver_accuracy_score_count", runs, {**labels, "source": source})


def test_report_scores_agents_from_the_sdk_catalog(
    exporter: MetricExporter, prometheus: PrometheusServer, cluster: Any, crds: list[str], namespace: str
) -> None:
    stop = threading.Event()

    def feed() -> None:
        while not stop.wait(0.5):
            _record_runs(exporter, namespace, 10)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        served = f'sum(neuroweaver_requests_total{{namespace="{namespace}",kind="agent"}})'
        wait_for(
            lambda: (s := prometheus.query(served)) and s[0].value > 300, timeout=30, what="runs scraped"
        )
        result = report_json(namespace, prometheus, cluster.kubeconfig)
    finally:
        stop.set()
        feeder.join()
    assert result.returncode == 0, result.stderr
    agents = {a["name"]: a for a in json.loads(result.stdout)["agents"]}
    assert set(agents) == set(AGENTS)
    triage, summarize = agents["triage"], agents["summarize"]
    assert triage["reliability"] == 100 and 85 <= summarize["reliability"] <= 95
    # triage: 10x faster p95 and 4x cheaper, so the best on both dimensions it recorded.
    assert triage["efficiency"] == 100 and summarize["efficiency"] < 30
    assert (triage["bestSource"], triage["worstSource"]) == ("web", "api")
    assert 30 <= triage["specialization"] <= 40 and summarize["specialization"] == 0
    assert triage["band"] == health_band(triage["health"])
