"""The commands' side of the history store: ``migrate``, and the store backend of ``history``.

Both read the store's settings the way the operator does (``DETECTION_OPERATOR_HISTORY_POSTGRES_*``); the
password comes from ``..._PASSWORD_FILE`` or, without it, from libpq's own ``PGPASSWORD`` / ``~/.pgpass``.
"""

from __future__ import annotations

import asyncio

from ..api.records import AuditRecord
from ..store import HistoryQuery, StoreConfig, connect, migrate, read_history
from ..store.migrate import applied_versions
from ..store.schema import MIGRATIONS

__all__ = ["migrate_store", "read_store_history"]


def migrate_store(config: StoreConfig, *, dry_run: bool = False) -> tuple[list[int], list[int]]:
    """Apply the pending migrations (none with ``dry_run``); returns (versions before, versions applied)."""

    async def main() -> tuple[list[int], list[int]]:
        conn = await connect(config)
        try:
            before = await applied_versions(conn)
            if dry_run:
                return before, [m.version for m in MIGRATIONS if m.version not in before]
            return before, await migrate(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


def read_store_history(config: StoreConfig, query: HistoryQuery) -> list[AuditRecord]:
    """The records ``query`` asks for, oldest first, from the store."""

    async def main() -> list[AuditRecord]:
        conn = await connect(config)
        try:
            return await read_history(conn, query)
        finally:
            await conn.close()

    return asyncio.run(main())
