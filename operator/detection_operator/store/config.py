"""How the store is reached and kept: connection settings (the password only ever from a file) and ages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from psycopg.conninfo import make_conninfo

__all__ = ["StoreConfig"]


@dataclass(frozen=True)
class StoreConfig:
    """The PostgreSQL history store: where it is, who the operator is there, and what it keeps."""

    host: str
    port: int = 5432
    database: str = "detection"
    user: str = "detection_operator"
    password: str | None = field(default=None, repr=False)
    """Read from a mounted Secret key; kept out of repr() so no log line or traceback shows it."""
    sslmode: str = "prefer"
    retention: timedelta = timedelta(days=90)
    """Records older than this are deleted, in batches."""
    snapshot_interval: timedelta = timedelta(minutes=1)
    """At most one model/policy snapshot per object this often; zero writes none."""
    connect_timeout: float = 5.0

    @property
    def target(self) -> str:
        """``user@host:port/database``: how logs and errors name the store (never with the password)."""
        return f"{self.user}@{self.host}:{self.port}/{self.database}"

    def conninfo(self) -> str:
        """The libpq connection string, password included: hand it to psycopg only, never log it."""
        return make_conninfo(
            host=self.host,
            port=self.port,
            dbname=self.database,
            user=self.user,
            password=self.password or None,
            sslmode=self.sslmode,
            connect_timeout=max(1, round(self.connect_timeout)),
            application_name="detection-operator",
        )
