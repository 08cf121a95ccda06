"""Breach -> switch, end to end, for the operator and for the hand-built alternative in the same run.

The exporter steps one metric across a threshold at t0 (at a random phase of the scrape cycle); the clock
stops when a separate watch sees the ConfigMap change. The operator (a real process) evaluates DetectionPolicy
objects; the alternative is a Prometheus alerting rule on the same metric in the same Prometheus, a real
Alertmanager and a webhook receiver patching another ConfigMap (bench/diy.py). Both evaluate at the same
interval with the same threshold and the same ``for``.

Each path runs in several lanes (policies / rule groups created at different moments), so the evaluation
phase relative to Prometheus' scrape phase is sampled instead of being one draw per run.
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_operator.core.times import parse_duration
from detection_testing.alertmanager import AlertmanagerServer
from detection_testing.controlplane import LocalControlPlane
from detection_testing.exporter import MetricExporter
from detection_testing.kube import api_client, wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.prometheus import PrometheusServer

from . import diy
from .harness import Seen, Stats, control_plane, create_namespace, watch_config_map_key

METRIC = "bench_step"
THRESHOLD = 200.0
HIGH, LOW = 300.0, 100.0
BREACH, CLEAR = "lean", "balanced"
LANES = [f"lane-{i}" for i in range(12)]


@dataclass(frozen=True)
class Case:
    """One configuration: Prometheus scrape interval, evaluation interval (the operator's and the rule
    group's), the rule's ``for`` count, and how many metric steps (alternating breach and clear)."""

    scrape: str
    interval: str
    for_count: int
    steps: int
    group_wait: str = "0s"

    @property
    def period(self) -> float:
        """Scrape interval + evaluation interval, in seconds: the unit the issue measures in."""
        return parse_duration(self.scrape) + parse_duration(self.interval)

    @property
    def rule_for(self) -> str:
        """Prometheus ``for`` equal to the policy's ``for`` count: firing at the Nth true evaluation."""
        return f"{(self.for_count - 1) * parse_duration(self.interval):g}s"

    @property
    def label(self) -> str:
        """How the case is named in RESULTS.md."""
        return f"{self.scrape} + {self.interval}, for {self.for_count}"


def _by_direction() -> dict[str, list[float]]:
    return {"breach": [], "clear": []}


@dataclass
class CaseResult:
    """Latencies (seconds) of one case, split by direction (breach, clear) where they differ; operator and
    DIY lists hold one sample per lane and step."""

    case: Case
    operator: dict[str, list[float]] = field(default_factory=_by_direction)
    """Step -> ConfigMap on the watch."""
    diy: dict[str, list[float]] = field(default_factory=_by_direction)
    scraped: list[float] = field(default_factory=list)
    """Step -> the first scrape that stored the new value (one per step)."""
    operator_after_scrape: dict[str, list[float]] = field(default_factory=_by_direction)
    diy_webhook_after_scrape: dict[str, list[float]] = field(default_factory=_by_direction)
    diy_patch: list[float] = field(default_factory=list)
    """Webhook received -> ConfigMap update on the watch."""


def policy_body(lane: str, case: Case) -> dict[str, Any]:
    """The operator side of a lane: one rule on the stepped metric, no dwell, no stabilization."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DetectionPolicy",
        "metadata": {"name": lane},
        "spec": {
            "interval": case.interval,
            "defaultProfile": CLEAR,
            "fallbackProfile": CLEAR,
            "minDwell": "0s",
            "stabilizationWindow": "0s",
            "profiles": [{"name": BREACH}, {"name": CLEAR}],
            "rules": [
                {
                    "name": "step",
                    "query": f'max({METRIC}{{namespace="$namespace"}})',
                    "op": ">",
                    "threshold": THRESHOLD,
                    "for": case.for_count,
                    "profile": BREACH,
                    "reason": "step above threshold",
                }
            ],
        },
    }


def _operator_lane(event: Seen) -> tuple[str, str]:
    document = json.loads(event.text)
    return document["policy"]["name"], document["profile"]


def _diy_lane(event: Seen) -> tuple[str, str]:
    return event.name.removeprefix("diy-"), event.text


def _collect(
    seen: queue.Queue[Seen],
    lane_of: Callable[[Seen], tuple[str, str]],
    profile: str,
    deadline: float,
    lanes: list[str] = LANES,
) -> dict[str, float]:
    """Arrival time per lane (of ``lanes``) of the first ConfigMap event showing ``profile``."""
    arrived: dict[str, float] = {}
    while len(arrived) < len(lanes):
        try:
            event = seen.get(timeout=max(0.0, deadline - time.perf_counter()))
        except queue.Empty:
            missing = sorted(set(lanes) - set(arrived))
            raise TimeoutError(f"no ConfigMap showed {profile!r} in time for {missing}") from None
        lane, shown = lane_of(event)
        if shown == profile and lane in lanes:
            arrived.setdefault(lane, event.at)
    return arrived


def _aligned(operator: OperatorProcess) -> float:
    return sum(operator.metrics().get("detection_operator_aligned_objects", {}).values())


def _drain(seen: queue.Queue[Seen]) -> None:
    while not seen.empty():
        seen.get_nowait()


@contextmanager
def _watching(api: client.ApiClient, namespace: str, key: str) -> Iterator[queue.Queue[Seen]]:
    seen: queue.Queue[Seen] = queue.Queue()
    stop = threading.Event()
    threading.Thread(target=watch_config_map_key, args=(api, namespace, key, seen, stop), daemon=True).start()
    try:
        yield seen
    finally:
        stop.set()


def run_case(
    plane: LocalControlPlane, api: client.ApiClient, workdir: Path, case: Case, rng: random.Random
) -> CaseResult:
    """Start the parts for one case, step the metric ``case.steps`` times, and time both paths."""
    namespace = f"reaction-{case.scrape}-{case.interval}-{case.for_count}".replace(".", "-")
    create_namespace(api, namespace)
    labels = {"namespace": namespace}
    selector = f'{METRIC}{{namespace="{namespace}"}}'
    interval = parse_duration(case.interval)
    result = CaseResult(case)
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        exporter = stack.enter_context(MetricExporter())
        exporter.set(METRIC, LOW, labels)
        receiver_api = api_client(plane.kubeconfig)  # its own client: the receiver answers on its threads
        stack.callback(receiver_api.close)
        receiver = stack.enter_context(diy.PatchingReceiver(receiver_api, namespace, BREACH, CLEAR))
        receiver.create_config_maps(LANES)
        alertmanager = stack.enter_context(
            AlertmanagerServer(
                workdir / "alertmanager",
                receiver.url,
                group_by=["alertname", "lane"],
                group_wait=case.group_wait,
                group_interval=case.interval,
            )
        )
        rules = diy.write_rule_file(
            workdir / "rules.yml", LANES, f"max({selector}) > {THRESHOLD:g}", case.interval, case.rule_for
        )
        prom = stack.enter_context(
            PrometheusServer(
                workdir / "prometheus",
                targets=[exporter.target],
                scrape_interval=case.scrape,
                rule_files=[rules],
                alertmanagers=[alertmanager.target],
            )
        )
        prom.wait_for_series(selector)
        operator_seen = stack.enter_context(_watching(api, namespace, "profile.json"))
        diy_seen = stack.enter_context(_watching(api, namespace, "profile"))
        env = {"DETECTION_OPERATOR_PROMETHEUS_URL": prom.url}
        operator = stack.enter_context(
            OperatorProcess(plane.kubeconfig, workdir / "operator.log", [namespace], env)
        )
        custom = client.CustomObjectsApi(api)

        def create(lane: str) -> None:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "detectionpolicies", policy_body(lane, case)
            )

        # Lane 0 first: its ConfigMap shows the operator's watch is live (/healthz answers before that),
        # so the later lanes are created (and first evaluated) at moments spread over one interval.
        create(LANES[0])
        first = _collect(operator_seen, _operator_lane, CLEAR, time.perf_counter() + 120, LANES[:1])
        for i, lane in enumerate(LANES[1:], start=1):
            time.sleep(max(0.0, first[LANES[0]] + i * interval / len(LANES) - time.perf_counter()))
            create(lane)
        _collect(operator_seen, _operator_lane, CLEAR, time.perf_counter() + 120, LANES[1:])
        # A breach comes to an operator that has run for a while: step only once every lane follows its
        # data's refresh (two refreshes seen), as the operator's own gauge says.
        wait_for(
            lambda: _aligned(operator) >= len(LANES),
            timeout=60 + 4 * case.period,
            what="every lane aligned on the scrape",
        )
        budget = 60 + 10 * case.period + case.for_count * interval
        # Stratified phases of the scrape cycle (shuffled): a dozen plain random draws can all land
        # in one part of the cycle, and the wait for the next scrape would then look shorter or longer.
        phases = [(i + rng.random()) / case.steps for i in range(case.steps)]
        rng.shuffle(phases)
        for step in range(case.steps):
            breach = step % 2 == 0
            value, profile = (HIGH, BREACH) if breach else (LOW, CLEAR)
            _drain(operator_seen)
            _drain(diy_seen)
            # The step lands at a random phase of the scrape cycle, as a real breach would; the previous
            # step ended at a phase tied to the scrape, so an offset spread over one interval spreads it.
            time.sleep(phases[step] * parse_duration(case.scrape))
            wall0, t0 = time.time(), time.perf_counter()
            exporter.set(METRIC, value, labels)
            deadline = t0 + budget
            operator_at = _collect(operator_seen, _operator_lane, profile, deadline)
            diy_at = _collect(diy_seen, _diy_lane, profile, deadline)
            scrape_ts = min(
                ts
                for ts, v in prom.raw_samples(selector, budget + case.period)
                if v == value and ts > wall0 - 0.05
            )
            scraped = t0 + max(0.0, scrape_ts - wall0)
            direction = "breach" if breach else "clear"
            result.scraped.append(scraped - t0)
            result.operator[direction] += [at - t0 for at in operator_at.values()]
            result.diy[direction] += [at - t0 for at in diy_at.values()]
            result.operator_after_scrape[direction] += [at - scraped for at in operator_at.values()]
            status = "firing" if breach else "resolved"
            # Oldest last, so the dict keeps each lane's first webhook after the step.
            webhooks = {
                d.lane: d.at for d in reversed(receiver.deliveries) if d.at > t0 and d.status == status
            }
            result.diy_webhook_after_scrape[direction] += [webhooks[lane] - scraped for lane in LANES]
            result.diy_patch += [diy_at[lane] - webhooks[lane] for lane in LANES]
            print(
                f"  {case.label} step {step + 1}/{case.steps} ({direction}): "
                f"operator {Stats.of(list(operator_at.values())).median - t0:.2f} s, "
                f"DIY {Stats.of(list(diy_at.values())).median - t0:.2f} s",
                flush=True,
            )
    return result


def reaction_times(workdir: Path, cases: list[Case], seed: int = 1) -> list[CaseResult]:
    """Run every case against one control plane; each case gets fresh Prometheus, Alertmanager, operator."""
    rng = random.Random(seed)
    with control_plane(workdir) as (plane, api):
        return [run_case(plane, api, workdir / f"case-{i}", case, rng) for i, case in enumerate(cases)]


def _ratio(stats: Stats, period: float) -> str:
    return f"{stats.median / period:.2f}x | {stats.p90 / period:.2f}x"


def _pair(samples: dict[str, list[float]]) -> str:
    """'breach / clear' medians."""
    return f"{Stats.of(samples['breach']).median:.2f} s / {Stats.of(samples['clear']).median:.2f} s"


def section(results: list[CaseResult]) -> list[str]:
    """The RESULTS.md section for breach -> switch and the DIY side by side."""
    lines = [
        "## Breach -> switch, end to end; the hand-built alternative side by side",
        "",
        "The exporter steps one metric across the threshold at t0, at a random phase of the scrape cycle",
        "(alternately breach and clear); the clock stops when a separate watch sees the ConfigMap change.",
        "**Operator**: the real operator process, DetectionPolicy with one rule, `minDwell` and",
        "`stabilizationWindow` 0s. **DIY**: an alerting rule on the same metric in the same Prometheus",
        "(rule group `interval` = the policy's interval, `for` = (for count - 1) x interval), a real",
        "Alertmanager (`group_wait: 0s`, `group_interval` = the interval, grouped by alert and lane) and a",
        "webhook receiver that patches another ConfigMap. Both paths run together on every step, in",
        f"{len(LANES)} lanes each (objects / rule groups). The operator evaluates each lane right after",
        "the scrape that refreshes its series (scrape alignment, the default), Prometheus each rule group",
        "at its own hashed offset. `for` delays the breach only; clearing takes one evaluation on both",
        "paths. period = scrape interval + evaluation interval; the issue's aim: median <= 0.6x with",
        "`for 1` and DIY / operator >= 1.5.",
        "",
        "| scrape + interval, for | direction | path | median | p90 | p99 | min | max | n "
        "| median / period | p90 / period |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for direction in ("breach", "clear"):
            for path, samples in (("operator", r.operator), ("DIY", r.diy)):
                stats = Stats.of(samples[direction])
                lines.append(
                    f"| {r.case.label} | {direction} | {path} | {stats.row('s')} "
                    f"| {_ratio(stats, r.case.period)} |"
                )
    lines += [
        "",
        "Where the time goes (medians, breach / clear): the step waits for the next scrape, then for the",
        "next evaluation (plus (for - 1) x interval on a breach); the DIY path then goes through",
        "Prometheus' notifier and Alertmanager (a new group waits `group_wait`; a resolved alert waits for",
        "its group's next `group_interval` tick) and the receiver's patch.",
        "",
        "| scrape + interval, for | step -> scraped | operator: scraped -> ConfigMap "
        "| DIY: scraped -> webhook | DIY: webhook -> ConfigMap | DIY / operator, breach / clear |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        ratios = " / ".join(
            f"{Stats.of(r.diy[d]).median / Stats.of(r.operator[d]).median:.2f}" for d in ("breach", "clear")
        )
        patch_ms = Stats.of(r.diy_patch).median * 1e3
        lines.append(
            f"| {r.case.label} | {Stats.of(r.scraped).median:.2f} s | {_pair(r.operator_after_scrape)} "
            f"| {_pair(r.diy_webhook_after_scrape)} | {patch_ms:.0f} ms | {ratios} |"
        )
    lines += [
        "",
        "Aligned, the operator's part after the scrape is its margin (0.1 s to start) plus one",
        "evaluation and the write, so breach -> switch is the wait for the scrape (half a scrape interval",
        "on average) plus that, and `for N` adds (N - 1) x interval by definition. The DIY path waits for",
        "its rule group's next evaluation after the scrape (half an interval on average), then for",
        "Prometheus' notifier and Alertmanager.",
        "",
        "What the DIY path lacks, beyond the code one has to write and run: no hysteresis (a clear",
        "threshold needs a second rule or `unless` tricks), no minimum dwell or stabilization",
        "(`keep_firing_for` only delays the resolve), missing data reads as resolved and reverts the",
        "switch instead of holding and then falling back, no precedence between rules that want",
        "different profiles, no status, conditions, Events, revision or scorecard, and a failed patch",
        "is retried only as Alertmanager retries the notification.",
        "",
    ]
    return lines
