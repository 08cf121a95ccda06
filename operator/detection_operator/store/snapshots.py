"""Sampling of snapshots: at most one per object per interval, with an id fixed by the interval.

The interval's start is the record's sequence, so whichever replica takes the snapshot of an interval (two
during a leader change) gives it the same id, and the store keeps one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ..api.records import AuditRecord, finite, record_id
from ..core.identity import ObjectRef
from ..decide.snapshots import Snapshot

__all__ = ["SnapshotSampler", "snapshot_record"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def interval_start(now: datetime, interval: timedelta) -> datetime:
    """The start of the sampling interval ``now`` falls in (intervals counted from the Unix epoch)."""
    return now - (now - _EPOCH) % interval


def snapshot_record(
    ref: ObjectRef,
    snapshot: Snapshot,
    now: datetime,
    interval: timedelta,
    generation: int | None,
    operator: str,
) -> AuditRecord:
    """The snapshot as an audit record of type ``snapshot`` (id from the interval, not the moment)."""
    start = interval_start(now, interval)
    return AuditRecord(
        id=record_id(ref, "snapshot", generation, start.isoformat()),
        type="snapshot",
        object=ref,
        time=now,
        to=snapshot.to,
        values=finite(snapshot.values),
        thresholds=finite(snapshot.thresholds),
        operator=operator,
        generation=generation,
        details=snapshot.details,
    )


class SnapshotSampler:
    """Says when an object's snapshot is due: the first evaluation of each interval."""

    def __init__(self, interval: timedelta) -> None:
        """Sample every ``interval``; a zero interval samples nothing."""
        self.interval = interval
        self._last: dict[tuple[str, str, str], datetime] = {}

    def due(self, ref: ObjectRef, now: datetime) -> bool:
        """Whether ``ref``'s evaluation at ``now`` is the first of its interval (and so is recorded)."""
        if self.interval <= timedelta(0):
            return False
        key = (ref.kind, ref.namespace, ref.name)
        start = interval_start(now, self.interval)
        if self._last.get(key) == start:
            return False
        self._last[key] = start
        return True

    def forget(self, ref: ObjectRef) -> None:
        """Drop a deleted object's bookkeeping."""
        self._last.pop((ref.kind, ref.namespace, ref.name), None)
