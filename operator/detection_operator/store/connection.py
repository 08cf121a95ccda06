"""One connection to the store, opened on demand, migrated on first open, dropped on any failure."""

from __future__ import annotations

import asyncio
import logging

import psycopg

from .config import StoreConfig
from .migrate import Connection, migrate

__all__ = ["Connection", "StoreConnection", "StoreUnavailable", "connect"]

log = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """The store could not be reached or refused a write; what was being written is still to be delivered."""


async def connect(config: StoreConfig) -> Connection:
    """Open a connection (autocommit: each write says where its transaction starts and ends)."""
    try:
        return await psycopg.AsyncConnection.connect(config.conninfo(), autocommit=True)
    except psycopg.Error as exc:
        # psycopg's message names host and port, never the password.
        raise StoreUnavailable(f"store {config.target} unreachable: {exc}") from exc


class StoreConnection:
    """The process's connection to the store: one at a time, serialised, reopened after a failure.

    The first open of the process applies the migrations (``migrate_on_open``), so an operator that
    starts before its database keeps trying and migrates once the database is there.
    """

    def __init__(self, config: StoreConfig, *, migrate_on_open: bool = True) -> None:
        """Prepare (but do not open) the connection."""
        self.config = config
        self._migrate = migrate_on_open
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def lock(self) -> asyncio.Lock:
        """Held by whoever uses :meth:`get`'s connection, so writes never interleave on it."""
        return self._lock

    async def get(self) -> Connection:
        """The open connection, opened (and the schema migrated, the first time) if need be."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        conn = await connect(self.config)
        if self._migrate:
            try:
                applied = await migrate(conn)
            except psycopg.Error as exc:
                await conn.close()
                raise StoreUnavailable(f"store {self.config.target}: migrating failed: {exc}") from exc
            self._migrate = False
            if applied:
                log.info("store %s: schema now at version %d", self.config.target, applied[-1])
        self._conn = conn
        return conn

    async def discard(self) -> None:
        """Drop the connection after a failure; the next :meth:`get` opens a fresh one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def close(self) -> None:
        """Close the connection at shutdown."""
        await self.discard()
