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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..core.readings import Reading
from ..telemetry import QUERIES_COALESCED
from .source import MetricsSource


@dataclass
class _Entry:
    running: asyncio.Future[dict[str, Reading]] | None
    """The inner call in flight that asks this query (with the others of its call), awaited by everyone
    who asks; dropped once answered."""
    asked: float
    """Unix time the query was sent: a caller that needs a refresh after some moment needs it after that."""
    expires: float = float("inf")
    """When the result stops being reused; +inf while the query is still running."""
    reading: Reading | None = None


_Key = tuple[str, float | None]


class CoalescingSource:
    """A source that shares one answer among identical queries within ``ttl`` seconds.

    Used from one event loop only (no locks: nothing yields between a lookup and its update). The
    queries of one call that nobody else has asked go to the inner source together (one request).
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
        self._entries: dict[_Key, _Entry] = {}
        self._next_sweep = clock() + ttl

    async def query(self, promql: str, at: float | None = None, fresh_after: float | None = None) -> Reading:
        """Answer from a result at most ``ttl`` seconds old or in flight (and asked after the Unix time
        ``fresh_after``, if given: an evaluation due right after a scrape must not get an answer from
        before it), else run the query."""
        return (await self.query_many([promql], at, fresh_after))[promql]

    async def query_many(
        self, promqls: Sequence[str], at: float | None = None, fresh_after: float | None = None
    ) -> dict[str, Reading]:
        """Each of the distinct ``promqls`` answered as :meth:`query` answers it; the ones with no shared
        answer are asked of the inner source in one call."""
        now = self._clock()
        self._sweep(now)
        answers: dict[str, Reading] = {}
        waiting: dict[str, asyncio.Future[dict[str, Reading]]] = {}
        asking: list[str] = []
        distinct = list(dict.fromkeys(promqls))
        for promql in distinct:
            entry = self._entries.get(self._key(promql, at))
            fresh = entry is not None and (fresh_after is None or entry.asked >= fresh_after)
            if entry is not None and fresh and entry.expires > now:
                if entry.reading is not None:
                    answers[promql] = entry.reading
                else:
                    assert entry.running is not None
                    waiting[promql] = entry.running
            else:
                asking.append(promql)
        if len(asking) < len(distinct):
            QUERIES_COALESCED.inc(len(distinct) - len(asking))
        if asking:
            waiting.update(self._ask(asking, at))
        if waiting:
            # asyncio.wait, not the futures themselves: one caller giving up (its evaluation cancelled)
            # must not cancel everyone's query. One future per inner call, not per query: waking on each
            # query's future was 8 % of the event loop's time at 1,000 objects.
            await asyncio.wait(set(waiting.values()))
            answers.update((promql, call.result()[promql]) for promql, call in waiting.items())
        return {promql: answers[promql] for promql in distinct}

    def _ask(self, promqls: list[str], at: float | None) -> dict[str, asyncio.Future[dict[str, Reading]]]:
        """Start one inner call for ``promqls``; the call, for each query (a failed or cancelled call is
        each query's failure)."""
        asked = self._wall()
        running = asyncio.ensure_future(self.inner.query_many(promqls, at))
        entries = {promql: _Entry(running, asked) for promql in promqls}
        for promql, entry in entries.items():
            self._entries[self._key(promql, at)] = entry
        # Added before any caller waits, so it runs first: the entries are answered when callers wake.
        running.add_done_callback(functools.partial(self._answered, at, entries))
        return dict.fromkeys(promqls, running)

    def _answered(
        self, at: float | None, entries: dict[str, _Entry], call: asyncio.Future[dict[str, Reading]]
    ) -> None:
        failed = call.cancelled() or call.exception() is not None
        expires = self._clock() + self._ttl
        for promql, entry in entries.items():
            entry.running = None
            if failed:
                # Nobody may be handed a failure later: the next caller tries afresh.
                key = self._key(promql, at)
                if self._entries.get(key) is entry:
                    del self._entries[key]
                continue
            entry.reading, entry.expires = call.result()[promql], expires

    def _key(self, promql: str, at: float | None) -> _Key:
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
