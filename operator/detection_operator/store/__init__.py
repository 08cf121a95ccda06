"""The optional PostgreSQL history store: migrations, the record sink, retention and reads for ``history``.

An I/O layer beside ``notify``: the outbox delivers records to :class:`PostgresSink` like to any sink;
``tools.history`` reads them back through :func:`read_history`. Nothing here decides anything.
"""

from .config import StoreConfig
from .connection import StoreConnection, StoreUnavailable, connect
from .migrate import MigrationError, migrate
from .reads import HistoryQuery, read_history
from .retention import enforce_retention
from .sink import PostgresSink

__all__ = [
    "HistoryQuery",
    "MigrationError",
    "PostgresSink",
    "StoreConfig",
    "StoreConnection",
    "StoreUnavailable",
    "connect",
    "enforce_retention",
    "migrate",
    "read_history",
]
