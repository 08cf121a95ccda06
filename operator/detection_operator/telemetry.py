"""The operator's own Prometheus metrics (served on /metrics), all prefixed ``detection_operator_``.

Per-object series (profile, model, health, expense, switches) are labelled with the object's namespace
and name plus a value taken from its spec (a profile, model or contributor name: at most 16 profiles and
a bounded list of models and contributors per object, so cardinality is bounded by the objects). They are
tracked per object so that an object's series go away when it is deleted and a name dropped from a spec
stops being exported: no stale series.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Mapping

from prometheus_client import Counter, Gauge, Histogram

from .core.identity import Key

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

EVALUATIONS = Counter("detection_operator_evaluations", "Evaluations by kind and result.", ["kind", "result"])
EVALUATION_DURATION = Histogram(
    "detection_operator_evaluation_duration_seconds",
    "Wall time of one evaluation, queries to status.",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
)
QUERY_DURATION = Histogram(
    "detection_operator_prometheus_query_duration_seconds",
    "Wall time of one PromQL request to Prometheus, by outcome (ok or the cause of the missing value).",
    ["outcome"],
    buckets=_LATENCY_BUCKETS,
)
DECISION_TO_PATCH = Histogram(
    "detection_operator_decision_to_patch_seconds",
    "From the decision to the owned ConfigMap applied.",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
SCHEDULE_LAG = Histogram(
    "detection_operator_schedule_lag_seconds",
    "How late an evaluation started after it was due.",
    buckets=(0.001, 0.0025, *_LATENCY_BUCKETS),
)
QUERIES_COALESCED = Counter(
    "detection_operator_prometheus_queries_coalesced",
    "Queries answered by an identical query in flight or answered within the coalescing window.",
)
OBJECTS = Gauge("detection_operator_objects", "Objects known to the scheduler.", ["kind"])
ALIGNED = Gauge(
    "detection_operator_aligned_objects",
    "Objects this replica evaluates right after their data is refreshed (scrape alignment); the others keep"
    " a fixed phase.",
)
HISTORY_SNAPSHOTS = Counter(
    "detection_operator_history_snapshots",
    "Snapshots for the history store: taken, stored, dropped (the queue was full during a long outage).",
    ["outcome"],
)
HISTORY_SNAPSHOTS_PENDING = Gauge(
    "detection_operator_history_snapshots_pending", "Snapshots queued for the history store, not yet stored."
)
ACTIVE_PROFILE = Gauge(
    "detection_operator_active_profile",
    "1 for the DetectionPolicy's active profile, 0 for its other profiles.",
    ["namespace", "name", "profile"],
)
ACTIVE_MODEL = Gauge(
    "detection_operator_active_model",
    "1 for the ModelRoute's active model, 0 for its other models.",
    ["namespace", "name", "model"],
)
MODEL_HEALTH = Gauge(
    "detection_operator_model_health_score",
    "Health score (0-100) of each model of a ModelRoute; absent while a model has no metrics.",
    ["namespace", "name", "model"],
)
CONTRIBUTOR_EXPENSE = Gauge(
    "detection_operator_contributor_expense",
    "Expense class of each contributor of a DetectionPolicy: 0 light, 1 medium, 2 heavy.",
    ["namespace", "name", "contributor"],
)
SWITCHES = Counter(
    "detection_operator_switches",
    "Profile switches (DetectionPolicy) and model switches (ModelRoute).",
    ["kind", "namespace", "name"],
)
ALERTS_SENT = Counter("detection_operator_alerts_sent", "Alert deliveries that succeeded.", ["receiver"])
ALERTS_FAILED = Counter(
    "detection_operator_alerts_failed", "Alert deliveries that failed after every attempt.", ["receiver"]
)
LEADER = Gauge(
    "detection_operator_leader",
    "1 while this replica holds a bucket Lease (the leader Lease with one bucket).",
)
BUCKETS_HELD = Gauge("detection_operator_buckets_held", "Bucket Leases this replica holds and may write for.")
BUCKETS_TOTAL = Gauge("detection_operator_buckets", "Buckets the objects are split into.")
LOAD_HELD = Gauge(
    "detection_operator_load_held_ratio",
    "Share of all buckets' weight (evaluations per hour of their objects, plus one per bucket) this replica "
    "holds; about 1/N of live replicas when balanced.",
)
LIVE_REPLICAS = Gauge("detection_operator_live_replicas", "Replicas this one sees alive (member Leases).")
BUCKET_CHANGES = Counter(
    "detection_operator_bucket_changes",
    "Bucket ownership changes of this replica: acquired, released (to rebalance or at shutdown), lost.",
    ["change"],
)

_PER_OBJECT = (ACTIVE_PROFILE, ACTIVE_MODEL, MODEL_HEALTH, CONTRIBUTOR_EXPENSE)
_Series = Gauge | Counter


class ObjectSeries:
    """Per-object gauges, with each object's exported label values remembered so they can be removed."""

    def __init__(self) -> None:
        self._exported: dict[tuple[Key, int], set[tuple[str, ...]]] = defaultdict(set)

    def publish(self, gauge: Gauge, key: Key, values: Mapping[str, float | None]) -> None:
        """Set ``gauge{namespace,name,<item>}`` for each item of one object; drop items no longer there.

        A None value removes that item's series (e.g. a model without a health score).
        """
        _, namespace, name = key
        exported = self._exported[(key, id(gauge))]
        current = {(namespace, name, item) for item, value in values.items() if value is not None}
        for labels in exported - current:
            _remove(gauge, labels)
        for item, value in values.items():
            if value is not None:
                gauge.labels(namespace, name, item).set(value)
        exported.clear()
        exported.update(current)

    def switched(self, kind: str, key: Key) -> None:
        """Count a switch of ``key``; the series is created on first use and removed by :meth:`forget`."""
        SWITCHES.labels(kind, key[1], key[2]).inc()
        self._exported[(key, id(SWITCHES))].add((kind, key[1], key[2]))

    def forget(self, key: Key) -> None:
        """Remove every series of a deleted object."""
        for metric in (*_PER_OBJECT, SWITCHES):
            for labels in self._exported.pop((key, id(metric)), set()):
                _remove(metric, labels)

    def clear(self, affected: Callable[[Key], bool] = lambda _: True) -> None:
        """Remove the per-object series of the ``affected`` objects (this replica gained or lost them)."""
        for key in {key for key, _ in self._exported if affected(key)}:
            self.forget(key)


def _remove(metric: _Series, labels: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):  # never created (e.g. a gauge published with every value None)
        metric.remove(*labels)
