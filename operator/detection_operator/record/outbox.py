"""The outbox in status: which records each sink still has to take, retries across evaluations, bounds. Pure.

The order that makes delivery at-least-once and loses nothing: an evaluation adds its records (and, per
sink, their ids) to the outbox, writes status, and only then starts delivering what is due. Outcomes are
folded in by the next evaluation (:func:`settle`), which writes them with its own status. A process killed
at any point either never wrote the records (and nothing was sent: the next evaluation decides afresh) or
wrote them and the next leader sends what is still pending; a record sent but not yet settled is sent again
with the same id, which receivers and the store deduplicate.

Bounds (documented in docs/history.md): a record no sink took within ``MAX_UNDELIVERED_SECONDS`` is
dropped for that sink; a sink no longer configured drops what it had pending; beyond ``OUTBOX_LIMIT``
records the oldest undelivered record is dropped. Every drop is counted in the outbox (per sink and in
all) and reported in the ``RecordsDelivered`` condition, never silent.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from ..api.records import (
    MAX_UNDELIVERED_SECONDS,
    OUTBOX_LIMIT,
    RECENT_RECORDS,
    AuditRecord,
    Outbox,
    PendingDelivery,
    SinkResult,
)
from ..core.times import rfc3339

ROUND_BACKOFF_START = 10.0
"""Seconds after a failed delivery round before the next; doubles per failed round."""
ROUND_BACKOFF_CAP = 600.0
"""The longest wait between two rounds to a failing sink."""


def load(raw: Mapping[str, Any] | None) -> Outbox:
    """The outbox in a status; a damaged one reads as empty (its loss is what a damaged status costs)."""
    try:
        return Outbox.model_validate(raw or {})
    except ValidationError:
        return Outbox()


def dump(outbox: Outbox) -> dict[str, Any]:
    """The outbox as written in status."""
    return outbox.model_dump(mode="json", by_alias=True, exclude_none=True)


def enqueue(
    outbox: Outbox, records: Iterable[AuditRecord], sinks_of: Callable[[AuditRecord], Iterable[str]]
) -> Outbox:
    """``outbox`` with ``records`` appended and pending for each sink ``sinks_of`` names (a repeat id is
    not added twice)."""
    known = {r.id for r in outbox.records}
    added = [r for r in records if r.id not in known]
    if not added:
        return outbox
    pending = {p.sink: p for p in outbox.pending}
    for record in added:
        for sink in sinks_of(record):
            entry = pending.get(sink) or PendingDelivery(sink=sink)
            pending[sink] = entry.model_copy(update={"ids": [*entry.ids, record.id]})
    return outbox.model_copy(
        update={"records": [*outbox.records, *added], "pending": _ordered(pending.values())}
    )


def backoff(rounds: int) -> timedelta:
    """The wait after ``rounds`` failed rounds in a row."""
    return timedelta(seconds=min(ROUND_BACKOFF_START * 2 ** max(rounds - 1, 0), ROUND_BACKOFF_CAP))


def settle(outbox: Outbox, results: Mapping[str, SinkResult]) -> Outbox:
    """Fold delivery outcomes in: taken ids leave the sink's pending list; a failed round backs off."""
    if not results:
        return outbox
    pending = []
    for entry in outbox.pending:
        result = results.get(entry.sink)
        if result is not None:
            taken = set(result.delivered)
            ids = [i for i in entry.ids if i not in taken]
            if result.error is None:
                entry = entry.model_copy(
                    update={"ids": ids, "attempts": 0, "next_attempt_at": None, "last_error": None}
                )
            else:
                rounds = entry.attempts + 1
                entry = entry.model_copy(
                    update={
                        "ids": ids,
                        "attempts": rounds,
                        "next_attempt_at": result.at + backoff(rounds),
                        "last_error": result.error,
                    }
                )
        if entry.ids or entry.dropped or entry.last_error:
            pending.append(entry)
    return outbox.model_copy(update={"pending": pending})


def due(outbox: Outbox, now: datetime, busy: Collection[str] = ()) -> dict[str, list[AuditRecord]]:
    """Per sink not ``busy`` whose back-off has passed, the records to send it now, oldest first."""
    by_id = {r.id: r for r in outbox.records}
    batches = {}
    for entry in outbox.pending:
        if entry.sink in busy or not entry.ids:
            continue
        if entry.next_attempt_at is not None and entry.next_attempt_at > now:
            continue
        batch = [by_id[i] for i in entry.ids if i in by_id]
        if batch:
            batches[entry.sink] = batch
    return batches


def bound(outbox: Outbox, now: datetime, sinks: Collection[str]) -> Outbox:
    """Apply the bounds of this module's docstring; ``sinks``: the sinks configured now."""
    times = {r.id: r.time for r in outbox.records}
    oldest_kept = now - timedelta(seconds=MAX_UNDELIVERED_SECONDS)
    drops: dict[str, int] = {}
    pending = []
    for entry in outbox.pending:
        keep = [i for i in entry.ids if entry.sink in sinks and i in times and times[i] >= oldest_kept]
        drops[entry.sink] = len(entry.ids) - len(keep)
        pending.append(entry.model_copy(update={"ids": keep}))
    waiting = {i for entry in pending for i in entry.ids}
    delivered = [r.id for r in outbox.records if r.id not in waiting]
    # Delivered records make room first (beyond the recent ones, and all of them if need be); then the
    # oldest undelivered go, as the newest say most about the present.
    excess_delivered = max(len(delivered) - RECENT_RECORDS, len(outbox.records) - OUTBOX_LIMIT, 0)
    gone = set(delivered[:excess_delivered])
    undelivered = [r.id for r in outbox.records if r.id in waiting]
    victims = set(undelivered[: max(len(undelivered) - OUTBOX_LIMIT, 0)])
    records = [r for r in outbox.records if r.id not in gone and r.id not in victims]
    if victims:
        for index, entry in enumerate(pending):
            keep = [i for i in entry.ids if i not in victims]
            drops[entry.sink] += len(entry.ids) - len(keep)
            pending[index] = entry.model_copy(update={"ids": keep})
    total = sum(drops.values())
    if not total:
        return outbox.model_copy(update={"records": records, "pending": pending})
    pending = [
        entry.model_copy(update={"dropped": entry.dropped + drops.get(entry.sink, 0)})
        for entry in pending
        if entry.sink in sinks or entry.ids
    ]
    return outbox.model_copy(
        update={
            "records": records,
            "pending": pending,
            "dropped": outbox.dropped + total,
            "last_dropped_at": now,
        }
    )


def report(outbox: Outbox, sinks: Collection[str] | None = None, label: str = "sink") -> tuple[bool, str]:
    """Whether every sink (of ``sinks``, if given) took its last round, and a message naming each failing
    one with its error, the records it owes and the drops so far."""
    parts = []
    for entry in outbox.pending:
        if sinks is not None and entry.sink not in sinks:
            continue
        if entry.last_error is not None:
            waiting = f"{len(entry.ids)} record(s) waiting"
            parts.append(
                f"{label} {entry.sink}: {entry.last_error} ({waiting}, failed round {entry.attempts})"
            )
    ok = not parts
    if sinks is None and outbox.dropped:
        last = rfc3339(outbox.last_dropped_at) if outbox.last_dropped_at else "unknown"
        parts.append(f"{outbox.dropped} deliveries dropped undelivered so far (last at {last})")
    return ok, "; ".join(parts)


def _ordered(entries: Iterable[PendingDelivery]) -> list[PendingDelivery]:
    return sorted(entries, key=lambda e: e.sink)
