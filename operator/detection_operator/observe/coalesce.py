"""Coalesce identical instant queries issued by many objects within a short window.

Policies across a cluster repeat the same queries: expense queries are templated on `$contributor`, not on
the namespace, and every policy in a namespace shares its `$namespace` queries. At 2,000 objects and a 10 s
interval that is thousands of identical HTTP requests per second. Prometheus only has new samples once
per scrape (15 to 60 s in practice), so answering a repeat from a result at most ``ttl`` seconds old changes
nothing a decision can see, while a query in flight is simply awaited by everyone who asks for it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from ..runtime.telemetry import QUERIES_COALESCED
from .source import MetricsSource, Reading


@dataclass
class _Entry:
    pending: Future[Reading] | None
    """What callers wait on while the query runs; dropped once answered (a Future holds a Condition)."""
    expires: float = float("inf")
    """When the result stops being reused; +inf while the query is still running."""
    reading: Reading | None = None


class CoalescingSource:
    """A source that shares one answer among identical queries within ``ttl`` seconds (thread-safe)."""

    def __init__(self, inner: MetricsSource, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, float | None], _Entry] = {}
        self._next_sweep = clock() + ttl

    def query(self, promql: str, at: float | None = None) -> Reading:
        """Answer from a result at most ``ttl`` seconds old or in flight, else run the query."""
        key = self._key(promql, at)
        with self._lock:
            now = self._clock()
            self._sweep(now)
            entry = self._entries.get(key)
            if entry is not None and entry.expires > now:
                QUERIES_COALESCED.inc()
                if entry.reading is not None:
                    return entry.reading
                shared = entry.pending
            else:
                shared = None
                entry = _Entry(Future())
                self._entries[key] = entry
        if shared is not None:
            return shared.result()
        pending = entry.pending
        assert pending is not None
        try:
            reading = self.inner.query(promql, at)
        except BaseException as exc:
            # Nobody may wait forever on a query that raised; the next caller tries afresh.
            with self._lock:
                if self._entries.get(key) is entry:
                    del self._entries[key]
            pending.set_exception(exc)
            raise
        with self._lock:
            entry.reading, entry.pending, entry.expires = reading, None, self._clock() + self._ttl
        pending.set_result(reading)
        return reading

    def cached(self, promql: str, at: float | None = None) -> Reading | Future[Reading] | None:
        """A finished answer younger than ``ttl``, the Future of the same query in flight, or None.

        Never blocks: the caller awaits the Future its own way (on the event loop, not in a worker).
        """
        with self._lock:
            entry = self._entries.get(self._key(promql, at))
            if entry is None or entry.expires <= self._clock():
                return None
            QUERIES_COALESCED.inc()
            return entry.reading if entry.reading is not None else entry.pending

    def _key(self, promql: str, at: float | None) -> tuple[str, float | None]:
        # Queries at a past time (trends) coalesce when within the same ttl-long slot: a few seconds
        # either way on a window of minutes is the same tolerance as a result ttl seconds old.
        return promql, None if at is None else math.floor(at / self._ttl)

    def _sweep(self, now: float) -> None:
        # Once a ttl: the table then holds about one ttl's worth of distinct queries, whatever the churn.
        if now >= self._next_sweep:
            self._entries = {k: e for k, e in self._entries.items() if e.expires > now}
            self._next_sweep = now + self._ttl

    def __len__(self) -> int:
        """How many answers (or queries in flight) are remembered."""
        with self._lock:
            return len(self._entries)

    def close(self) -> None:
        """Release the inner source's connections."""
        self.inner.close()
