"""Retention by age: records older than the configured age are deleted, a bounded batch at a time.

Small batches keep each DELETE's locks and WAL short, so retention never stalls the writes of decisions
running beside it, however far behind it starts (a first run over years of rows, say).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Final

from .connection import Connection
from .schema import TABLES

__all__ = ["DEFAULT_BATCH", "enforce_retention"]

log = logging.getLogger(__name__)

DEFAULT_BATCH: Final = 5000


async def enforce_retention(
    conn: Connection, max_age: timedelta, now: datetime, *, batch: int = DEFAULT_BATCH
) -> dict[str, int]:
    """Delete every record older than ``now - max_age``, ``batch`` rows per transaction.

    Returns the rows deleted by table.
    """
    cutoff = now - max_age
    deleted: dict[str, int] = {}
    for table in TABLES:
        total = 0
        while True:
            # ctid: the physical row, so a batch is one index range scan on time plus direct deletes.
            cur = await conn.execute(
                f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
                f"SELECT ctid FROM {table} WHERE time < %s ORDER BY time LIMIT %s))".encode(),
                (cutoff, batch),
            )
            total += cur.rowcount
            if cur.rowcount < batch:
                break
        deleted[table] = total
        if total:
            log.info(
                "store: retention deleted %d rows older than %s from %s", total, cutoff.isoformat(), table
            )
    return deleted
