"""`python -m detection_testing.demo`: start the parts, apply the examples, play the scenario, print it.

Parts (all local, all reused from ``detection_testing``): etcd + kube-apiserver +
kube-controller-manager, a bot detector that runs the profile.json the operator publishes (read through
an API watch) and exports what that profile costs through a MetricExporter, one model server process per
NeuroWeaver model and a router that sends requests where route.json says (both closed loops), Prometheus
scraping them every second, a webhook receiver standing in for ``platform-webhook``, and the operator as
a process. State (kubeconfig, logs, TSDB) lives in the state directory, ``.demo/`` by default, and is
reset on each run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any, Final, TextIO

import yaml
from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_operator.api.kinds import by_kind

from ..controlplane import LocalControlPlane, default_bin_dir
from ..detector import ProfiledDetector
from ..documents import edited
from ..exporter import MetricExporter
from ..kube import api_client, install_crds, wait_for
from ..node_client import NodeRouter
from ..operator_process import OperatorProcess
from ..prometheus import PrometheusNotFoundError, PrometheusServer
from ..receiver import WebhookReceiver
from ..router import ModelFleet
from .scenario import CONTRIBUTORS, EXTERNALS, MODELS, POLICY, ROUTE, STARTUP, Phase, scenario
from .timeline import Timeline, elapsed

NAMESPACE: Final = "detection-demo"
# What the demo creates under the state directory; only these are removed when a new run starts.
_STATE_ENTRIES: Final = ("controlplane", "prometheus", "operator.log", "receivers.yaml", "models", "router")
ROUTER_RATE: Final = 20.0
_POLL_SECONDS: Final = 0.5


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why and where to look."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (``DEMO_NO_WAIT=1`` in the environment is the same as ``--no-wait``)."""
    parser = argparse.ArgumentParser(prog="python -m detection_testing.demo", description=__doc__)
    parser.add_argument(
        "--state-dir", type=Path, default=Path(".demo"), help="where state goes (default .demo)"
    )
    parser.add_argument(
        "--repo",
        type=Path,
        default=Path.cwd(),
        help="repository root with crds/, examples/, demo/ (default .)",
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        default=os.environ.get("DEMO_NO_WAIT", "") not in ("", "0", "false"),
        help="tear down right after the scenario instead of waiting for Ctrl-C",
    )
    parser.add_argument(
        "--phase-timeout", type=float, default=90, help="seconds each phase may take (default 90)"
    )
    return parser.parse_args(argv)


def demo_objects(repo: Path) -> list[dict[str, Any]]:
    """The examples' DetectionPolicy and ModelRoute with the demo's timing (``demo/timing.yaml``)."""
    timing: dict[str, dict[str, Any]] = yaml.safe_load((repo / "demo" / "timing.yaml").read_text())
    objects = []
    for path in sorted((repo / "examples").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            objects.append(edited(document, set_=timing.get(document["kind"], {})))
    return objects


def _reset(state: Path) -> None:
    state.mkdir(parents=True, exist_ok=True)
    for entry in _STATE_ENTRIES:
        path = state / entry
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _write_receivers(path: Path, receiver: WebhookReceiver) -> None:
    # The examples name platform-webhook; here it is a local receiver that records what it gets.
    config = {"receivers": [{"name": "platform-webhook", "type": "webhook", "url": f"{receiver.url}/alerts"}]}
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


def _apply(api: client.ApiClient, repo: Path) -> None:
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    apps = client.AppsV1Api(api)
    for manifest in yaml.safe_load_all((repo / "demo" / "deployments.yaml").read_text()):
        apps.create_namespaced_deployment(NAMESPACE, manifest)
    objects = client.CustomObjectsApi(api)
    for obj in demo_objects(repo):
        objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, by_kind(obj["kind"]).plural, obj)


def _state_of(timeline: Timeline, phase: Phase) -> str:
    """What the objects a phase waits for are doing now, for the error message."""
    lines = []
    for expect in phase.expect:
        obj = timeline.read(expect.kind, expect.name) or {}
        status = obj.get("status") or {}
        current = status.get("profile") if expect.kind == "dp" else status.get("activeModel")
        now = f"{current}: {status.get('reason', '')}" if current else "not evaluated yet"
        lines.append(f"  {expect.kind}/{expect.name} is {now}")
    return "\n".join(lines)


def _play(
    phases: list[Phase],
    detector: ProfiledDetector,
    fleet: ModelFleet,
    timeline: Timeline,
    start: float,
    timeout: float,
    out: TextIO,
) -> None:
    """Play each phase and wait, up to ``timeout`` seconds, for the switches it expects.

    ``start`` (monotonic) is the timeline's +00:00.
    """
    for number, phase in enumerate(phases, 1):
        stamp = elapsed(time.monotonic() - start)
        print(f"\n{stamp}  ▶ phase {number}/{len(phases)} {phase.name}: {phase.description}", file=out)
        print(f"        expecting {', '.join(map(str, phase.expect))}", file=out, flush=True)
        since = len(timeline.seen)
        detector.world(phase.world)
        if phase.models is not None:
            phase.models(fleet)

        def done(phase: Phase = phase, since: int = since) -> bool:
            _check_interrupted()
            timeline.poll(time.monotonic() - start)
            return all(timeline.happened(e, since) for e in phase.expect)

        try:
            wait_for(done, timeout=timeout, interval=_POLL_SECONDS, what=phase.name)
        except TimeoutError:
            missing = ", ".join(str(e) for e in phase.expect if not timeline.happened(e, since))
            raise DemoError(
                f"phase {phase.name!r}: {missing} did not happen within {timeout:g}s\n"
                + _state_of(timeline, phase)
            ) from None


def _summary(api: client.ApiClient, receiver: WebhookReceiver, out: TextIO) -> None:
    """What the operator did to the Deployments, and the alerts platform-webhook received."""
    print(
        "\nDeployments (no nodes here, so no Pod ever runs; the operator scales and annotates anyway):",
        file=out,
    )
    for deployment in client.AppsV1Api(api).list_namespaced_deployment(NAMESPACE).items:
        template = deployment.spec.template.metadata
        annotations = (template.annotations if template else None) or {}
        checksum = annotations.get("detection.adaptive.io/config-checksum")
        note = f"  config-checksum {checksum[:12]}…" if checksum else ""
        name = deployment.metadata.name if deployment.metadata else "?"
        print(f"  {name:<18} replicas {deployment.spec.replicas}{note}", file=out)
    alerts: Counter[str] = Counter()
    for request in receiver.requests:
        for alert in request.json().get("alerts", []):
            alerts[f"{alert['type']} {alert['status']}"] += 1
    listed = ", ".join(f"{n} x {what}" for what, n in sorted(alerts.items())) or "none"
    print(f"Alerts received by platform-webhook ({len(receiver.requests)} requests): {listed}", file=out)


def _how_to_poke(
    plane: LocalControlPlane, prometheus: PrometheusServer, operator_log: Path, out: TextIO
) -> None:
    cli = Path(sys.executable).parent / "detection-operator"
    print(
        f"""
Everything is still running. In another terminal:
  export KUBECONFIG={plane.kubeconfig}
  export PATH={default_bin_dir().absolute()}:$PATH     # kubectl
  kubectl get dp,mr -A
  kubectl get deploy,events -n {NAMESPACE}
  {cli} explain dp/{POLICY} -n {NAMESPACE}
  {cli} explain mr/{ROUTE} -n {NAMESPACE}
Prometheus:   {prometheus.url}   (try detector_requests_total or neuroweaver_requests_total)
Operator log: {operator_log}
Press Ctrl-C to tear everything down.""",
        file=out,
        flush=True,
    )


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Start everything, play the scenario, then wait for Ctrl-C (or not); tear down in any case."""
    repo: Path = args.repo.resolve()
    for needed in ("crds", "examples", "demo"):
        if not (repo / needed).is_dir():
            raise DemoError(f"no {needed}/ under {repo}: run from the repository root or pass --repo")
    state: Path = args.state_dir.resolve()
    _reset(state)
    phases = scenario()
    with ExitStack() as stack:
        started = time.monotonic()
        print(
            f"Starting etcd, kube-apiserver and kube-controller-manager (state in {state}) …",
            file=out,
            flush=True,
        )
        plane = stack.enter_context(LocalControlPlane(state / "controlplane", controller_manager=True))
        api = api_client(plane.kubeconfig)
        stack.callback(api.close)
        exporter = stack.enter_context(MetricExporter())
        # Until the operator publishes a profile the detector runs its built-in default.
        detector = ProfiledDetector(
            api,
            NAMESPACE,
            f"{POLICY}-detection-profile",
            exporter,
            base=phases[0].world,
            costs=CONTRIBUTORS,
            externals=EXTERNALS,
            startup=STARTUP,
        )
        stack.enter_context(detector)
        fleet = stack.enter_context(ModelFleet(MODELS, state / "models"))
        prometheus = stack.enter_context(
            PrometheusServer(state / "prometheus", targets=[exporter.target, *fleet.targets])
        )
        receiver = stack.enter_context(WebhookReceiver())
        print(
            f"Prometheus {prometheus.url} scrapes the bot detector (running what profile.json says) at "
            f"{exporter.url}/metrics and {len(MODELS)} model servers every 1s",
            file=out,
        )
        # The operator's first evaluation should see metrics, not a missing series.
        prometheus.wait_for_series("sum(detector_requests_total)", timeout=60)
        install_crds(api, repo / "crds")
        _apply(api, repo)
        print(
            f"Applied crds/, demo/deployments.yaml and examples/*.yaml (timing from demo/timing.yaml)"
            f" in namespace {NAMESPACE}",
            file=out,
        )
        receivers = state / "receivers.yaml"
        _write_receivers(receivers, receiver)
        operator_log = state / "operator.log"
        env = {
            "DETECTION_OPERATOR_PROMETHEUS_URL": prometheus.url,
            "DETECTION_OPERATOR_RECEIVERS_FILE": str(receivers),
        }
        operator = OperatorProcess(plane.kubeconfig, operator_log, namespaces=[NAMESPACE], env=env)
        stack.callback(operator.stop)  # a no-op if start() fails
        operator.start()
        print(
            f"Operator running (log: {operator_log}); ready after {time.monotonic() - started:.0f}s", file=out
        )
        # The router is the TypeScript client's (Node.js), following route.json through the API as its own
        # ServiceAccount: the demo is also the data-plane SDKs' integration test.
        router_dir = state / "router"
        router_dir.mkdir(exist_ok=True)
        router = stack.enter_context(
            NodeRouter(api, NAMESPACE, f"{ROUTE}-model-route", fleet.endpoints, router_dir, rate=ROUTER_RATE)
        )
        print(
            f"Router (TypeScript client on Node.js) sending {ROUTER_RATE:g} req/s where route.json says"
            " (retrying along its fallbacks)",
            file=out,
        )
        timeline = Timeline(api, NAMESPACE, [("dp", POLICY), ("mr", ROUTE)], out)
        start = time.monotonic()
        try:
            _play(phases, detector, fleet, timeline, start, args.phase_timeout, out)
        except DemoError as exc:
            raise DemoError(f"{exc}\noperator log: {operator_log}") from None
        print(f"\nScenario complete: {len(phases)} phases, every expected switch happened.", file=out)
        _summary(api, receiver, out)
        served = Counter(s.served_by or "nobody" for s in router.log())
        listed = ", ".join(f"{model} {n}" for model, n in sorted(served.items()))
        print(f"Requests the router sent, by the model that served them: {listed}", file=out)
        if not args.no_wait:
            _how_to_poke(plane, prometheus, operator_log, out)
            _wait_for_interrupt(timeline, start, out)
        print("Tearing down …", file=out, flush=True)
    print(
        "Stopped: control plane, Prometheus, detector, model servers, router and operator are gone.",
        file=out,
        flush=True,
    )
    return 0


def _wait_for_interrupt(timeline: Timeline, start: float, out: TextIO) -> None:
    """Keep printing new timeline lines (e.g. the backup scaled down again) until Ctrl-C or SIGTERM."""
    try:
        while True:
            time.sleep(1)
            _check_interrupted()
            timeline.poll(time.monotonic() - start)
    except Exception:
        # An interrupt a library turned into another error is still the Ctrl-C this loop waits for.
        if not _INTERRUPTED.is_set():
            raise
        print("", file=out)
    except KeyboardInterrupt:
        print("", file=out)


_INTERRUPTED = threading.Event()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Remembered as well as raised: a library may catch the KeyboardInterrupt and raise something else
    # (pydantic turns one raised while it builds a validator into a SchemaError), or swallow it.
    _INTERRUPTED.set()
    raise KeyboardInterrupt


def _check_interrupted() -> None:
    """Raise KeyboardInterrupt if Ctrl-C or SIGTERM arrived, even if the first one was swallowed."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit 0 when the scenario played, 1 when it could not, 130 when interrupted."""
    args = parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM tears down like Ctrl-C: the parts must not outlive the demo.
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(args, sys.stdout)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as exc:
        if _INTERRUPTED.is_set():
            return _interrupted()
        if not isinstance(exc, (RuntimeError, TimeoutError, PrometheusNotFoundError)):
            raise
        # The helpers' errors (ControlPlaneError, an operator that exits at start-up, a part not ready in
        # time, DemoError) already say what failed and where its log is.
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1


def _interrupted() -> int:
    print("\ninterrupted: everything is torn down", file=sys.stderr)
    return 130
