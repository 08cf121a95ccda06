"""``PostgresSink``: the history store as a record sink, idempotent by record id.

The outbox hands it records at least once; each goes to its table with ``ON CONFLICT (id) DO NOTHING``, so
a redelivery (after a timeout, a SIGKILL, a leader change) never stores a record twice. A batch is one
transaction: it is stored whole or not at all, and a failure raises so the outbox keeps it.

Snapshot records bypass the outbox: :meth:`PostgresSink.offer_snapshot` queues them in memory (bounded,
counted when dropped) and :meth:`PostgresSink.flush_snapshots` writes them; losing some in a restart or a
long outage costs resolution, not a decision.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

import psycopg
from psycopg.types.json import Jsonb

from .. import telemetry
from ..api.records import AuditRecord
from .config import StoreConfig
from .connection import Connection, StoreConnection, StoreUnavailable
from .schema import ALERTS, RECORD_COLUMNS, SNAPSHOTS, table_for

__all__ = ["SNAPSHOT_BUFFER", "PostgresSink"]

log = logging.getLogger(__name__)

SNAPSHOT_BUFFER: Final = 10_000
"""Snapshots waiting for the store at most; beyond it the oldest are dropped (and counted)."""

_ALERT_COLUMNS: Final = ("fingerprint", "severity", "value", "threshold", "fired_at", "resolved_at")
_EXTRA_COLUMNS: Final = {ALERTS: _ALERT_COLUMNS, SNAPSHOTS: ("subject",)}

# A resolution closes every earlier open row of the same alert (fired, repeated, escalated); run after
# each batch with alert records, so a resolution stored before its firing (a redelivery's order) still
# closes it.
_CLOSE_RESOLVED: Final = f"""
UPDATE {ALERTS} AS a SET resolved_at = (
    SELECT min(r.time) FROM {ALERTS} AS r
    WHERE r.type = 'alert-resolved' AND r.fingerprint = a.fingerprint AND r.kind = a.kind
      AND r.namespace = a.namespace AND r.name = a.name AND r.time >= a.time)
WHERE a.fingerprint = ANY(%s) AND a.resolved_at IS NULL AND a.type <> 'alert-resolved'
  AND EXISTS (
    SELECT 1 FROM {ALERTS} AS r
    WHERE r.type = 'alert-resolved' AND r.fingerprint = a.fingerprint AND r.kind = a.kind
      AND r.namespace = a.namespace AND r.name = a.name AND r.time >= a.time)
"""


def _first(values: dict[str, float | None]) -> float | None:
    return next(iter(values.values()), None)


def row(record: AuditRecord) -> tuple[Any, ...]:
    """The record as its table's row: the shared columns, then the table's own."""
    ref = record.object
    shared = (
        record.id, record.type, ref.kind, ref.namespace, ref.name, ref.uid, record.time, record.from_,
        record.to, record.reason, Jsonb(record.values), Jsonb(record.thresholds), record.operator,
        record.generation, Jsonb(record.details),
    )  # fmt: skip
    table = table_for(record)
    if table == ALERTS:
        severity = record.details.get("severity")
        return (
            *shared,
            str(record.details.get("fingerprint") or ""),
            None if severity is None else str(severity),
            _first(record.values),
            _first(record.thresholds),
            record.time if record.type == "alert-fired" else None,
            record.time if record.type == "alert-resolved" else None,
        )
    if table == SNAPSHOTS:
        return (*shared, str(record.details.get("model") or record.to or ""))
    return shared


def _insert(table: str) -> str:
    columns = (*RECORD_COLUMNS, *_EXTRA_COLUMNS.get(table, ()))
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING"


class PostgresSink:
    """Records into the PostgreSQL history store; raises :class:`StoreUnavailable` when it cannot."""

    name = "history-store"

    def __init__(self, config: StoreConfig, *, connection: StoreConnection | None = None) -> None:
        """A sink for the store at ``config`` (its connection opens on the first delivery)."""
        self.config = config
        self.connection = connection or StoreConnection(config)
        self._snapshots: deque[AuditRecord] = deque(maxlen=SNAPSHOT_BUFFER)
        self.snapshots_dropped = 0
        """Snapshots dropped because the buffer was full (the store was away for long)."""

    async def deliver(self, records: Sequence[AuditRecord]) -> None:
        """Store ``records`` in one transaction; already stored ids are skipped. Raises on failure."""
        if not records:
            return
        by_table: dict[str, list[tuple[Any, ...]]] = {}
        fingerprints: set[str] = set()
        for record in sorted(records, key=lambda r: (r.time, r.id)):
            by_table.setdefault(table_for(record), []).append(row(record))
            if record.type.startswith("alert-") and record.details.get("fingerprint"):
                fingerprints.add(str(record.details["fingerprint"]))
        async with self.connection.lock:
            try:
                conn = await self.connection.get()
                await self._write(conn, by_table, sorted(fingerprints))
            except psycopg.Error as exc:
                await self.connection.discard()
                raise StoreUnavailable(f"store {self.config.target}: write failed: {exc}") from exc
            except StoreUnavailable:
                await self.connection.discard()
                raise

    @staticmethod
    async def _write(
        conn: Connection, by_table: dict[str, list[tuple[Any, ...]]], fingerprints: list[str]
    ) -> None:
        async with conn.transaction(), conn.cursor() as cur:
            for table, rows in by_table.items():
                await cur.executemany(_insert(table).encode(), rows)
            if fingerprints:
                await cur.execute(_CLOSE_RESOLVED.encode(), (fingerprints,))

    def offer_snapshot(self, record: AuditRecord) -> None:
        """Queue a snapshot for the next :meth:`flush_snapshots`; the oldest goes when the buffer is full."""
        if len(self._snapshots) == self._snapshots.maxlen:
            self.snapshots_dropped += 1
            telemetry.HISTORY_SNAPSHOTS.labels("dropped").inc()
        self._snapshots.append(record)
        telemetry.HISTORY_SNAPSHOTS.labels("taken").inc()
        telemetry.HISTORY_SNAPSHOTS_PENDING.set(len(self._snapshots))

    @property
    def snapshots_pending(self) -> int:
        """Snapshots queued and not yet stored."""
        return len(self._snapshots)

    async def flush_snapshots(self) -> int:
        """Store the queued snapshots and return how many; on failure they stay queued (and it raises)."""
        batch = list(self._snapshots)
        if not batch:
            return 0
        await self.deliver(batch)
        # Offers made while the batch was written stay queued (and may have pushed some of it out already).
        stored = {r.id for r in batch}
        self._snapshots = deque((r for r in self._snapshots if r.id not in stored), maxlen=SNAPSHOT_BUFFER)
        telemetry.HISTORY_SNAPSHOTS.labels("stored").inc(len(batch))
        telemetry.HISTORY_SNAPSHOTS_PENDING.set(len(self._snapshots))
        return len(batch)

    async def close(self) -> None:
        """Close the connection."""
        await self.connection.close()
