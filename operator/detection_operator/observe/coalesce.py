"""Coalesce identical instant queries issued by many objects within a short window.

Policies across a cluster repeat the same queries: expense queries are templated on `$contributor`, not on
the namespace, and every policy in a namespace shares its `$namespace` queries. At 2,000 objects and a 10 s
interval that is thousands of identical HTTP requests per second. Prometheus only has new samples once
per scrape (15 to 60 s in practice), so answering a repeat from a result at most ``ttl`` seconds old changes
nothing a decision can see, while a query in flight is simply awaited by everyone who asks for it.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..core.readings import Reading
from ..telemetry import QUERIES_COALESCED
from .source import MetricsSource


@dataclass
class _Entry:
    running: asyncio.Task[Reading] | None
    """The query in flight, awaited by everyone who asks; dropped once answered."""
    asked: float
    """Unix time the query was sent: a caller that needs a refresh after some moment needs it after that."""
    expires: float = float("inf")
    """When the result stops being reused; +inf while the query is still running."""
    reading: Reading | None = None


class CoalescingSource:
    """A source that shares one answer among identical queries within ``ttl`` seconds.

    Used from one event loop only (no locks: nothing yields between a lookup and its update).
    """

    def __init__(
        self,
        inner: MetricsSource,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.inner = inner
        self._ttl = ttl
        self._clock = clock
        self._wall = wall
        self._entries: dict[tuple[str, float | None], _Entry] = {}
        self._next_sweep = clock() + ttl

    async def query(self, promql: str, at: float | None = None, fresh_after: float | None = None) -> Reading:
        """Answer from a result at most ``ttl`` seconds old or in flight (and asked after the Unix time
        ``fresh_after``, if given: an evaluation due right after a scrape must not get an answer from
        before it), else run the query."""
        key = self._key(promql, at)
        now = self._clock()
        self._sweep(now)
        entry = self._entries.get(key)
        if entry is not None and entry.expires > now and (fresh_after is None or entry.asked >= fresh_after):
            QUERIES_COALESCED.inc()
            if entry.reading is not None:
                return entry.reading
        else:
            running = asyncio.ensure_future(self.inner.query(promql, at))
            entry = _Entry(running, asked=self._wall())
            self._entries[key] = entry
            running.add_done_callback(functools.partial(self._answered, key, entry))
        assert entry.running is not None
        # Shielded: one caller giving up (its evaluation cancelled) must not cancel everyone's query.
        return await asyncio.shield(entry.running)

    def _answered(self, key: tuple[str, float | None], entry: _Entry, task: asyncio.Task[Reading]) -> None:
        if task.cancelled() or task.exception() is not None:
            # Nobody may be handed a failure later: the next caller tries afresh.
            if self._entries.get(key) is entry:
                del self._entries[key]
            return
        entry.reading, entry.running, entry.expires = task.result(), None, self._clock() + self._ttl

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
        return len(self._entries)

    async def aclose(self) -> None:
        """Release the inner source's connections."""
        await self.inner.aclose()
