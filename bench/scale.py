"""Scale: N DetectionPolicies and ModelRoutes at a 10 s interval in one operator process.

Objects are added in steps (500, 1,000, 2,000, 3,000 by default); at each step the benchmark waits until
every object has been evaluated, lets the operator settle, then measures a window: evaluations per second
achieved against N / interval, schedule lag p50/p95 (from the operator's own histogram), operator CPU
(cores) and RSS from /proc, the query rate the operator sends and Prometheus serves, and what the
apiserver itself counts: status PATCHes and the watch traffic they cause (a py-spy profile of a loaded
machine misplaced samples there; counters do not).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from detection_operator.api.base import GROUP, VERSION
from detection_operator.api.kinds import KINDS
from detection_testing.charts import kubectl_binary
from detection_testing.exporter import MetricExporter
from detection_testing.operator_process import OperatorProcess

from .harness import real_stack

INTERVAL_S = 10
PER_NAMESPACE = 20
"""Objects per namespace: they share their `$namespace` queries, as teams' policies in one namespace do."""
ROUTE_SHARE = 5
"""Every fifth object is a ModelRoute."""
CONTRIBUTORS = ("strict-rules", "ua-heuristics", "ip-reputation", "asn-geo", "header-sanity", "llm-judge")
MODELS = ("primary", "backup1", "backup2")

PLURALS = tuple(kind.plural for kind in KINDS)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _policy(name: str) -> dict[str, Any]:
    ns = '{namespace="$namespace"}'
    rules = [
        ("latency", f"max(scale_latency_ms{ns})", ">", 200.0, "lean"),
        ("cpu", f"max(scale_cpu_ratio{ns})", ">", 0.8, "lean"),
        ("surge", f"max(scale_flagged_ratio{ns})", ">", 0.2, "paranoid"),
    ]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DetectionPolicy",
        "metadata": {"name": name},
        "spec": {
            "interval": f"{INTERVAL_S}s",
            "defaultProfile": "balanced",
            "profiles": [
                {"name": "lean", "contributors": list(CONTRIBUTORS[:2])},
                {"name": "balanced", "contributors": list(CONTRIBUTORS[:5])},
                {"name": "paranoid", "contributors": list(CONTRIBUTORS)},
            ],
            "rules": [
                {"name": n, "query": q, "op": op, "threshold": t, "profile": p, "reason": n}
                for n, q, op, t, p in rules
            ],
            "contributors": [{"name": c, "expense": "light"} for c in CONTRIBUTORS],
            "expense": {
                "queries": {
                    "runtimeMs": 'max(scale_contributor_ms{contributor="$contributor"})',
                    "memoryMb": 'max(scale_contributor_mb{contributor="$contributor"})',
                    "timeoutRate": 'max(scale_contributor_timeouts{contributor="$contributor"})',
                }
            },
        },
    }


def _route(name: str) -> dict[str, Any]:
    labels = '{namespace="$namespace",model="$model"}'
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelRoute",
        "metadata": {"name": name},
        "spec": {
            "interval": f"{INTERVAL_S}s",
            "models": [{"name": m} for m in MODELS],
            "metrics": [
                {"name": "accuracy", "query": f"max(scale_model_accuracy{labels})"},
                {"name": "successRate", "query": f"max(scale_model_success{labels})"},
                {"name": "requests", "query": f"max(scale_model_requests{labels})"},
            ],
        },
    }


def _feed(exporter: MetricExporter, namespace: str) -> None:
    """Healthy, steady metrics for one namespace: no switches, so the benchmark measures steady state."""
    steady = {"scale_latency_ms": 90.0, "scale_cpu_ratio": 0.4, "scale_flagged_ratio": 0.05}
    for metric, value in steady.items():
        exporter.set(metric, value, {"namespace": namespace})
    for model in MODELS:
        labels = {"namespace": namespace, "model": model}
        exporter.set("scale_model_accuracy", 0.95, labels)
        exporter.set("scale_model_success", 0.99, labels)
        exporter.set("scale_model_requests", 1000.0, labels)


def feed_contributors(exporter: MetricExporter) -> None:
    for contributor in CONTRIBUTORS:
        exporter.set("scale_contributor_ms", 3.0, {"contributor": contributor})
        exporter.set("scale_contributor_mb", 40.0, {"contributor": contributor})
        exporter.set("scale_contributor_timeouts", 0.001, {"contributor": contributor})


def _scrape(url: str) -> Samples:
    with httpx.Client(timeout=10, trust_env=False) as http:
        return _parse(http.get(url).text)


def _scrape_apiserver(kubeconfig: Path) -> Samples:
    """The apiserver's own /metrics, read as the admin (it needs a client certificate)."""
    argv = [str(kubectl_binary()), "--kubeconfig", str(kubeconfig), "get", "--raw", "/metrics"]
    return _parse(subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout)


def _parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _total(samples: Samples, name: str, **match: str) -> float:
    return sum(
        v
        for (n, labels), v in samples.items()
        if n == name and all(dict(labels).get(k) == want for k, want in match.items())
    )


def _histogram_quantile(before: Samples, after: Samples, name: str, q: float) -> float:
    """Quantile of the observations made between two scrapes, interpolated within buckets."""
    buckets: dict[float, float] = {}
    for (n, labels), v in after.items():
        if n == f"{name}_bucket":
            le = float(dict(labels)["le"])
            buckets[le] = buckets.get(le, 0.0) + v - before.get((n, labels), 0.0)
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return float("nan")
    rank, lower, below = q * ordered[-1][1], 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = le, count
    return lower


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass(frozen=True)
class Config:
    """Operator settings a scale run uses."""

    label: str
    coalesce_seconds: float
    status_refresh_seconds: float
    batch: int = 32
    """Queries to a request at most (DETECTION_OPERATOR_QUERY_BATCH)."""

    def env(self) -> dict[str, str]:
        """The operator's environment for these settings."""
        return {
            "DETECTION_OPERATOR_QUERY_COALESCE_SECONDS": str(self.coalesce_seconds),
            "DETECTION_OPERATOR_STATUS_REFRESH_SECONDS": str(self.status_refresh_seconds),
            "DETECTION_OPERATOR_QUERY_BATCH": str(self.batch),
            "DETECTION_OPERATOR_LEADER_ELECTION": "false",
        }


UNTUNED = Config("no coalescing, status every evaluation", 0, 0)
COALESCED = Config("coalescing 1 s, status every evaluation (defaults)", 1, 0)
TUNED = Config("coalescing 1 s, status refresh 60 s", 1, 60)
ONE_PER_REQUEST = Config("coalescing 1 s, status refresh 60 s, one query per request", 1, 60, batch=1)


@dataclass(frozen=True)
class Step:
    """What one scale step measured."""

    objects: int
    config: str
    achieved_per_s: float
    expected_per_s: float
    lag_p50_s: float
    lag_p95_s: float
    operator_cores: float
    operator_rss_mb: float
    queries_asked_per_s: float
    queries_served_per_s: float
    apiserver_etcd_cores: float
    status_writes_per_s: float
    """Status PATCHes of our kinds, as the apiserver counted them."""
    watch_kb_per_s: float
    """Watch events of our kinds the apiserver sent, in KB/s (every replica's watch counts)."""

    def row(self) -> str:
        """A RESULTS.md table row."""
        return (
            f"| {self.objects} | {self.config} | {self.achieved_per_s:.1f} / "
            f"{self.expected_per_s:.1f} | {self.lag_p50_s * 1e3:.0f} ms | {self.lag_p95_s * 1e3:.0f} ms | "
            f"{self.operator_cores:.2f} | {self.operator_rss_mb:.0f} MB | {self.queries_asked_per_s:.0f} | "
            f"{self.queries_served_per_s:.0f} | {self.apiserver_etcd_cores:.2f} | "
            f"{self.status_writes_per_s:.1f} | {self.watch_kb_per_s:.0f} |"
        )


def create(api: client.ApiClient, exporter: MetricExporter, start: int, stop: int) -> None:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    for index in range(start, stop):
        namespace = f"scale-{index // PER_NAMESPACE}"
        if index % PER_NAMESPACE == 0:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
            _feed(exporter, namespace)
        if index % ROUTE_SHARE == ROUTE_SHARE - 1:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "modelroutes", _route(f"r{index}")
            )
        else:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "detectionpolicies", _policy(f"p{index}")
            )


def _evaluated(api: client.ApiClient) -> int:
    custom = client.CustomObjectsApi(api)
    count = 0
    for plural in PLURALS:
        items = custom.list_cluster_custom_object(GROUP, VERSION, plural)["items"]
        count += sum(1 for item in items if (item.get("status") or {}).get("lastEvaluated"))
    return count


def wait_evaluated(api: client.ApiClient, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (done := _evaluated(api)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {done} of {n} objects evaluated after {timeout:.0f}s")
        time.sleep(2)


def _pids_cpu(pids: Iterable[int]) -> float:
    return sum(_cpu_seconds(pid) for pid in pids)


def _measure(
    operator: OperatorProcess,
    prometheus_metrics_url: str,
    kubeconfig: Path,
    control_pids: Mapping[str, int],
    objects: int,
    config: Config,
    window: float,
) -> Step:
    pid = operator.pid
    assert pid is not None
    metrics_url = f"http://127.0.0.1:{operator.http_port}/metrics"
    planes = [control_pids[name] for name in ("kube-apiserver", "etcd") if name in control_pids]
    before, served_before = _scrape(metrics_url), _scrape(prometheus_metrics_url)
    kube_before = _scrape_apiserver(kubeconfig)
    cpu_before, planes_before, started = _cpu_seconds(pid), _pids_cpu(planes), time.monotonic()
    time.sleep(window)  # a measurement window, not a wait for a condition
    after, served_after = _scrape(metrics_url), _scrape(prometheus_metrics_url)
    kube_after = _scrape_apiserver(kubeconfig)
    elapsed = time.monotonic() - started
    cpu, planes_cpu = _cpu_seconds(pid) - cpu_before, _pids_cpu(planes) - planes_before

    def rate(samples_after: Samples, samples_before: Samples, name: str, **match: str) -> float:
        return (_total(samples_after, name, **match) - _total(samples_before, name, **match)) / elapsed

    return Step(
        objects=objects,
        config=config.label,
        achieved_per_s=rate(after, before, "detection_operator_evaluations_total"),
        expected_per_s=objects / INTERVAL_S,
        lag_p50_s=_histogram_quantile(before, after, "detection_operator_schedule_lag_seconds", 0.5),
        lag_p95_s=_histogram_quantile(before, after, "detection_operator_schedule_lag_seconds", 0.95),
        operator_cores=cpu / elapsed,
        operator_rss_mb=_rss_mb(pid),
        queries_asked_per_s=rate(after, before, "detection_operator_prometheus_query_duration_seconds_count")
        + rate(after, before, "detection_operator_prometheus_queries_coalesced_total"),
        queries_served_per_s=rate(
            served_after, served_before, "prometheus_http_requests_total", handler="/api/v1/query"
        ),
        apiserver_etcd_cores=planes_cpu / elapsed,
        status_writes_per_s=sum(
            rate(
                kube_after,
                kube_before,
                "apiserver_request_total",
                verb="PATCH",
                resource=plural,
                subresource="status",
            )
            for plural in PLURALS
        ),
        watch_kb_per_s=sum(
            rate(kube_after, kube_before, "apiserver_watch_events_sizes_sum", group=GROUP, resource=plural)
            for plural in PLURALS
        )
        / 1e3,
    )


def scale(
    workdir: Path,
    runs: tuple[tuple[Config, tuple[int, ...]], ...] = (
        (ONE_PER_REQUEST, (500,)),
        (TUNED, (500, 1000, 2000, 3000)),
    ),
    window: float = 60.0,
    settle: float = 2 * INTERVAL_S,
) -> list[Step]:
    """Each run starts a fresh operator with its settings and measures its steps (objects are only added)."""
    results: list[Step] = []
    with real_stack(workdir) as stack:
        feed_contributors(stack.exporter)
        prometheus_metrics = f"{stack.prometheus.url}/metrics"
        created = 0
        for index, (config, steps) in enumerate(runs):
            env = {"DETECTION_OPERATOR_PROMETHEUS_URL": stack.prometheus.url, **config.env()}
            log = workdir / f"operator-{index}.log"
            with OperatorProcess(stack.plane.kubeconfig, log, env=env, verbose=False) as operator:
                for n in steps:
                    if n > created:
                        create(stack.api, stack.exporter, created, n)
                        created = n
                    wait_evaluated(stack.api, n, timeout=300 + n / 5)
                    time.sleep(settle)  # let the creation burst (or the restart) leave the window
                    step = _measure(
                        operator,
                        prometheus_metrics,
                        stack.plane.kubeconfig,
                        stack.plane.pids,
                        n,
                        config,
                        window,
                    )
                    print(step.row(), flush=True)
                    results.append(step)
    return results


HEADER = (
    "| objects | settings | evaluations/s achieved / expected | lag p50 | lag p95 | operator cores "
    "| operator RSS | queries/s asked by evaluations | queries/s served by Prometheus "
    "| apiserver + etcd cores | status writes/s (apiserver) | watch KB/s (apiserver) |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def section(workdir: Path) -> list[str]:
    """RESULTS.md lines for the scale benchmark."""
    steps = scale(workdir)
    return [
        "## Scale: one operator process, objects at a 10 s interval",
        "",
        f"Objects {PER_NAMESPACE} to a namespace, every {ROUTE_SHARE}th a ModelRoute (3 models x 3 metrics),",
        "the rest DetectionPolicies (3 rules, 6 contributors x 3 expense queries: 21 queries each). Metrics",
        "steady, so no switches: the cost of watching. Each row: a 60 s window after every object was",
        "evaluated. Lag from the operator's `schedule_lag_seconds` histogram (interpolated in buckets); CPU",
        "and RSS from /proc; queries asked = requests + coalesced answers; served = Prometheus's own",
        '`prometheus_http_requests_total{handler="/api/v1/query"}`; status writes and watch KB/s: the',
        "apiserver's own `apiserver_request_total` (status PATCHes) and `apiserver_watch_events_sizes` of",
        "our two kinds. Aim at 2,000: lag p95 < 1 s,",
        "< 0.5 core, < 300 MB. Scrape alignment is on (the default): an object's due time is the first",
        "scrape of its series at least an interval after the last, so lag counts from there.",
        "",
        HEADER,
        *(step.row() for step in steps),
        "",
    ]
