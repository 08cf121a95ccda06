"""validate, backtest and explain against the real apiserver, Prometheus and operator.

The agreement test runs the operator live on a recorded scenario, then replays the same policy over the
same Prometheus data with `backtest`: both must make the same switches.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_testing.exporter import MetricExporter
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.prometheus import PrometheusServer

QUERY = 'max(gitops_{}{{namespace="$namespace"}})'


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "detection_operator", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def policy(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DetectionPolicy",
        "metadata": {"name": "replayed", "namespace": namespace},
        "spec": {
            "interval": "1s",
            "defaultProfile": "balanced",
            "holdFor": "30s",
            "stabilizationWindow": "2s",
            "minDwell": "0s",
            "profiles": [{"name": "lean"}, {"name": "balanced"}, {"name": "paranoid"}],
            "rules": [
                {
                    "name": "latency",
                    "query": QUERY.format("latency"),
                    "op": ">",
                    "threshold": 200,
                    "profile": "lean",
                    "reason": "high latency",
                },
                {
                    "name": "surge",
                    "query": QUERY.format("flagged"),
                    "op": ">",
                    "threshold": 0.2,
                    "profile": "paranoid",
                    "reason": "bot surge",
                },
            ],
        },
    }


def test_validate_with_prometheus_rejects_what_the_server_rejects(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    doc = policy("default")
    doc["spec"]["rules"][0]["query"] = (
        'max_over_time(gitops_latency{namespace="$namespace"})'  # needs a range
    )
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(doc))
    offline = cli("validate", str(path))
    assert offline.returncode == 0, offline.stdout  # brackets balance: only Prometheus knows the type error
    online = cli("validate", str(path), "--prometheus", prometheus.url, "--output", "json")
    assert online.returncode == 1
    report = json.loads(online.stdout)
    assert report["findings"][0]["field"] == "spec.rules[0].query"
    assert "Prometheus rejects it" in report["findings"][0]["message"]


def test_backtest_agrees_with_the_live_operator_and_explain_reads_it(
    kube: client.ApiClient,
    cluster: Any,
    namespace: str,
    exporter: MetricExporter,
    prometheus: PrometheusServer,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    def metrics(latency: float, flagged: float) -> None:
        exporter.set("gitops_latency", latency, {"namespace": namespace})
        exporter.set("gitops_flagged", flagged, {"namespace": namespace})

    metrics(80, 0.05)
    prometheus.wait_for_series(f'gitops_latency{{namespace="{namespace}"}}')
    objects = client.CustomObjectsApi(kube)
    body = policy(namespace)
    start = time.time()
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "detectionpolicies", body)

    def status() -> dict[str, Any]:
        obj = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "detectionpolicies", "replayed")
        return dict(obj.get("status") or {})

    def history() -> list[str]:
        return [h["to"] for h in status().get("history", [])]

    def plateau(evaluations: int = 3) -> None:
        """Let the operator evaluate a few more times at the current values (the scenario's shape)."""
        for _ in range(evaluations):
            seen = status().get("lastEvaluated", "")
            wait_for(lambda s=seen: status().get("lastEvaluated", "") > s, timeout=15, what="an evaluation")

    scenario = [
        ((300, 0.05), "lean"),
        ((80, 0.05), "balanced"),
        ((80, 0.5), "paranoid"),
        ((80, 0.05), "balanced"),
    ]
    wait_for(lambda: history() == ["balanced"], timeout=20, what="first decision")
    for values, expected in scenario:
        plateau()
        metrics(*values)
        wait_for(lambda e=expected: history()[-1:] == [e], timeout=20, what=f"live switch to {expected}")
    plateau()
    end = time.time()
    live = history()
    assert live == ["balanced", "lean", "balanced", "paranoid", "balanced"]

    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(body))
    since = f"{int(end - start) + 1}s"

    def backtest(*extra: str) -> subprocess.CompletedProcess[str]:
        """The same replay window as the live run, at a 1 s step."""
        window = ["--since", since, "--until", f"{end:.0f}", "--step", "1s"]
        return cli("backtest", str(path), "--prometheus", prometheus.url, *window, *extra)

    result = backtest("--output", "json")
    assert result.returncode == 0, result.stderr
    timeline = json.loads(result.stdout)
    assert [s["current"] for s in timeline["switches"]] == live
    assert timeline["evaluations"] >= int(end - start)

    csv_out = backtest("--output", "csv")
    assert csv_out.stdout.splitlines()[0] == "at,from,to,reason" and len(csv_out.stdout.splitlines()) == 6

    stricter = dict(body, spec=dict(body["spec"], rules=body["spec"]["rules"][1:]))  # drop the latency rule
    old_path = tmp_path / "old.yaml"
    old_path.write_text(yaml.safe_dump(stricter))
    diff = backtest("--against", str(old_path))
    assert diff.returncode == 0, diff.stderr
    assert "Switches: 3 -> 5" in diff.stdout and "+" in diff.stdout and "lean" in diff.stdout

    env = {"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin"}
    explained = cli("explain", "dp/replayed", "-n", namespace, env=env)
    assert explained.returncode == 0, explained.stderr
    assert "Profile: balanced" in explained.stdout and "latency" in explained.stdout
    as_json = json.loads(cli("explain", "dp/replayed", "-n", namespace, "--output", "json", env=env).stdout)
    assert as_json["status"]["profile"] == "balanced"
    assert cli("explain", "pods/x", "-n", namespace, env=env).returncode == 2
