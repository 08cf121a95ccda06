"""SIGKILL during delivery: n trials of killing the real operator while a real webhook receiver fails a
notification, then recovering the receiver and restarting the operator (testing/detection_testing/
delivery_trials.py). Counts delivered, duplicated after dedup by id, and lost."""

from __future__ import annotations

import json
import random
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from detection_testing.delivery_trials import Trial, balanced_policy, kill_during_retry
from detection_testing.exporter import MetricExporter
from detection_testing.operator_process import OperatorProcess
from detection_testing.prometheus import PrometheusServer
from detection_testing.receiver import WebhookReceiver

from .harness import commit, control_plane, create_namespace


@dataclass(frozen=True)
class Summary:
    """The trials' outcomes."""

    trials: list[Trial]
    seconds: float

    @property
    def delivered(self) -> int:
        return sum(1 for t in self.trials if not t.lost)

    @property
    def duplicated(self) -> int:
        return sum(1 for t in self.trials if t.duplicated)

    @property
    def lost(self) -> int:
        return sum(1 for t in self.trials if t.lost)

    @property
    def redelivered(self) -> int:
        return sum(t.redelivered for t in self.trials)


def kill_during_delivery(workdir: Path, trials: int = 24, seed: int = 18) -> Summary:
    """Run ``trials`` trials, killing after 1, 2 or 3 failed tries (drawn at random, seeded)."""
    draw = random.Random(seed)
    namespace = "bench-delivery"
    with ExitStack() as stack:
        plane, api = stack.enter_context(control_plane(workdir))
        exporter = stack.enter_context(MetricExporter())
        prometheus = stack.enter_context(
            PrometheusServer(workdir / "prometheus", targets=[exporter.target], scrape_interval="1s")
        )
        receiver = stack.enter_context(WebhookReceiver())
        receivers = workdir / "receivers.json"
        hook = {"name": "hook", "type": "webhook", "url": receiver.url + "/hook", "timeoutSeconds": 1}
        receivers.write_text(json.dumps({"receivers": [{**hook, "attempts": 3}]}))
        create_namespace(api, namespace)
        env = {
            "DETECTION_OPERATOR_PROMETHEUS_URL": prometheus.url,
            "DETECTION_OPERATOR_RECEIVERS_FILE": str(receivers),
        }
        operator = stack.enter_context(
            OperatorProcess(plane.kubeconfig, workdir / "operator.log", [namespace], env)
        )
        labels = {"namespace": namespace}
        policy = balanced_policy(api, namespace, exporter, prometheus)
        started = time.monotonic()
        found = [
            kill_during_retry(
                policy,
                operator,
                receiver,
                exporter,
                labels,
                to_lean=i % 2 == 0,
                tries_before_kill=draw.randint(1, 3),
            )
            for i in range(trials)
        ]
        return Summary(found, time.monotonic() - started)


def section(workdir: Path) -> list[str]:
    """The RESULTS.md section."""
    summary = kill_during_delivery(workdir)
    by_point = {k: sum(1 for t in summary.trials if t.tries_before_kill == k) for k in (1, 2, 3)}
    return [
        "## SIGKILL during delivery: delivered / duplicated after dedup / lost",
        "",
        "Per trial: a DetectionPolicy switches while a real webhook receiver answers 503 to its notice",
        "(3 tries a round, 1 s timeout); the operator (a real process) is SIGKILLed after the receiver has",
        f"failed 1, 2 or 3 tries of it (drawn: {by_point[1]}, {by_point[2]}, {by_point[3]} trials; 3 = the",
        "whole first round, the retry waiting in status), the receiver recovers and the operator restarts.",
        "Duplicated after dedup: the same switch delivered under two record ids (a receiver deduplicating",
        "by id would keep both). Redelivered: an id delivered again (deduplicated by the receiver).",
        "",
        f"Taken {datetime.now(UTC):%Y-%m-%d %H:%M} UTC at commit {commit()}.",
        "",
        "| trials | delivered | duplicated after dedup | lost | redelivered (same id) | run time |",
        "|---|---|---|---|---|---|",
        f"| {len(summary.trials)} | {summary.delivered} | {summary.duplicated} | {summary.lost} | "
        f"{summary.redelivered} | {summary.seconds:.0f} s |",
        "",
    ]
