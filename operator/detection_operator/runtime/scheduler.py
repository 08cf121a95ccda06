"""One scheduler for every object's periodic evaluation.

Why not a kopf timer or daemon per object: kopf puts a finalizer on every object that has one, so an object
(and its namespace) cannot be deleted while the operator is down, which fights GitOps pruning. A single
scheduler fed by the watch needs no finalizer, keeps per-object intervals from the spec, bounds how many
evaluations run at once, and evaluates each object right after its data is refreshed where that can be
learned (runtime.alignment), on a fixed grid where not.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
import math
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..api.kinds import by_plural
from ..core.errors import NotLeader
from ..core.identity import Key
from ..core.logref import about
from .alignment import Phase, followed, learn, next_evaluation

Evaluate = Callable[[Key, Mapping[str, Any]], Awaitable[None]]

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    body: Mapping[str, Any]
    interval: float
    due: float
    generation: int | None
    running: bool = False
    phase: Phase | None = None
    """When the object's data is refreshed, as far as its evaluations have seen (runtime.alignment)."""
    aligned: float | None = None
    """The due time alignment chose (right after a refresh), while it is the due time."""


class Scheduler:
    """Runs ``evaluate(key, body)`` for each known object every ``interval`` seconds, and at once on a
    spec change (new generation). Bodies are refreshed from the watch between evaluations."""

    def __init__(
        self,
        evaluate: Evaluate,
        max_concurrency: int,
        clock: Callable[[], float] = time.monotonic,
        owns: Callable[[Key], bool] = lambda _: True,
        on_lag: Callable[[float], None] = lambda _: None,
        phase: Callable[[Key], float] | None = None,
        on_removed: Callable[[Key], None] = lambda _: None,
        sampled: Callable[[Key], tuple[float, float] | None] | None = None,
        fresh_after: Callable[[Key, float | None], None] = lambda _key, _at: None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._evaluate = evaluate
        # Called when an object is removed, and again when an evaluation that was running then ends: what
        # that evaluation recorded (metric series, cached status) must not outlive the object.
        self._on_removed = on_removed
        self._clock = clock
        # Every replica keeps its entries current from the watch but dispatches only the objects of the
        # buckets it holds: the others are due at once when it acquires their bucket.
        self._owns = owns
        self._on_lag = on_lag
        self._phase = phase
        # After each evaluation: the newest sample time it read and when it asked (Unix times). With it the
        # next evaluation follows the data's refresh (runtime.alignment); without, the grid above.
        self._sampled = sampled
        # Told at each dispatch the Unix time after which the evaluation's answers must have been asked
        # (an aligned one needs the refresh it was due for, not a shared answer from before it); or None.
        self._fresh_after = fresh_after
        self._wall = wall
        self._entries: dict[Key, _Entry] = {}
        # Due times in a heap, so a pass looks only at what is due (a pass over every entry, woken by every
        # evaluation's end, made the loop quadratic in the objects). An entry whose due time changed
        # leaves its old place behind, recognised when it comes up; the running ones are pushed again
        # when they end, the ones of buckets not held wait in _parked until ownership changes.
        self._heap: list[tuple[float, int, Key]] = []
        self._order = itertools.count()
        self._parked: set[Key] = set()
        self._counts: collections.Counter[str] = collections.Counter()
        """Objects per kind (asked at every watch event: counting the entries then was quadratic)."""
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(max_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    def upsert(self, key: Key, body: Mapping[str, Any], interval: float) -> None:
        """Record the latest body of an object; a new generation makes it due now."""
        generation = body.get("metadata", {}).get("generation")
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = entry = _Entry(
                body=body, interval=interval, due=self._clock(), generation=generation
            )
            self._counts[key[0]] += 1
            self._push(key, entry)
            return
        entry.body, entry.interval = body, interval
        if generation != entry.generation:
            entry.generation = generation
            entry.due = self._clock()
            self._push(key, entry)

    def _push(self, key: Key, entry: _Entry) -> None:
        heapq.heappush(self._heap, (entry.due, next(self._order), key))
        self._wake.set()

    def due_now(self, key: Key) -> None:
        """Evaluate a known object as soon as possible (its output needs repair); unknown keys are ignored."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.due = self._clock()
            self._push(key, entry)

    def remove(self, key: Key) -> None:
        """Forget a deleted object; an evaluation already running finishes on its own, then is forgotten."""
        if self._entries.pop(key, None) is not None:
            self._counts[key[0]] -= 1
        self._on_removed(key)

    def __len__(self) -> int:
        return len(self._entries)

    def count(self, plural: str) -> int:
        """How many objects of one kind are known."""
        return self._counts[plural]

    def demand(self) -> dict[str, float]:
        """Evaluations per hour of the known objects, by namespace: what each namespace costs, for placing
        buckets by weight (runtime.buckets). Every replica knows every object, so all count the same."""
        per_hour: dict[str, float] = {}
        for (_, namespace, _), entry in self._entries.items():
            per_hour[namespace] = per_hour.get(namespace, 0.0) + 3600 / entry.interval
        return per_hour

    def aligned(self) -> int:
        """How many of the objects this replica evaluates follow their data's refresh (runtime.alignment)."""
        return sum(
            1
            for key, entry in self._entries.items()
            if followed(entry.phase, entry.interval) and self._owns(key)
        )

    def wake(self) -> None:
        """Ownership changed (e.g. buckets gained): look at the objects held back as not owned, now."""
        parked, self._parked = self._parked, set()
        for key in parked:
            if (entry := self._entries.get(key)) is not None:
                self._push(key, entry)
        self._wake.set()

    async def run(self) -> None:
        """Dispatch due evaluations until cancelled."""
        while True:
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                due, _, key = heapq.heappop(self._heap)
                entry = self._entries.get(key)
                if entry is None or entry.due != due or entry.running:
                    continue  # gone, moved, or pushed again when its evaluation ends
                if not self._owns(key):
                    self._parked.add(key)
                    continue
                aligned = due == entry.aligned
                self._fresh_after(key, due - now + self._wall() if aligned else None)
                entry.due, entry.aligned = self._next_due(key, entry, now), None
                entry.running = True
                heapq.heappush(self._heap, (entry.due, next(self._order), key))
                task = asyncio.create_task(self._run_one(key, entry, due, entry.due))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            next_due = min(now + 1.0, self._heap[0][0]) if self._heap else now + 1.0
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, next_due - self._clock()))

    def _next_due(self, key: Key, entry: _Entry, now: float) -> float:
        if self._phase is None:
            # Keep the phase: the next run is an interval after this one was due, not after it ran.
            due = entry.due + entry.interval
            return due if due > now else now + entry.interval
        # On the key's grid, at least half an interval away: the first gap after a start or a spec change
        # is between half and one and a half intervals, every later one exactly an interval.
        offset = self._phase(key) * entry.interval
        return (
            offset + (math.floor((now + entry.interval / 2 - offset) / entry.interval) + 1) * entry.interval
        )

    def _align(self, key: Key, entry: _Entry, due: float, planned: float) -> None:
        if self._sampled is None:
            return
        seen = self._sampled(key)
        now, wall = self._clock(), self._wall()
        sample, observed = seen if seen is not None else (None, wall)
        entry.phase = learn(entry.phase, sample, observed, entry.interval)
        aligned = next_evaluation(entry.phase, due - now + wall, entry.interval)
        # Only in place of the periodic plan: a spec change or a repair made during the run stays due now.
        if aligned is not None and entry.due == planned:
            entry.due = entry.aligned = aligned - wall + now

    async def _run_one(self, key: Key, entry: _Entry, due: float, planned: float) -> None:
        try:
            async with self._slots:
                self._on_lag(self._clock() - due)
                await self._evaluate(key, entry.body)
        except asyncio.CancelledError:
            raise
        except NotLeader:
            log.info("evaluation of %s/%s/%s stopped: leadership lost", *key, extra=_about(key))
        except Exception:  # one object's failure must never stop the others
            log.exception("evaluation of %s/%s/%s failed", *key, extra=_about(key))
        finally:
            entry.running = False
            if self._entries.get(key) is not entry:
                self._on_removed(key)
            else:
                self._align(key, entry, due, planned)
                self._push(key, entry)

    async def drain(self) -> None:
        """Wait for running evaluations (used at shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def namespace_phase(key: Key) -> float:
    """Where in its interval an object is due, as a fraction: the same for every object of a namespace.

    Objects of one namespace mostly ask the same `$namespace` queries; evaluated together they share one
    request per query (see metrics.coalesce), while namespaces spread evenly over the interval.
    """
    return zlib.crc32(key[1].encode()) / 2**32


def _about(key: Key) -> dict[str, Any]:
    return about(by_plural(key[0]).kind, key[1], key[2])
