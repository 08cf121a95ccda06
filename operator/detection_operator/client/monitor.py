"""The SDK metric catalog: what services record about their model and agent runs and external calls.

A service instruments itself with :class:`PerformanceMonitor` (models and agents) and, for external
intelligence services, :class:`ExternalMetrics` (used by :mod:`~detection_operator.client.external`).
The names, labels and buckets below are the ones ``metricsFrom: sdk`` generates its queries from and
``docs/sdk/metrics.md`` documents; change them only together. Every series describes runs that happened:
before the first run of a model there is none, so an idle backup has no series (idle, not failing).

    monitor = PerformanceMonitor()            # the default prometheus-client registry
    monitor.record_run(model="neuroweaver-v3", status="success", duration_ms=41, tokens=310, cost=0.002)
    monitor.record_accuracy({"label": "bot"}, {"label": "bot"}, source="chargeback", model="neuroweaver-v3")
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from typing import Any, Literal

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from .accuracy import score

__all__ = [
    "DURATION_BUCKETS",
    "SCORE_BUCKETS",
    "ExternalMetrics",
    "PerformanceMonitor",
]

#: Seconds (``le``) of every duration histogram.
DURATION_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Quality, confidence and accuracy scores (``le``), all in [0, 1].
SCORE_BUCKETS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: Bytes per ``memory_mb`` (decimal megabytes).
BYTES_PER_MB = 1_000_000

Status = Literal["success", "error", "timeout"]
STATUSES: tuple[str, ...] = ("success", "error", "timeout")
Kind = Literal["model", "agent"]


def _identity(model: str | None, agent: str | None) -> tuple[str, Kind]:
    if (model is None) == (agent is None):
        raise ValueError("name exactly one of model= or agent=")
    kind: Kind = "model" if model is not None else "agent"
    name = model if model is not None else agent
    if not name:
        raise ValueError(f"the {kind} name must not be empty")
    return name, kind


def _share(name: str, value: float | None) -> float | None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, not {value!r}")
    return value


def _amount(name: str, value: float | None) -> float | None:
    if value is not None and not value >= 0:  # also refuses NaN
        raise ValueError(f"{name} must be a number >= 0, not {value!r}")
    return value


class PerformanceMonitor:
    """Records model and agent runs as the catalog's ``neuroweaver_*`` metrics in ``registry``.

    ``labels`` are constant labels added to every series (e.g. ``{"namespace": "shop"}`` where no
    Prometheus relabelling adds them). One monitor per registry: a second one on the same registry
    would register the same names twice, which prometheus-client refuses.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, labels: Mapping[str, str] | None = None
    ) -> None:
        """Register the catalog's metrics in ``registry`` (prometheus-client's default one if None)."""
        registry = REGISTRY if registry is None else registry
        self.constant = dict(labels or {})
        extra = tuple(sorted(self.constant))
        who = ("model", "kind", *extra)

        def metric(kind: type[Any], name: str, doc: str, labels: tuple[str, ...] = (), **more: Any) -> Any:
            return kind(name, doc, (*who, *labels), registry=registry, **more)

        self.requests = metric(
            Counter, "neuroweaver_requests_total", "Runs by outcome (success, error, timeout).", ("outcome",)
        )
        self.errors = metric(
            Counter,
            "neuroweaver_errors_total",
            "Failed runs (error or timeout) by error type.",
            ("error_type",),
        )
        self.duration = metric(
            Histogram,
            "neuroweaver_request_duration_seconds",
            "Run duration in seconds, every outcome.",
            buckets=DURATION_BUCKETS,
        )
        self.tokens = metric(Counter, "neuroweaver_tokens_total", "Tokens used.")
        self.cost = metric(Counter, "neuroweaver_cost_total", "Cost, in the currency units the service uses.")
        self.cpu = metric(Counter, "neuroweaver_cpu_seconds_total", "CPU time spent on runs, in seconds.")
        self.memory = metric(Gauge, "neuroweaver_memory_bytes", "Memory the last run used, in bytes.")
        self.quality = metric(
            Histogram, "neuroweaver_quality", "Quality score of a run, 0-1.", buckets=SCORE_BUCKETS
        )
        self.confidence = metric(
            Histogram, "neuroweaver_confidence", "Confidence of a run's answer, 0-1.", buckets=SCORE_BUCKETS
        )
        self.accuracy = metric(
            Histogram,
            "neuroweaver_accuracy_score",
            "Accuracy of an answer against the real outcome, 0-1, by where the outcome came from.",
            ("source",),
            buckets=SCORE_BUCKETS,
        )

    def _who(self, model: str | None, agent: str | None) -> dict[str, str]:
        name, kind = _identity(model, agent)
        return {"model": name, "kind": kind, **self.constant}

    def record_run(
        self,
        model: str | None = None,
        agent: str | None = None,
        *,
        status: Status,
        duration_ms: float,
        tokens: float = 0,
        cost: float = 0,
        memory_mb: float | None = None,
        cpu_ms: float | None = None,
        quality: float | None = None,
        confidence: float | None = None,
        error_type: str | None = None,
    ) -> None:
        """Record one run of ``model`` or of ``agent`` (name exactly one).

        ``status`` is success, error or timeout; a failed run counts under ``error_type`` (default: the
        status itself). Quality and confidence are in [0, 1]; amounts are >= 0. Raises ValueError for
        anything else, recording nothing.
        """
        who = self._who(model, agent)
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        if status == "success" and error_type is not None:
            raise ValueError("error_type is for failed runs (status error or timeout) only")
        for name, value in (("duration_ms", duration_ms), ("tokens", tokens), ("cost", cost)):
            _amount(name, value)
        _amount("memory_mb", memory_mb)
        _amount("cpu_ms", cpu_ms)
        _share("quality", quality)
        _share("confidence", confidence)
        self.requests.labels(**who, outcome=status).inc()
        if status != "success":
            self.errors.labels(**who, error_type=error_type or status).inc()
        self.duration.labels(**who).observe(duration_ms / 1000)
        if tokens:
            self.tokens.labels(**who).inc(tokens)
        if cost:
            self.cost.labels(**who).inc(cost)
        if cpu_ms is not None:
            self.cpu.labels(**who).inc(cpu_ms / 1000)
        if memory_mb is not None:
            self.memory.labels(**who).set(memory_mb * BYTES_PER_MB)
        if quality is not None:
            self.quality.labels(**who).observe(quality)
        if confidence is not None:
            self.confidence.labels(**who).observe(confidence)

    def record_accuracy(
        self, predicted: Any, actual: Any, source: str, *, model: str | None = None, agent: str | None = None
    ) -> float:
        """Score ``predicted`` against the real outcome ``actual``
        (:func:`~detection_operator.client.accuracy.score`), observe it under ``source`` (where the
        outcome came from: ``chargeback``, ``review``, ...) and return it."""
        who = self._who(model, agent)
        if not source:
            raise ValueError("source must name where the actual outcome came from")
        value = score(predicted, actual)
        self.accuracy.labels(**who, source=source).observe(value)
        return value


ExternalOutcome = Literal["ok", "timeout", "error", "bad-signature"]
EXTERNAL_OUTCOMES: tuple[str, ...] = ("ok", "timeout", "error", "bad-signature")


class ExternalMetrics:
    """The catalog's ``detector_external_*`` metrics: calls to external intelligence services.

    The accuracy gauge is the mean accuracy score of the last ``window`` verdicts whose real outcome
    became known.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        labels: Mapping[str, str] | None = None,
        window: int = 100,
    ) -> None:
        """Register the metrics in ``registry`` (prometheus-client's default one if None)."""
        registry = REGISTRY if registry is None else registry
        self.constant = dict(labels or {})
        names = ("service", *sorted(self.constant))
        self.calls = Counter(
            "detector_external_calls_total",
            "Calls to external services by outcome (ok, timeout, error, bad-signature).",
            (*names, "outcome"),
            registry=registry,
        )
        self.errors = Counter(
            "detector_external_errors_total",
            "Calls to external services that gave no usable verdict.",
            names,
            registry=registry,
        )
        self.duration = Histogram(
            "detector_external_duration_seconds",
            "Call duration in seconds, every outcome.",
            names,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.accuracy = Gauge(
            "detector_external_accuracy_ratio",
            "Mean accuracy of the service's recent verdicts against real outcomes, 0-1.",
            names,
            registry=registry,
        )
        self.window = window
        self._scores: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def record_call(self, service: str, outcome: ExternalOutcome, duration_seconds: float) -> None:
        """Count one call and its duration."""
        if outcome not in EXTERNAL_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(EXTERNAL_OUTCOMES)}, not {outcome!r}")
        labels = {"service": service, **self.constant}
        self.calls.labels(**labels, outcome=outcome).inc()
        if outcome != "ok":
            self.errors.labels(**labels).inc()
        self.duration.labels(**labels).observe(max(0.0, duration_seconds))

    def record_accuracy(self, service: str, predicted: Any, actual: Any) -> float:
        """Score one verdict against its real outcome, update the service's accuracy gauge, return it."""
        value = score(predicted, actual)
        with self._lock:
            scores = self._scores.setdefault(service, deque(maxlen=self.window))
            scores.append(value)
            mean = sum(scores) / len(scores)
        self.accuracy.labels(service=service, **self.constant).set(mean)
        return value
