"""The history store in the running operator: its sink, sampled snapshots, retention (by bucket holders).

The outbox delivers audit records to :attr:`HistoryStore.sink` like to any other sink. Snapshots do not go
through the outbox: each evaluation offers one, the sampler keeps one per object per interval, and
:meth:`HistoryStore.run` writes them every few seconds and enforces retention every hour.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Final

import psycopg

from ..api.records import AuditRecord
from ..core.identity import ObjectRef
from ..decide.snapshots import Snapshot, snapshot_of
from ..notify.sinks import DeliveryError
from ..store import PostgresSink, StoreConfig, StoreUnavailable, connect, enforce_retention, migrate
from ..store.snapshots import SnapshotSampler, snapshot_record

__all__ = ["HistoryStore", "StoreRecordSink"]

log = logging.getLogger(__name__)

FLUSH_SECONDS: Final = 5.0
RETENTION_SECONDS: Final = 3600.0


class StoreRecordSink:
    """The store as one of the outbox's sinks: an unreachable store is a failed round (retried), not a bug."""

    def __init__(self, sink: PostgresSink) -> None:
        """Deliver through ``sink``."""
        self._sink = sink

    @property
    def name(self) -> str:
        """How the outbox's pending deliveries name the store."""
        return self._sink.name

    async def deliver(self, records: Sequence[AuditRecord]) -> None:
        """Store ``records`` (idempotently by id) or raise :class:`DeliveryError`."""
        try:
            await self._sink.deliver(records)
        except StoreUnavailable as exc:
            raise DeliveryError(str(exc)) from exc


class HistoryStore:
    """The store's sink, sampler and maintenance loop for one operator process."""

    def __init__(
        self,
        config: StoreConfig,
        identity: str,
        may_write: Callable[[], bool],
        owns: Callable[[str], bool] = lambda _: True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Prepare the store for replica ``identity``; ``may_write`` says whether it holds any bucket right
        now (flushes and retention), ``owns`` whether it may write for a namespace's objects (snapshots)."""
        self.config = config
        self.identity = identity
        self.sink = PostgresSink(config)
        self.record_sink = StoreRecordSink(self.sink)
        """What the outbox delivers every record to."""
        self.sampler = SnapshotSampler(config.snapshot_interval)
        self._may_write = may_write
        self._owns = owns
        self._clock = clock
        self._failing = False

    def evaluated(self, ref: ObjectRef, now: datetime, generation: int | None, decision: object) -> None:
        """After an evaluation: queue its snapshot if one is due (only the owner's evaluations count)."""
        if not self._owns(ref.namespace) or not self.sampler.due(ref, now):
            return
        snapshot = snapshot_of(decision)
        if snapshot is not None:
            self.offer(ref, snapshot, now, generation)

    def offer(self, ref: ObjectRef, snapshot: Snapshot, now: datetime, generation: int | None) -> None:
        """Queue ``snapshot`` as the record of its interval."""
        record = snapshot_record(ref, snapshot, now, self.config.snapshot_interval, generation, self.identity)
        self.sink.offer_snapshot(record)

    async def run(self) -> None:
        """Write queued snapshots every few seconds and enforce retention every hour, while holding a bucket.

        Nothing stops it but cancellation: the store is optional, and a failure is reported, then retried.
        """
        next_retention = time.monotonic()
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            if not self._may_write():
                continue
            try:
                await self.sink.flush_snapshots()
                if time.monotonic() >= next_retention:
                    await self._retention()
                    next_retention = time.monotonic() + RETENTION_SECONDS
            except (StoreUnavailable, psycopg.Error) as exc:
                self._report(exc)
            except Exception:
                log.exception("history store: snapshot flush or retention failed; retrying")
            else:
                self._report(None)

    async def _retention(self) -> None:
        # A connection of its own: deleting old rows must never hold up the writes of decisions. Migrated
        # first, since retention may come before the first write has created the tables.
        conn = await connect(self.config)
        try:
            await migrate(conn)
            await enforce_retention(conn, self.config.retention, self._clock())
        finally:
            await conn.close()

    def _report(self, error: Exception | None) -> None:
        # One line when the store goes away and one when it is back, not one every few seconds.
        if error is not None and not self._failing:
            log.warning("history store unavailable (snapshots queue, %d pending): %s",
                        self.sink.snapshots_pending, error)  # fmt: skip
        elif error is None and self._failing:
            log.info("history store %s reachable again", self.config.target)
        self._failing = error is not None

    async def close(self) -> None:
        """Write what is queued if the store answers, then close the connection."""
        try:
            if self._may_write():
                await self.sink.flush_snapshots()
        except StoreUnavailable as exc:
            log.warning(
                "history store: %d snapshots not written at shutdown: %s", self.sink.snapshots_pending, exc
            )
        finally:
            await self.sink.close()
