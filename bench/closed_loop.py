"""ModelRoute in the closed loop, end to end: model server processes that report only what they served,
a router that sends requests by route.json, the real operator, Prometheus and apiserver.

- dead model -> route.json switched: the primary's process is SIGKILLed (its series go stale at the next
  failed scrape); the clock stops when the route.json naming the backup arrives on a separate watch. The
  router's first request after the death that a fallback served is timed too (per-request failover).
- failback: the primary is started again; time from its restart to the route.json naming it active, and
  the requests it served under its trickle before that.
- failing under the trickle: the restarted primary starts its probation, then answers only errors; it
  must not be rolled back, and its next probation doubles.
- soak: normal operation with idle backups; alerts received by a real webhook receiver and the
  MetricsAvailable condition, sampled every second.
"""

from __future__ import annotations

import json
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.receiver import WebhookReceiver
from detection_testing.router import ModelFleet, Router
from detection_testing.specs import NEUROWEAVER_METRICS, closed_loop_route

from .harness import Seen, Stack, create_namespace, real_stack, watch_config_map_key

MODELS = ["primary", "backup"]
NAME = "bench"
CONFIG_MAP = f"{NAME}-model-route"
RATE = 40.0


@dataclass
class Loop:
    """One namespace's route, model servers, router and route.json watch."""

    stack: Stack
    namespace: str
    fleet: ModelFleet
    router: Router
    seen: queue.Queue[Seen]

    @property
    def objects(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.stack.api)

    def create(self, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelRoute",
            "metadata": {"name": NAME},
            "spec": spec,
        }
        self.objects.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "modelroutes", body)

    def delete(self) -> None:
        """Delete the route and its ConfigMap (the next sample starts from a fresh route)."""
        self.objects.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, "modelroutes", NAME)
        core = client.CoreV1Api(self.stack.api)
        wait_for(lambda: not self._exists(), timeout=60, what="the route deleted")
        try:
            core.delete_namespaced_config_map(CONFIG_MAP, self.namespace)
        except client.ApiException as exc:
            if exc.status != 404:  # garbage-collected already (it is owned by the route)
                raise

    def _exists(self) -> bool:
        try:
            self.objects.get_namespaced_custom_object(GROUP, VERSION, self.namespace, "modelroutes", NAME)
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def status(self) -> dict[str, Any]:
        obj: Any = self.objects.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "modelroutes", NAME
        )
        return dict(obj.get("status") or {})

    def next_route(self, timeout: float, **expected: Any) -> tuple[float, dict[str, Any]]:
        """The next route.json (arrival time, document) matching ``expected``."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.seen.get(timeout=max(0.1, deadline - time.monotonic()))
            document = json.loads(event.text)
            if all(document.get(k) == v for k, v in expected.items()):
                return event.at, document

    def model_state(self, model: str) -> str | None:
        return next((m.get("state") for m in self.status().get("models", []) if m["name"] == model), None)


@contextmanager
def closed_loop(stack: Stack, workdir: Path, namespace: str) -> Iterator[Loop]:
    """Model servers scraped by the stack's Prometheus, a router, a route.json watch, in ``namespace``."""
    before = stack.prometheus.targets
    seen: queue.Queue[Seen] = queue.Queue()
    stop = threading.Event()
    threading.Thread(
        target=watch_config_map_key, args=(stack.api, namespace, "route.json", seen, stop), daemon=True
    ).start()
    with ModelFleet(MODELS, workdir / namespace, namespace=namespace, latency_ms=5) as fleet:
        stack.prometheus.set_targets([*before, *fleet.targets])
        try:
            with Router(stack.api, namespace, CONFIG_MAP, fleet.endpoints, rate=RATE) as router:
                yield Loop(stack, namespace, fleet, router, seen)
        finally:
            stop.set()
            stack.prometheus.set_targets(before)


@dataclass
class Failover:
    """One dead-primary sample."""

    switched: float
    first_avoided: float
    failback: float | None = None
    evidence: int | None = None


def _settled(loop: Loop, interval: float) -> None:
    """Wait until the operator has seen the primary healthy (it reported requests while routed, so its
    death reads as failing at once, without the settle time of a model that never reported)."""
    wait_for(
        lambda: loop.model_state("primary") == "healthy", timeout=10 * interval + 60, what="primary healthy"
    )


def dead_model(
    loop: Loop, spec: dict[str, Any], samples: int, interval: float, failback: bool
) -> list[Failover]:
    """Kill the primary ``samples`` times; each sample starts from a fresh route on a healthy primary."""
    results = []
    for _ in range(samples):
        if not loop.fleet.alive("primary"):
            loop.fleet.revive("primary")
        loop.create(spec)
        loop.next_route(120, active="primary")
        _settled(loop, interval)
        died = time.monotonic()
        loop.fleet.kill("primary")
        at, _ = loop.next_route(600, active="backup")
        served = [s for s in loop.router.log(died) if s.served_by is not None]
        sample = Failover(switched=at - died, first_avoided=served[0].at - died if served else float("nan"))
        if failback:
            loop.fleet.revive("primary")
            revived = time.monotonic()
            at, document = loop.next_route(600, active="primary")
            sample.failback = at - revived
            sample.evidence = sum(
                1
                for s in loop.router.log(revived)
                if s.served_by == "primary" and s.revision is not None and s.revision < document["revision"]
            )
        results.append(sample)
        loop.delete()
        while not loop.seen.empty():
            loop.seen.get()
    return results


def trickle_failure(loop: Loop) -> dict[str, Any]:
    """A primary that recovers, starts its probation, then fails under its trickle."""
    if not loop.fleet.alive("primary"):
        loop.fleet.revive("primary")
    loop.create(closed_loop_route(MODELS, rollback={"stableFor": "30s", "trafficPercent": 10}))
    loop.next_route(120, active="primary")
    _settled(loop, 1.0)
    loop.fleet.kill("primary")
    loop.next_route(120, active="backup")
    loop.fleet.revive("primary")
    wait_for(
        lambda: (p := loop.status().get("probation")) and p.get("healthyForSeconds"),
        timeout=120,
        what="probation started",
    )
    failed = time.monotonic()
    loop.fleet.control("primary", errorShare=1.0)
    at, document = loop.next_route(120, traffic={"backup": 100})
    # The ConfigMap is written before the status of the same evaluation: let the status catch up.
    probation = wait_for(
        lambda: (p := loop.status().get("probation")) and p.get("trafficPausedUntil") and p,
        timeout=10,
        what="status probation",
    )
    time.sleep(10)
    still = loop.status()
    result = {
        "detected": at - failed,
        "active": document["active"],
        "failures": probation["failures"],
        "stable_for": probation["stableForSeconds"],
        "paused_until": probation["trafficPausedUntil"],
        "rolled_back": len(still["switchHistory"]) > 1 or still["activeModel"] != "backup",
    }
    loop.delete()
    return result


def soak(loop: Loop, receiver: WebhookReceiver, seconds: float) -> dict[str, Any]:
    """Normal operation for ``seconds``: alerts received, MetricsAvailable sampled every second."""
    for model in MODELS:  # fresh, healthy servers: nothing left over from the measurements before
        if loop.fleet.alive(model):
            loop.fleet.kill(model)
        loop.fleet.revive(model)
    time.sleep(2)  # two scrapes of the dead series, so the new route starts on a quiet Prometheus
    since = time.monotonic()
    before = len(receiver.requests)
    loop.create(closed_loop_route(MODELS, alerts={"receivers": ["hook"], "cooldown": "1m"}))
    loop.next_route(120, active="primary")
    start = time.monotonic()
    unavailable = samples = 0
    states: set[tuple[str, ...]] = set()
    while time.monotonic() - start < seconds:
        status = loop.status()
        condition = next((c for c in status.get("conditions", []) if c["type"] == "MetricsAvailable"), None)
        samples += 1
        unavailable += condition is None or condition["status"] != "True"
        states.add(tuple(m.get("state", "?") for m in status.get("models", [])))
        time.sleep(1)
    status = loop.status()
    result = {
        "seconds": seconds,
        "alerts": len(receiver.requests) - before,
        "records": len(status.get("alerts", [])),
        "unavailable": unavailable,
        "samples": samples,
        "states": sorted(states),
        "served_by_backup": sum(1 for s in loop.router.log(since) if s.served_by == "backup"),
    }
    loop.delete()
    return result


def run(workdir: Path, soak_seconds: float) -> list[str]:
    """Every closed-loop measurement; the section's lines for RESULTS.md."""
    fast = closed_loop_route(MODELS)
    defaults = {
        "models": [{"name": m} for m in MODELS],
        "metrics": NEUROWEAVER_METRICS,
    }  # interval 30s, failureThreshold 3, window 10m, minRequests 50, stableFor 5m: every default
    fast_3 = {**fast, "failureThreshold": 3}
    with receiving() as (receiver, env), real_stack(workdir) as stack:
        create_namespace(stack.api, "bench-loop")
        env = {**env, "DETECTION_OPERATOR_PROMETHEUS_URL": stack.prometheus.url}
        with (
            OperatorProcess(stack.plane.kubeconfig, workdir / "operator.log", ["bench-loop"], env),
            closed_loop(stack, workdir, "bench-loop") as loop,
        ):
            # Each part is printed as it ends (stderr), so a failure later loses no figures.
            quick = _shown("1s/3", dead_model(loop, fast_3, samples=10, interval=1.0, failback=True))
            slow = _shown("defaults", dead_model(loop, defaults, samples=3, interval=30.0, failback=False))
            trickle = _shown("trickle", trickle_failure(loop))
            soaked = _shown("soak", soak(loop, receiver, soak_seconds))
    return section(quick, slow, trickle, soaked)


T = TypeVar("T")


def _shown(what: str, result: T) -> T:
    print(f"{what}: {result}", file=sys.stderr, flush=True)
    return result


@contextmanager
def receiving() -> Iterator[tuple[WebhookReceiver, dict[str, str]]]:
    """A real webhook receiver and the operator environment that names it ``hook``."""
    with WebhookReceiver() as receiver, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "receivers.json"
        config = {
            "allowedHosts": ["127.0.0.1"],
            "receivers": [{"name": "hook", "type": "webhook", "url": receiver.url + "/hook"}],
        }
        path.write_text(json.dumps(config))
        yield receiver, {"DETECTION_OPERATOR_RECEIVERS_FILE": str(path)}


def _row(samples: list[float], unit: str = "s") -> str:
    """median | p95 | min | max | n, in ``unit`` (s, ms or a count)."""
    ordered = sorted(samples)
    if not ordered:
        return "- | - | - | - | 0"
    scale = {"s": 1.0, "ms": 1e3, "": 1.0}[unit]
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    values = (statistics.median(ordered), p95, ordered[0], ordered[-1])
    return " | ".join(f"{v * scale:.3g} {unit}".strip() for v in values) + f" | {len(ordered)}"


def section(
    quick: list[Failover], slow: list[Failover], trickle: dict[str, Any], soaked: dict[str, Any]
) -> list[str]:
    """The RESULTS.md section."""
    rows = [
        ("interval 1s, failureThreshold 3, window 20s", quick),
        ("defaults: interval 30s, failureThreshold 3, window 10m", slow),
    ]
    lines = [
        "## ModelRoute in the closed loop: dead model, failback, failing trickle, normal operation",
        "",
        f"Model server processes, a router at {RATE:g} req/s following route.json through an API watch",
        "(retrying along `fallbacks`), Prometheus scraping every 1 s, the real operator. A dead model is",
        "a SIGKILLed process; the clock stops when route.json arrives on a separate watch.",
        "",
        "| dead primary -> route.json names the backup | median | p95 | min | max | n |",
        "|---|---|---|---|---|---|",
        *[f"| {label} | {_row([s.switched for s in samples])} |" for label, samples in rows],
        "",
        "| router: first request after the death served by a fallback | median | p95 | min | max | n |",
        "|---|---|---|---|---|---|",
        *[f"| {label} | {_row([s.first_avoided for s in samples], 'ms')} |" for label, samples in rows],
        "",
    ]
    back = [s for s in quick if s.failback is not None]
    evidence = [float(s.evidence or 0) for s in back]
    if back:
        lines += [
            "Failback (interval 1s, stableFor 4s, trickle 10 %, minRequests 50): primary restarted ->",
            "route.json names it active again, and the requests it served under its trickle before that.",
            "",
            "| | median | p95 | min | max | n |",
            "|---|---|---|---|---|---|",
            f"| recovery -> rollback | {_row([s.failback or 0.0 for s in back])} |",
            f"| primary requests served before rollback | {_row(evidence, '')} |",
            "",
        ]
    lines += [
        "Failing under the trickle (stableFor 30s): the recovered primary answers only errors during its",
        f"probation. Trickle turned off {trickle['detected']:.1f} s after the errors began; active stayed "
        f"`{trickle['active']}`, rolled back: {trickle['rolled_back']}; failures {trickle['failures']}, next "
        f"probation {trickle['stable_for']:g} s (doubled), trickle paused until {trickle['paused_until']}.",
        "",
        f"Normal operation, {soaked['seconds'] / 60:g} min at interval 1s with an idle backup: "
        f"{soaked['alerts']} notifications received by the webhook, {soaked['records']} alert records, "
        f"MetricsAvailable not True in {soaked['unavailable']} of {soaked['samples']} one-second samples; "
        f"model states seen {soaked['states']}; requests served by the backup {soaked['served_by_backup']}.",
        "",
    ]
    return lines
