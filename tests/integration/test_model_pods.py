"""Model servers as Pods of real Deployments: availability, pre-warm and failover are what the node does.

Each model is a Deployment of the standalone model server; Prometheus finds its Pods by annotation and
scrapes their Pod IPs. The closed-loop router (:class:`~detection_testing.router.Router`) follows
the route.json the operator publishes and sends each request to a Ready Pod of the model it picks
(:class:`~detection_testing.pod_endpoints.ReadyPods`, as a Service's endpoints would), retrying
along the fallbacks, so a model reports only the requests it was sent and a model whose Pods are gone
reports nothing while traffic is routed to it. A backup's readiness is the Deployment's real availability.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.pod_endpoints import ReadyPods
from detection_testing.prometheus import PrometheusServer
from detection_testing.router import Router
from detection_testing.specs import closed_loop_route

from ..conftest import Node
from .test_node import available, model_server_deployment

pytestmark = pytest.mark.timeout(600)

LATENCY = (
    "1000 * histogram_quantile(0.95, sum by (le) (rate(neuroweaver_request_duration_seconds_bucket"
    '{namespace="$namespace",model="$model"}[5s])))'
)
RATE = 10.0  # requests/s: enough evidence per 5 s window, light on a shared 2-core machine


@pytest.fixture
def operator_env(node_prometheus: PrometheusServer) -> dict[str, str]:
    # The operator runs on this machine and asks the Prometheus that scrapes the Pods.
    return {"DETECTION_OPERATOR_PROMETHEUS_URL": node_prometheus.url}


@pytest.fixture
def router(kube: client.ApiClient, namespace: str) -> Iterator[Router]:
    """The closed-loop router of route ``r``, sending to the Ready Pods of the model it picks."""
    with ReadyPods(kube, namespace) as pods, Router(kube, namespace, "r-model-route", pods, rate=RATE) as r:
        yield r


@pytest.fixture
def models(kube: client.ApiClient, namespace: str, node: Node) -> Iterator[client.AppsV1Api]:
    apps = client.AppsV1Api(kube)
    image = node.model_server_image.name
    for name, replicas in (("primary", 1), ("backup-a", 0), ("backup-b", 1)):
        manifest = model_server_deployment(name, image, name, replicas)
        apps.create_namespaced_deployment(namespace, manifest)
    wait_for(
        lambda: available(apps, namespace, "primary") and available(apps, namespace, "backup-b"), timeout=60
    )
    yield apps


@dataclass
class Loop:
    """The route ``r`` over the model Deployments, the router that follows it, the operator deciding it."""

    kube: client.ApiClient
    namespace: str
    apps: client.AppsV1Api
    router: Router

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.kube)

    def create(self, spec: dict[str, Any]) -> None:
        route = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRoute", "metadata": {"name": "r"}}
        client.CustomObjectsApi(self.kube).create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "modelroutes", {**route, "spec": spec}
        )

    def status(self) -> dict[str, Any]:
        obj = client.CustomObjectsApi(self.kube).get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "modelroutes", "r"
        )
        return dict(obj.get("status") or {})

    def explain(self) -> str:
        """The route's status, for failure messages."""
        return json.dumps(self.status(), indent=1)[:3000]

    def model(self, name: str) -> dict[str, Any]:
        """One model's entry in the route's status (empty before the first evaluation)."""
        return next((m for m in self.status().get("models", []) if m["name"] == name), {})

    def route_json(self) -> dict[str, Any] | None:
        selector = "metadata.name=r-model-route"
        found = self.core.list_namespaced_config_map(self.namespace, field_selector=selector).items
        return json.loads(found[0].data["route.json"]) if found else None

    def active(self) -> str | None:
        document = self.route_json()
        return document["active"] if document else None

    def served(self, model: str, since: float = 0.0) -> int:
        """Requests ``model`` served at or after ``since`` (monotonic)."""
        return sum(1 for s in self.router.log(since) if s.served_by == model)

    def control(self, app: str, settings: dict[str, Any]) -> None:
        """Change how every Pod of ``app`` behaves (``latencyMs``...)."""
        _set(self.core, self.namespace, app, settings)


@pytest.fixture
def loop(
    kube: client.ApiClient,
    namespace: str,
    models: client.AppsV1Api,
    router: Router,
    operator: OperatorProcess,
) -> Loop:
    return Loop(kube, namespace, models, router)


def _route(models: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "interval": "1s",
        "window": "5s",
        "models": models,
        "metrics": [{"name": "latencyP95Ms", "query": LATENCY, "warning": 100, "critical": 300}],
        "minRequests": 0,
        "failureThreshold": 2,
    }


def _set(core: client.CoreV1Api, namespace: str, app: str, settings: dict[str, Any]) -> None:
    with httpx.Client(timeout=5, trust_env=False) as http:
        for pod in core.list_namespaced_pod(namespace, label_selector=f"app={app}").items:
            http.post(f"http://{pod.status.pod_ip}:8080/control", json=settings).raise_for_status()


def test_a_slow_primary_fails_over_to_the_backup_whose_pods_are_ready(loop: Loop) -> None:
    # backup-a comes first but has no Ready Pod (0 replicas); backup-b has one.
    loop.create(_route([{"name": n, "deployment": n} for n in ("primary", "backup-a", "backup-b")]))
    wait_for(lambda: loop.active() == "primary", timeout=60, what="route.json serving primary")
    wait_for(lambda: loop.served("primary") > 20, timeout=30, what="traffic to the primary")
    loop.control("primary", {"latencyMs": 500})
    try:
        wait_for(lambda: loop.active() == "backup-b", timeout=90, interval=0.5)
    except TimeoutError:
        pytest.fail(f"no failover to backup-b; status:\n{loop.explain()}")
    switched = time.monotonic()
    wait_for(lambda: loop.served("backup-b", switched) > 5, timeout=30, what="traffic following the route")
    # The Ready backup was chosen; the one without Pods was never needed (nor scaled), nor sent anything.
    assert loop.apps.read_namespaced_deployment("backup-a", loop.namespace).spec.replicas == 0
    assert loop.served("backup-a") == 0


def test_pre_warm_scales_the_backup_and_its_deployment_becomes_available(loop: Loop) -> None:
    loop.apps.patch_namespaced_deployment_scale("backup-b", loop.namespace, {"spec": {"replicas": 0}})
    loop.create(_route([{"name": n, "deployment": n} for n in ("primary", "backup-a")]))
    wait_for(lambda: loop.served("primary") > 20, timeout=60, what="traffic to the primary")
    # Warning, not critical: the backup is pre-warmed but the route stays on the primary.
    loop.control("primary", {"latencyMs": 150})
    started = time.monotonic()
    wait_for(
        lambda: available(loop.apps, loop.namespace, "backup-a"),
        timeout=90,
        interval=0.2,
        what="backup-a Available",
    )
    print(f"\npre-warm: primary slow -> backup-a Deployment Available: {time.monotonic() - started:.1f}s")
    assert loop.active() == "primary"
    assert loop.served("backup-a") == 0  # warm, not yet used


def test_a_model_whose_pods_are_gone_fails_over_under_traffic(loop: Loop) -> None:
    spec = closed_loop_route(["primary", "backup-b"], minRequests=20)
    spec["models"] = [{"name": m, "deployment": m} for m in ("primary", "backup-b")]
    loop.create(spec)
    wait_for(lambda: loop.model("primary").get("state") == "healthy", timeout=60, what="primary healthy")
    # Once the primary serves, the idle backup gets nothing. (While the primary's Pod was still starting,
    # the router's per-request fallback may have sent a few requests to it: that is the fallback working,
    # and the backup reads as serving until those requests leave its metrics' window.)
    healthy = time.monotonic()
    wait_for(lambda: loop.served("primary", healthy) >= 20, timeout=30, what="the primary serving 20")
    wait_for(lambda: loop.model("backup-b").get("state") == "idle", timeout=30, what="the backup idle")
    assert loop.served("backup-b", healthy) == 0
    # Scaled to 0, not Pods deleted under a Deployment of 1: the ReplicaSet replaces a deleted Pod in about
    # a second, too fast to observe the outage deterministically.
    died = time.monotonic()
    loop.apps.patch_namespaced_deployment_scale("primary", loop.namespace, {"spec": {"replicas": 0}})
    try:
        wait_for(lambda: loop.active() == "backup-b", timeout=60, interval=0.1)
    except TimeoutError:
        pytest.fail(f"no failover from the dead primary; status:\n{loop.explain()}")
    switched = time.monotonic()
    print(f"\nPods gone (scaled to 0) -> route.json switched to the backup: {switched - died:.1f}s")
    document = loop.route_json()
    assert document is not None and document["state"] == "FailedOver", document
    assert "primary failing" in document["reason"] and document["traffic"]["backup-b"] >= 90, document
    # route.json is published before the same evaluation's status is written: wait for the status to catch up.
    wait_for(lambda: loop.status().get("activeModel") == "backup-b", timeout=20, what="status on the backup")
    dead = loop.model("primary")
    assert dead["state"] == "failing", dead
    assert "replicas available" in dead["reason"] or "routed to it" in dead["reason"], dead
    alerts = wait_for(
        lambda: [a for a in loop.status().get("alerts", []) if a["type"] == "model-failure"],
        timeout=20,
        what="model-failure alert",
    )
    assert alerts[0]["severity"] == "critical" and "primary failing" in alerts[0]["summary"], alerts

    def firing() -> list[str]:
        events = loop.core.list_namespaced_event(loop.namespace).items
        return [e.message for e in events if e.reason == "AlertFiring" and "primary failing" in e.message]

    wait_for(firing, timeout=20, what="an AlertFiring Event for the failing primary")
    # The router's requests reach the backup: per request (along the fallbacks) and by route.json.
    wait_for(lambda: loop.served("backup-b", switched) > 20, timeout=30, what="the backup serving")
    rescued = next(s for s in loop.router.log(died) if s.served_by == "backup-b")
    print(f"Pods gone -> the router's first request served by the backup: {rescued.at - died:.1f}s")
    assert loop.served("primary", switched) == 0


def test_scaling_a_model_to_zero_is_a_real_outage(
    kube: client.ApiClient, namespace: str, models: client.AppsV1Api, node_prometheus: PrometheusServer
) -> None:
    core = client.CoreV1Api(kube)
    _set(core, namespace, "primary", {"latencyMs": 1})
    with httpx.Client(timeout=5, trust_env=False) as http:
        (pod,) = core.list_namespaced_pod(namespace, label_selector="app=primary").items
        for _ in range(5):
            http.post(f"http://{pod.status.pod_ip}:8080/infer", content=b"{}")
    served = f'neuroweaver_requests_total{{namespace="{namespace}",model="primary",outcome="success"}}'
    # A scrape can land between two of the requests: wait for one that saw all five.
    assert node_prometheus.wait_for_series(served, timeout=30, predicate=lambda v: v == 5) == 5
    models.patch_namespaced_deployment_scale("primary", namespace, {"spec": {"replicas": 0}})
    wait_for(
        lambda: available(models, namespace, "primary", replicas=0), timeout=60, what="primary unavailable"
    )
    # The Pod is gone, and with it the model's series: Prometheus marks them stale.
    node_prometheus.wait_for_absent(served, timeout=30)
    with httpx.Client(timeout=2, trust_env=False) as http, pytest.raises(httpx.TransportError):
        http.post(f"http://{pod.status.pod_ip}:8080/infer", content=b"{}")
