"""One scheduler for every object's periodic evaluation.

Why not a kopf timer or daemon per object: kopf puts a finalizer on every object that has one, so an object
(and its namespace) cannot be deleted while the operator is down, which fights GitOps pruning. A single
scheduler fed by the watch needs no finalizer, keeps per-object intervals from the spec, bounds how many
evaluations run at once, and is where identical queries could later be coalesced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str, str]
"""(plural, namespace, name)."""

Evaluate = Callable[[Key, Mapping[str, Any]], Awaitable[None]]

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    body: Mapping[str, Any]
    interval: float
    due: float
    generation: int | None
    running: bool = False


class Scheduler:
    """Runs ``evaluate(key, body)`` for each known object every ``interval`` seconds, and at once on a
    spec change (new generation). Bodies are refreshed from the watch between evaluations."""

    def __init__(
        self, evaluate: Evaluate, max_concurrency: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._evaluate = evaluate
        self._clock = clock
        self._entries: dict[Key, _Entry] = {}
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(max_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    def upsert(self, key: Key, body: Mapping[str, Any], interval: float) -> None:
        """Record the latest body of an object; a new generation makes it due now."""
        generation = body.get("metadata", {}).get("generation")
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = _Entry(
                body=body, interval=interval, due=self._clock(), generation=generation
            )
            self._wake.set()
            return
        entry.body, entry.interval = body, interval
        if generation != entry.generation:
            entry.generation = generation
            entry.due = self._clock()
            self._wake.set()

    def due_now(self, key: Key) -> None:
        """Evaluate a known object as soon as possible (its output needs repair); unknown keys are ignored."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.due = self._clock()
            self._wake.set()

    def remove(self, key: Key) -> None:
        """Forget a deleted object; an evaluation already running finishes on its own."""
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)

    async def run(self) -> None:
        """Dispatch due evaluations until cancelled."""
        while True:
            now = self._clock()
            next_due = now + 1.0
            for key, entry in list(self._entries.items()):
                if entry.running:
                    continue
                if entry.due <= now:
                    # Keep the phase: the next run is an interval after this one was due, not after it ran.
                    entry.due += entry.interval
                    if entry.due <= now:
                        entry.due = now + entry.interval
                    entry.running = True
                    task = asyncio.create_task(self._run_one(key, entry))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                next_due = min(next_due, entry.due)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, next_due - self._clock()))

    async def _run_one(self, key: Key, entry: _Entry) -> None:
        try:
            async with self._slots:
                await self._evaluate(key, entry.body)
        except asyncio.CancelledError:
            raise
        except Exception:  # one object's failure must never stop the others
            log.exception("evaluation of %s/%s/%s failed", *key)
        finally:
            entry.running = False

    async def drain(self) -> None:
        """Wait for running evaluations (used at shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
