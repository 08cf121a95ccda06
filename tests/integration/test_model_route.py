"""ModelRoute in a closed loop: the real operator, apiserver (with Deployments), Prometheus, model server
processes that report only what they served, and a router that sends requests where route.json says.

Windows are scaled down to seconds; the semantics are those of a production route at 30 s / 10 m.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from kubernetes import client

from detection_testing.kube import wait_for
from detection_testing.node_client import NodeRouter
from detection_testing.operator_process import OperatorProcess
from detection_testing.prometheus import PrometheusServer
from detection_testing.router import ModelFleet, Router
from detection_testing.specs import closed_loop_route, sdk_route
from detection_testing.watched import Watched

REPO = Path(__file__).resolve().parents[2]
ROUTE_SCHEMA = json.loads((REPO / "docs/schemas/route.schema.json").read_text())
NAME = "classifier"
CONFIG_MAP = f"{NAME}-model-route"
MODELS = ["nw-primary", "nw-backup1", "nw-backup2"]
PRIMARY, BACKUP1, BACKUP2 = MODELS


class Loop(Watched):
    """The route, its model servers and its router."""

    def __init__(
        self, kube: client.ApiClient, namespace: str, fleet: ModelFleet, router: Router | NodeRouter
    ) -> None:
        super().__init__(kube, namespace, "ModelRoute", NAME, CONFIG_MAP)
        self.fleet, self.router = fleet, router
        self.apps = client.AppsV1Api(kube)

    def route_json(self) -> dict[str, Any] | None:
        return self.document("route.json")

    def wait_route(self, timeout: float = 30, **expected: Any) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            doc = self.route_json()
            return doc if doc and all(doc.get(k) == v for k, v in expected.items()) else None

        return wait_for(matches, timeout=timeout, interval=0.1, what=f"route.json {expected}")

    def model(self, name: str) -> dict[str, Any]:
        return next(m for m in self.status().get("models", []) if m["name"] == name)

    def wait_state(self, model: str, state: str, timeout: float = 30) -> dict[str, Any]:
        return wait_for(
            lambda: (m := self.model_or_none(model)) and m.get("state") == state and m,
            timeout=timeout,
            what=f"{model} {state}",
        )

    def model_or_none(self, name: str) -> dict[str, Any] | None:
        return next((m for m in self.status().get("models", []) if m["name"] == name), None)

    def deployment(self, name: str, replicas: int) -> None:
        labels = {"app": name}
        self.apps.create_namespaced_deployment(
            self.namespace,
            client.V1Deployment(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1DeploymentSpec(
                    replicas=replicas,
                    selector=client.V1LabelSelector(match_labels=labels),
                    template=client.V1PodTemplateSpec(
                        metadata=client.V1ObjectMeta(labels=labels),
                        spec=client.V1PodSpec(
                            containers=[client.V1Container(name="m", image="registry.invalid/m:1")]
                        ),
                    ),
                ),
            ),
        )

    def replicas(self, name: str) -> int:
        return int(self.apps.read_namespaced_deployment(name, self.namespace).spec.replicas)


@contextmanager
def closed_loop(
    kube: client.ApiClient,
    namespace: str,
    prometheus: PrometheusServer,
    tmp_path: Path,
    router: Callable[[ModelFleet], Router | NodeRouter],
) -> Iterator[Loop]:
    """Model servers scraped by the session's Prometheus, and ``router(fleet)`` sending to them."""
    before = prometheus.targets
    with ModelFleet(MODELS, tmp_path / "models", namespace=namespace, latency_ms=5) as fleet:
        prometheus.set_targets([*before, *fleet.targets])
        try:
            with router(fleet) as started:
                yield Loop(kube, namespace, fleet, started)
        finally:
            prometheus.set_targets(before)


@pytest.fixture
def loop(
    kube: client.ApiClient, namespace: str, prometheus: PrometheusServer, tmp_path: Path
) -> Iterator[Loop]:
    def router(fleet: ModelFleet) -> Router:
        return Router(kube, namespace, CONFIG_MAP, fleet.endpoints, rate=40)

    with closed_loop(kube, namespace, prometheus, tmp_path, router) as built:
        yield built


@pytest.fixture
def node_loop(
    kube: client.ApiClient, namespace: str, prometheus: PrometheusServer, tmp_path: Path
) -> Iterator[Loop]:
    """The same loop with the router run by Node.js through the TypeScript client."""

    def router(fleet: ModelFleet) -> NodeRouter:
        return NodeRouter(kube, namespace, CONFIG_MAP, fleet.endpoints, tmp_path / "router", rate=40)

    with closed_loop(kube, namespace, prometheus, tmp_path, router) as built:
        yield built


def served_by(loop: Loop, model: str, since: float = 0.0) -> int:
    return sum(1 for s in loop.router.log(since) if s.served_by == model)


def test_normal_operation_idle_backups_raise_nothing(loop: Loop, operator: OperatorProcess) -> None:
    loop.create(closed_loop_route(MODELS))
    document = loop.wait_route(active=PRIMARY)
    jsonschema.validate(document, ROUTE_SCHEMA)
    assert document["traffic"] == {PRIMARY: 100} and document["fallbacks"] == [BACKUP1, BACKUP2]
    loop.wait_state(PRIMARY, "healthy")
    loop.evaluations(8)
    status = loop.status()
    routed = Counter((s.tried, s.served_by) for s in loop.router.log())
    assert [m["state"] for m in status["models"]] == ["healthy", "idle", "idle"], routed
    assert status["models"][1]["reason"] == "no traffic was sent to it"
    assert loop.condition("MetricsAvailable")["status"] == "True"  # type: ignore[index]
    assert loop.condition("InsufficientData")["status"] == "False"  # type: ignore[index]
    assert status.get("alerts", []) == []
    assert served_by(loop, BACKUP1) == served_by(loop, BACKUP2) == 0  # the loop is closed


def test_dead_primary_fails_over_and_earns_its_way_back(loop: Loop, operator: OperatorProcess) -> None:
    loop.create(closed_loop_route(MODELS))
    first = loop.wait_route(active=PRIMARY)
    loop.wait_state(PRIMARY, "healthy")
    died = time.monotonic()
    loop.fleet.kill(PRIMARY)
    failed_over = loop.wait_route(active=BACKUP1, timeout=30)
    jsonschema.validate(failed_over, ROUTE_SCHEMA)
    assert failed_over["state"] == "FailedOver" and failed_over["revision"] > first["revision"]
    assert "nw-primary failing" in failed_over["reason"] and "no data for" in failed_over["reason"]
    assert failed_over["traffic"] == {BACKUP1: 90, PRIMARY: 10}
    assert PRIMARY not in failed_over["fallbacks"]
    # Per request, the router retried along the fallbacks at once: no request after the death was lost.
    after = [s for s in loop.router.log(died + 0.5) if s.at < died + 5]
    assert after and all(s.served_by is not None for s in after)
    assert any(s.tried[:1] == (PRIMARY,) and s.served_by == BACKUP1 for s in after)
    dead = loop.wait_state(PRIMARY, "failing")
    assert "while" in dead["reason"] and "routed to it" in dead["reason"]
    alerts = wait_for(
        lambda: [a for a in loop.status().get("alerts", []) if a["type"] == "model-failure"],
        timeout=20,
        what="model-failure alert",
    )
    assert alerts[0]["severity"] == "critical" and "no data for" in alerts[0]["summary"]

    # Recovery: the trickle gives the primary requests; it is rolled back to only with the evidence.
    loop.fleet.revive(PRIMARY)
    recovered = time.monotonic()
    rolled = loop.wait_route(active=PRIMARY, timeout=60)
    assert rolled["state"] == "Primary" and "rolled back" in rolled["reason"]
    assert rolled["traffic"] == {PRIMARY: 100}
    evidence = sum(
        1
        for s in loop.router.log(recovered)
        if s.served_by == PRIMARY and s.revision is not None and s.revision < rolled["revision"]
    )
    assert evidence >= 50  # minRequests served under the trickle before route.json named it again
    # The ConfigMap is written before the status of the same evaluation: let the status catch up.
    history = wait_for(
        lambda: len(h := loop.status()["switchHistory"]) == 2 and h, timeout=10, what="switch history"
    )
    assert [(h["from"], h["to"]) for h in history] == [(PRIMARY, BACKUP1), (BACKUP1, PRIMARY)]
    assert "rolledBackAt" in history[0]
    # Events of records follow their status write (delivered from the outbox).
    wait_for(lambda: loop.events("ModelRolledBack"), timeout=30, what="the ModelRolledBack Event")
    assert len(loop.events("ModelSwitched")) == 1 and len(loop.events("ModelRolledBack")) == 1
    wait_for(
        lambda: not [a for a in loop.status().get("alerts", []) if a["state"] == "firing"],
        timeout=30,
        what="every alert resolved",
    )


def test_a_route_with_metrics_from_sdk_fails_over_with_no_promql_written(
    loop: Loop, operator: OperatorProcess
) -> None:
    spec = sdk_route(MODELS)
    assert "query" not in json.dumps(spec)  # every query is generated from the SDK catalog
    loop.create(spec)
    loop.wait_route(active=PRIMARY)
    loop.wait_state(PRIMARY, "healthy")
    # The generated queries answered from what the model servers export: no hand-written PromQL. Not
    # necessarily all in the first healthy evaluation: its queries run at slightly different moments, and
    # a rate over a window that has only just got its second sample may answer in one and not another.
    wanted = {"successRate", "errorRate", "latencyP95Ms", "requests"}

    def answered() -> dict[str, Any] | None:
        model = loop.model(PRIMARY)
        return model if wanted <= set(model.get("metrics", {})) else None

    primary = wait_for(
        answered,
        timeout=30,
        what=f"{PRIMARY}'s status with every generated metric ({', '.join(sorted(wanted))})",
    )
    assert primary["state"] == "healthy", primary
    assert primary["metrics"]["errorRate"] == 0  # no error series yet reads as 0, not as no data
    loop.evaluations(4)
    status = loop.status()
    assert [m["state"] for m in status["models"]] == ["healthy", "idle", "idle"]
    assert status.get("alerts", []) == []  # normal operation, with every generated metric, raises nothing
    loop.fleet.kill(PRIMARY)
    failed_over = loop.wait_route(active=BACKUP1, timeout=30)
    assert failed_over["state"] == "FailedOver" and "nw-primary failing" in failed_over["reason"]
    assert failed_over["traffic"] == {BACKUP1: 90, PRIMARY: 10}
    backup = loop.wait_state(BACKUP1, "healthy")
    assert backup["metrics"]["requests"] > 0


def test_a_primary_failing_under_its_trickle_is_not_rolled_back(
    loop: Loop, operator: OperatorProcess
) -> None:
    loop.create(closed_loop_route(MODELS, rollback={"stableFor": "30s", "trafficPercent": 10}))
    loop.wait_route(active=PRIMARY)
    loop.wait_state(PRIMARY, "healthy")
    loop.fleet.kill(PRIMARY)
    loop.wait_route(active=BACKUP1)
    loop.fleet.revive(PRIMARY)
    wait_for(
        lambda: (p := loop.status().get("probation")) and p.get("healthyForSeconds"),
        timeout=30,
        what="probation started",
    )
    loop.fleet.control(PRIMARY, errorShare=1.0)
    paused = loop.wait_route(traffic={BACKUP1: 100}, timeout=60)
    assert paused["active"] == BACKUP1
    # The ConfigMap is written before the status of the same evaluation: let the status catch up.
    probation = wait_for(
        lambda: (p := loop.status().get("probation")) and p["failures"] and p,
        timeout=10,
        what="status probation",
    )
    assert probation["failures"] == 1 and probation["stableForSeconds"] == 60
    assert probation["trafficPausedUntil"]
    assert len(loop.status()["switchHistory"]) == 1  # never rolled back


def test_too_few_requests_makes_no_decision(loop: Loop, operator: OperatorProcess) -> None:
    loop.router.rate = 1  # 20 requests in the 20 s window, below minRequests 50
    loop.create(closed_loop_route(MODELS))
    loop.wait_route(active=PRIMARY)
    loop.fleet.control(PRIMARY, errorShare=1.0)
    insufficient = loop.wait_condition("InsufficientData", "True", timeout=30)
    assert "minRequests 50" in insufficient["message"]
    loop.evaluations(5)
    assert loop.status()["activeModel"] == PRIMARY and loop.status()["switchHistory"] == []
    assert loop.status().get("alerts", []) == []


def test_override_sends_all_traffic_to_the_pinned_model(loop: Loop, operator: OperatorProcess) -> None:
    loop.create(closed_loop_route(MODELS, override={"model": BACKUP2, "reason": "canary of the new weights"}))
    doc = loop.wait_route(active=BACKUP2)
    assert doc["state"] == "Overridden" and "canary" in doc["reason"] and doc["traffic"] == {BACKUP2: 100}
    pinned = time.monotonic()
    wait_for(lambda: served_by(loop, BACKUP2, pinned) >= 20, timeout=20, what="backup2 serving")
    assert served_by(loop, PRIMARY, pinned + 1) == 0


def test_warning_prewarms_the_next_backup_and_a_dead_primary_scales_it(
    loop: Loop, operator: OperatorProcess
) -> None:
    for model in MODELS:
        loop.deployment(model, 1 if model == PRIMARY else 0)
    spec = closed_loop_route(MODELS)
    spec["models"] = [{"name": m, "deployment": m} for m in MODELS]
    loop.create(spec)
    loop.wait_route(active=PRIMARY)
    loop.wait_state(PRIMARY, "healthy")
    loop.fleet.control(PRIMARY, accuracy=0.8)  # warning (0.85 / 0.75)
    wait_for(lambda: loop.replicas(BACKUP1) == 1, timeout=30, what="backup1 pre-warmed")
    assert loop.route_json()["active"] == PRIMARY  # type: ignore[index]
    # The Event follows the scale (the operator scales, then posts): wait for it, do not race it.
    wait_for(
        lambda: any("pre-warm" in m for m in loop.events("BackupScaled")),
        timeout=10,
        what="the pre-warm Event",
    )
    # No node here: Deployments never have replicas available, which says nothing about the models.
    assert loop.model(PRIMARY)["state"] in ("healthy", "warning")


def test_operator_restart_mid_failover_keeps_state_without_duplicates(
    loop: Loop, operator: OperatorProcess
) -> None:
    loop.create(closed_loop_route(MODELS, rollback={"stableFor": "1h", "scaleDownAfter": "1h"}))
    loop.wait_route(active=PRIMARY)
    loop.wait_state(PRIMARY, "healthy")
    loop.fleet.kill(PRIMARY)
    before = loop.wait_route(active=BACKUP1)
    # Killed as soon as route.json names the backup: between the ConfigMap write and the status write, or
    # just after. The switch's record and its Event go out only after the status write that holds them
    # (the outbox), so either way there is one record and one Event.
    operator.kill()
    operator.start()
    loop.evaluations(3)
    after = loop.route_json()
    assert after is not None and after["active"] == BACKUP1
    assert after["revision"] == before["revision"], (before, after, loop.status()["memory"])
    assert len(loop.status()["switchHistory"]) == 1
    records = [r for r in loop.status()["outbox"]["records"] if r["type"] == "model-switch"]
    assert [(r["from"], r["to"]) for r in records] == [(PRIMARY, BACKUP1)], records
    wait_for(lambda: loop.events("ModelSwitched"), timeout=30, what="the ModelSwitched Event")
    loop.evaluations(2)
    assert len(loop.events("ModelSwitched")) == 1


def test_node_router_fails_over_per_request_and_gives_the_trickle(
    node_loop: Loop, operator: OperatorProcess
) -> None:
    """The TypeScript client in the loop: its API watch follows route.json, choose() spreads by the weights,
    the fallbacks catch every request a dead model refuses, and the 10 % trickle brings the primary back."""
    loop = node_loop
    loop.create(closed_loop_route(MODELS))
    first = loop.wait_route(active=PRIMARY)
    loop.wait_state(PRIMARY, "healthy")
    assert served_by(loop, PRIMARY) > 0 and served_by(loop, BACKUP1) == served_by(loop, BACKUP2) == 0
    died = time.monotonic()
    loop.fleet.kill(PRIMARY)
    failed_over = loop.wait_route(active=BACKUP1, timeout=30)
    assert (
        failed_over["traffic"] == {BACKUP1: 90, PRIMARY: 10} and failed_over["revision"] > first["revision"]
    )
    after = [s for s in loop.router.log(died + 0.5) if s.at < died + 5]
    assert after and all(s.served_by is not None for s in after)
    assert any(s.tried[:1] == (PRIMARY,) and s.served_by == BACKUP1 for s in after)
    # Under the new revision the router chose by its weights: 1 request in 10 tries the primary first.
    switched = wait_for(
        lambda: (
            len(r := [s for s in loop.router.log() if s.revision == failed_over["revision"]]) >= 100 and r
        ),
        timeout=20,
        what="100 requests under the failed-over revision",
    )
    first_tries = Counter(s.tried[0] for s in switched[:100])
    assert 5 <= first_tries[PRIMARY] <= 15 and first_tries[BACKUP1] >= 85, first_tries

    loop.fleet.revive(PRIMARY)
    recovered = time.monotonic()
    rolled = loop.wait_route(active=PRIMARY, timeout=60)
    assert rolled["state"] == "Primary" and "rolled back" in rolled["reason"]
    evidence = sum(
        1
        for s in loop.router.log(recovered)
        if s.served_by == PRIMARY and s.revision is not None and s.revision < rolled["revision"]
    )
    assert evidence >= 50
    assert loop.router.rejected == 0
