"""A metric simulator: a bot detector, its contributors and an external service, for Prometheus.

It produces the series the DetectionPolicy queries in ``examples/`` read — request-duration histograms,
request, flag, error and call counters, CPU seconds, contributor cost — from a :class:`Traffic`
description ("100 requests/s at 90 ms, 5 % flagged"). Counters grow at the described rates, so
``rate()``, ``increase()`` and ``histogram_quantile()`` over them give back the described values, just as
they would for a real service. Changing the traffic (:meth:`MetricSimulator.play`) is how a scenario
moves from one phase to the next. Models are not simulated here: they are real processes
(:mod:`~detection_testing.model_server`) behind a router that follows route.json, because a
model reports only what it served (:mod:`~detection_testing.router`).

:func:`counter_increments` and :func:`gauge_values` are pure; :class:`MetricSimulator` applies them to a
:class:`~detection_testing.exporter.MetricExporter` from a background thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from .exporter import MetricExporter
from .lifecycle import Looping

__all__ = [
    "BUCKETS",
    "ContributorLoad",
    "DetectorLoad",
    "ExternalLoad",
    "MetricSimulator",
    "Sample",
    "Traffic",
    "counter_increments",
    "gauge_values",
]

#: Histogram bucket bounds in seconds (``le``), fine enough around the example thresholds (150-200 ms).
BUCKETS: Final[tuple[float, ...]] = (0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0)
_TICK_SECONDS: Final = 0.25


@dataclass(frozen=True)
class DetectorLoad:
    """The bot detector's traffic: request rate and latency, share flagged as bots, CPU use."""

    requests_per_second: float = 100.0
    latency_seconds: float = 0.09
    flagged_share: float = 0.05
    cpu_cores: float = 0.6
    cpu_limit_cores: float = 2.0
    memory_bytes: float = 400e6
    memory_limit_bytes: float = 1e9
    #: How much longer than alone each unit of contributor work takes (queueing for a saturated CPU in a
    #: load burst): it lengthens requests, not the contributors' measured runtime or their CPU time.
    #: Read by the closed-loop detector (:func:`~detection_testing.detector.profile_traffic`).
    contention: float = 1.0


@dataclass(frozen=True)
class ContributorLoad:
    """One in-process contributor's cost per call (the detector calls every contributor per request)."""

    runtime_seconds: float
    memory_bytes: float
    timeout_share: float = 0.0


@dataclass(frozen=True)
class ExternalLoad:
    """An external intelligence service as the detector sees it."""

    calls_per_second: float = 50.0
    error_share: float = 0.01
    latency_seconds: float = 0.08
    accuracy: float = 0.9


@dataclass(frozen=True)
class Traffic:
    """Everything the simulator serves at one moment; ``namespace`` labels the detector's series."""

    namespace: str
    detector: DetectorLoad = DetectorLoad()
    contributors: Mapping[str, ContributorLoad] = field(default_factory=dict)
    externals: Mapping[str, ExternalLoad] = field(default_factory=dict)


class Sample(NamedTuple):
    """One series and a number: a counter increment or a gauge value."""

    name: str
    labels: Mapping[str, str]
    value: float


def _histogram(name: str, labels: Mapping[str, str], latency: float, count: float) -> list[Sample]:
    """Observe ``count`` requests of ``latency`` seconds: cumulative buckets, ``_sum`` and ``_count``.

    Every request lands in one bucket, so ``histogram_quantile`` interpolates within that bucket and
    gives back a p95 a little below its upper bound (e.g. 90 ms -> 97.5 ms with bounds 50/100 ms).
    """
    samples = [
        Sample(f"{name}_bucket", {**labels, "le": repr(bound)}, count if latency <= bound else 0.0)
        for bound in BUCKETS
    ]
    samples.append(Sample(f"{name}_bucket", {**labels, "le": "+Inf"}, count))
    samples.append(Sample(f"{name}_sum", labels, latency * count))
    samples.append(Sample(f"{name}_count", labels, count))
    return samples


def counter_increments(traffic: Traffic, seconds: float) -> list[Sample]:
    """What every counter grows by when ``traffic`` runs for ``seconds``."""
    detector = traffic.detector
    requests = detector.requests_per_second * seconds
    ns = {"namespace": traffic.namespace}
    samples = _histogram("detector_request_duration_seconds", ns, detector.latency_seconds, requests)
    samples += [
        Sample("detector_requests_total", ns, requests),
        Sample("detector_flagged_requests_total", ns, requests * detector.flagged_share),
        Sample(
            "container_cpu_usage_seconds_total", {**ns, "container": "detector"}, detector.cpu_cores * seconds
        ),
    ]
    for name, contributor in traffic.contributors.items():
        labels = {"contributor": name}
        samples += [
            Sample("detector_contributor_seconds_sum", labels, contributor.runtime_seconds * requests),
            Sample("detector_contributor_seconds_count", labels, requests),
            Sample("detector_contributor_calls_total", labels, requests),
            Sample("detector_contributor_timeouts_total", labels, requests * contributor.timeout_share),
        ]
    for name, external in traffic.externals.items():
        labels = {"service": name}
        calls = external.calls_per_second * seconds
        samples += _histogram("detector_external_duration_seconds", labels, external.latency_seconds, calls)
        samples += [
            Sample("detector_external_calls_total", labels, calls),
            Sample("detector_external_errors_total", labels, calls * external.error_share),
        ]
    return samples


def gauge_values(traffic: Traffic) -> list[Sample]:
    """The gauges ``traffic`` implies: CPU and memory limits, detector and contributor memory, service
    accuracy."""
    samples = [
        Sample(
            "kube_pod_container_resource_limits",
            {"namespace": traffic.namespace, "container": "detector", "resource": "cpu"},
            traffic.detector.cpu_limit_cores,
        ),
        Sample(
            "kube_pod_container_resource_limits",
            {"namespace": traffic.namespace, "container": "detector", "resource": "memory"},
            traffic.detector.memory_limit_bytes,
        ),
        Sample(
            "container_memory_working_set_bytes",
            {"namespace": traffic.namespace, "container": "detector"},
            traffic.detector.memory_bytes,
        ),
    ]
    samples += [
        Sample("detector_contributor_memory_bytes", {"contributor": name}, c.memory_bytes)
        for name, c in traffic.contributors.items()
    ]
    samples += [
        Sample("detector_external_accuracy_ratio", {"service": name}, e.accuracy)
        for name, e in traffic.externals.items()
    ]
    return samples


class MetricSimulator(Looping):
    """Serve :class:`Traffic` through ``exporter``: counters advance every tick, gauges follow each play().

    The exporter is the caller's (started and stopped by it); the simulator only owns its ticking thread.
    """

    def __init__(
        self, exporter: MetricExporter, traffic: Traffic, tick_seconds: float = _TICK_SECONDS
    ) -> None:
        """Prepare a stopped simulator serving ``traffic`` once started."""
        self.exporter = exporter
        self.tick_seconds = tick_seconds
        self._lock = threading.Lock()
        self._traffic = traffic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def traffic(self) -> Traffic:
        """What is being served now."""
        with self._lock:
            return self._traffic

    def play(self, traffic: Traffic) -> None:
        """Serve ``traffic`` from now on (the next phase of a scenario)."""
        with self._lock:
            self._traffic = traffic
            self._set_gauges(traffic)

    def start(self) -> None:
        """Publish the gauges and start advancing the counters in a daemon thread; no-op if running."""
        with self._lock:
            self._set_gauges(self._traffic)
        self._start_loop("metric-simulator")

    def stop(self) -> None:
        """Stop advancing the counters (the exporter keeps serving their last values)."""
        self._stop_loop()

    def _set_gauges(self, traffic: Traffic) -> None:
        for sample in gauge_values(traffic):
            self.exporter.set(sample.name, sample.value, sample.labels)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.tick_seconds):
            # Advance by the time that really passed: a tick delayed on a loaded machine must not lower
            # the rates Prometheus computes.
            now = time.monotonic()
            with self._lock:
                increments = counter_increments(self._traffic, now - last)
            last = now
            for sample in increments:
                self.exporter.inc(sample.name, sample.value, sample.labels)
