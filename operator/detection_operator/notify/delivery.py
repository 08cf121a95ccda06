"""Deliver what the outbox says is due, in the background, one round per sink and object at a time.

The evaluation starts rounds only after the status write that holds their records (``start``), and folds
their outcomes into the next status (``take``): see ``record/outbox.py`` for why that order loses nothing.
A round never blocks an evaluation; its sink retries within the round (webhooks: ``attempts`` tries with
back-off), and the outbox backs off between rounds.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

import httpx

from ..api.records import NOTIFIED_TYPES, AuditRecord, SinkResult
from ..core.identity import ObjectRef
from ..core.logref import about
from .receivers import ReceiverConfig
from .sinks import DeliveryError, HttpReceiver, RecordSink

log = logging.getLogger(__name__)


class Deliverer:
    """Runs delivery rounds and keeps their outcomes until the object's next evaluation takes them."""

    def __init__(
        self,
        receivers: Iterable[RecordSink] = (),
        everything: Iterable[RecordSink] = (),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        client: httpx.AsyncClient | None = None,
    ) -> None:
        """``receivers``: sinks a spec names in ``alerts.receivers`` (they get its notifications);
        ``everything``: sinks that get every record of every object (the history store); ``client``:
        the HTTP client the sinks share, closed by :meth:`close`."""
        self.receivers = {s.name: s for s in receivers}
        self.everything = {s.name: s for s in everything}
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: set[tuple[ObjectRef, str]] = set()
        self._results: dict[ObjectRef, dict[str, SinkResult]] = {}
        self._failed: Counter[str] = Counter()
        self._client = client

    @classmethod
    def from_config(
        cls,
        config: ReceiverConfig,
        client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        everything: Iterable[RecordSink] = (),
    ) -> Deliverer:
        """A deliverer with one HTTP sink per configured receiver (and ``everything``)."""
        client = client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16), follow_redirects=False
        )
        return cls([HttpReceiver(r, client, sleep) for r in config.receivers], everything, client=client)

    def add(self, sink: RecordSink) -> None:
        """Add a sink that gets every record (the Events sink, the history store)."""
        self.everything[sink.name] = sink

    @property
    def sinks(self) -> frozenset[str]:
        """Every configured sink's name."""
        return frozenset(self.receivers) | frozenset(self.everything)

    def sinks_of(self, named: Sequence[str]) -> Callable[[AuditRecord], list[str]]:
        """Where a record of an object whose spec names the receivers ``named`` goes."""
        receivers = [n for n in named if n in self.receivers]
        everything = sorted(self.everything)

        def route(record: AuditRecord) -> list[str]:
            return [*(receivers if record.type in NOTIFIED_TYPES else ()), *everything]

        return route

    def busy(self, ref: ObjectRef) -> set[str]:
        """Sinks with a round in flight for ``ref``, or one whose outcome the outbox has not settled yet: no
        second round starts before the first is settled (it would resend what was just taken)."""
        return {sink for obj, sink in self._busy if obj == ref} | set(self._results.get(ref, {}))

    def take(self, ref: ObjectRef) -> dict[str, SinkResult]:
        """The outcomes of ``ref``'s rounds finished since the last call."""
        return self._results.pop(ref, {})

    def start(self, ref: ObjectRef, batches: Mapping[str, Sequence[AuditRecord]]) -> None:
        """Start a round per sink in ``batches`` (see ``record.outbox.due``); returns at once."""
        for name, records in batches.items():
            sink = self.receivers.get(name) or self.everything.get(name)
            if sink is None or (ref, name) in self._busy:
                continue
            self._busy.add((ref, name))
            task = asyncio.create_task(self._round(ref, sink, list(records)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _round(self, ref: ObjectRef, sink: RecordSink, records: list[AuditRecord]) -> None:
        error: str | None = None
        try:
            await sink.deliver(records)
        except DeliveryError as exc:
            error = str(exc)
        except Exception as exc:  # a sink's bug must not end delivery for everyone: report it like a failure
            log.exception("sink %s failed", sink.name)
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self._busy.discard((ref, sink.name))
        delivered = () if error else tuple(r.id for r in records)
        self._results.setdefault(ref, {})[sink.name] = SinkResult(delivered, error, self._clock())
        if error:
            self._failed[sink.name] += 1
            log.warning(
                "delivery of %d record(s) to %s failed for %s/%s: %s",
                len(records),
                sink.name,
                ref.namespace,
                ref.name,
                error,
                extra=about(ref.kind, ref.namespace, ref.name, receiver=sink.name),
            )

    def failed_count(self, sink: str) -> int:
        """Rounds to ``sink`` that failed since the operator started."""
        return self._failed[sink]

    def forget(self, ref: ObjectRef) -> None:
        """Drop outcomes kept for a deleted object."""
        self._results.pop(ref, None)

    async def drain(self) -> None:
        """Wait for rounds in flight (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Finish rounds in flight, then release connections."""
        await self.drain()
        if self._client is not None:
            await self._client.aclose()
