"""Apply the schema's migrations: each once, in order, under an advisory lock so replicas never race."""

from __future__ import annotations

import logging
from typing import TypeAlias

import psycopg
from psycopg.rows import TupleRow

from .schema import MIGRATIONS, Migration

Connection: TypeAlias = psycopg.AsyncConnection[TupleRow]

__all__ = ["MigrationError", "applied_versions", "migrate"]

log = logging.getLogger(__name__)

# Any constant both replicas agree on: "detection-operator migrations" as a 63-bit number.
_LOCK_KEY = 0x6465_7465_6374_696F

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


class MigrationError(RuntimeError):
    """The database's schema is newer than this operator knows, or a migration failed."""


async def applied_versions(conn: Connection) -> list[int]:
    """The versions recorded in ``schema_migrations`` (empty before the first migration)."""
    cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return []
    cur = await conn.execute("SELECT version FROM schema_migrations ORDER BY version")
    return [int(r[0]) for r in await cur.fetchall()]


async def migrate(conn: Connection, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Bring the schema up to date and return the versions applied now (empty if it was current).

    A database at a version this operator does not know (a newer operator migrated it) is refused
    rather than written to with an older idea of its tables.
    """
    known = {m.version for m in migrations}
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        await conn.execute(_BOOKKEEPING)
        done = set(await applied_versions(conn))
        unknown = sorted(done - known)
        if unknown:
            raise MigrationError(
                f"the store's schema has versions {unknown} that this operator does not know:"
                " run the newer operator, or restore a backup from before it"
            )
        for migration in sorted(migrations, key=lambda m: m.version):
            if migration.version in done:
                continue
            try:
                await conn.execute(migration.sql.encode())
            except psycopg.Error as exc:
                raise MigrationError(
                    f"migration {migration.version} ({migration.name}) failed: {exc}"
                ) from exc
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied_now.append(migration.version)
            log.info("store: applied migration %d (%s)", migration.version, migration.name)
    return applied_now
