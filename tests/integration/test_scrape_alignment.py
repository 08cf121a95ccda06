"""Scrape-aligned evaluation against a real Prometheus: a policy is evaluated right after the scrape that
changes its data, not at a phase of its own.

Prometheus scrapes every 4 s and the policy's interval is 3 s. On its own grid the operator would see a
step between 0 and 3 s after the scrape stored it, a different delay at every step (the two periods
drift against each other: under the bound in 2 of 5 steps); aligned, it evaluates after every scrape (4 s
is more than an interval) and sees the step within its margin (0.1 s) plus one evaluation. Each step lands
at a random moment; the clock runs from the sample's own timestamp (when Prometheus scraped it) to the
published profile.json.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from detection_testing.exporter import MetricExporter
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.prometheus import PrometheusServer
from detection_testing.specs import LATENCY_METRIC, latency_policy
from detection_testing.watched import Watched

SCRAPE_S = 4.0
INTERVAL_S = 3.0
BOUND_S = 1.2
"""Scrape -> profile.json at most: the aligned margin, one evaluation and the watch, with room for a
loaded machine; 2 in 5 unaligned steps fall under it, all six together 1 run in 250."""
STEPS = 6


@pytest.fixture(scope="module")
def prometheus(
    exporter: MetricExporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    with PrometheusServer(
        tmp_path_factory.mktemp("prometheus"), targets=[exporter.target], scrape_interval=f"{SCRAPE_S:g}s"
    ) as prom:
        yield prom


def _aligned(operator: OperatorProcess) -> float:
    return sum(operator.metrics().get("detection_operator_aligned_objects", {}).values())


def published(policy: Watched) -> str | None:
    document = policy.document("profile.json")
    return None if document is None else str(document["profile"])


def test_a_policy_is_evaluated_right_after_the_scrape_that_changes_its_data(
    operator: OperatorProcess,
    kube: client.ApiClient,
    namespace: str,
    exporter: MetricExporter,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    labels = {"namespace": namespace}
    selector = f'{LATENCY_METRIC}{{namespace="{namespace}"}}'
    exporter.set(LATENCY_METRIC, 100, labels)
    prometheus.wait_for_series(selector, timeout=30)
    policy = Watched(kube, namespace, "DetectionPolicy", "aligned", "aligned-detection-profile")
    policy.create(latency_policy(interval=f"{INTERVAL_S:g}s", stabilizationWindow="0s", minDwell="0s"))
    wait_for(lambda: published(policy) == "balanced", timeout=60, what="first profile")
    # Two refreshes seen, the phase is learned: the operator's gauge counts the policy as aligned.
    wait_for(lambda: _aligned(operator) == 1, timeout=60, what="detection_operator_aligned_objects 1")
    rng = random.Random(19)
    delays = []
    for step in range(STEPS):
        value, profile = (300, "lean") if step % 2 == 0 else (100, "balanced")
        time.sleep(rng.uniform(0, SCRAPE_S))  # a random moment of the scrape cycle, as a real breach
        stepped = time.time()
        exporter.set(LATENCY_METRIC, value, labels)
        wait_for(lambda p=profile: published(policy) == p, timeout=4 * SCRAPE_S, what=profile, interval=0.02)  # type: ignore[misc]
        seen = time.time()
        scraped = min(
            ts
            for ts, v in prometheus.raw_samples(selector, 4 * SCRAPE_S)
            if v == value and ts > stepped - 0.05
        )
        delays.append(seen - scraped)
    assert max(delays) < BOUND_S, delays
