"""The store's tables, their versioned migrations, and which table each audit record goes to.

Four tables, one per family of records, all with the record's own columns (so ``history`` reads them back
as the same records) and the record id as primary key (so a redelivery inserts nothing):

- ``profile_switch_events``: profile switches and a policy's overrides;
- ``model_switch_events``: model switches, rollbacks, a route's overrides, refused failovers;
- ``performance_alerts``: every alert record, with the alert's ``value``, ``threshold``, ``fired_at`` and
  ``resolved_at`` (set on the fired row when its resolution arrives);
- ``model_performance_metrics``: per-evaluation snapshots of a route's models or a policy's metrics.

A migration is applied once, in order, inside one transaction with its ``schema_migrations`` row; new
versions are appended, never edited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..api.records import AuditRecord, RecordType

__all__ = ["MIGRATIONS", "TABLES", "Migration", "table_for"]


@dataclass(frozen=True)
class Migration:
    """One schema version: applied once, in order, never edited once released."""

    version: int
    name: str
    sql: str


PROFILE_SWITCHES: Final = "profile_switch_events"
MODEL_SWITCHES: Final = "model_switch_events"
ALERTS: Final = "performance_alerts"
SNAPSHOTS: Final = "model_performance_metrics"
TABLES: Final = (PROFILE_SWITCHES, MODEL_SWITCHES, ALERTS, SNAPSHOTS)

# The columns every table shares: an AuditRecord, flattened (object into kind/namespace/name/uid).
RECORD_COLUMNS: Final = (
    "id", "type", "kind", "namespace", "name", "uid", "time", "from_state", "to_state", "reason",
    "values", "thresholds", "operator", "generation", "details",
)  # fmt: skip

_COMMON = """
    id          text PRIMARY KEY,
    type        text NOT NULL,
    kind        text NOT NULL,
    namespace   text NOT NULL,
    name        text NOT NULL,
    uid         text NOT NULL DEFAULT '',
    time        timestamptz NOT NULL,
    from_state  text,
    to_state    text,
    reason      text NOT NULL DEFAULT '',
    "values"    jsonb NOT NULL DEFAULT '{}',
    thresholds  jsonb NOT NULL DEFAULT '{}',
    operator    text NOT NULL DEFAULT '',
    generation  bigint,
    details     jsonb NOT NULL DEFAULT '{}',
    stored_at   timestamptz NOT NULL DEFAULT now()"""


def _table(name: str, extra: str = "") -> str:
    # (kind, namespace, name, time) serves `history dp/NAME`; (time) serves `--since` alone and retention.
    return f"""
CREATE TABLE {name} ({_COMMON}{extra}
);
CREATE INDEX {name}_object_time ON {name} (kind, namespace, name, time DESC);
CREATE INDEX {name}_time ON {name} (time);
"""


MIGRATIONS: Final = (
    Migration(
        1,
        "record tables",
        _table(PROFILE_SWITCHES)
        + _table(MODEL_SWITCHES)
        + _table(
            ALERTS,
            """,
    fingerprint text NOT NULL DEFAULT '',
    severity    text,
    value       double precision,
    threshold   double precision,
    fired_at    timestamptz,
    resolved_at timestamptz""",
        )
        + f"CREATE INDEX {ALERTS}_open ON {ALERTS} (fingerprint) WHERE resolved_at IS NULL;\n"
        + _table(SNAPSHOTS, ",\n    subject text NOT NULL DEFAULT ''"),
    ),
)

_MODEL_TYPES: Final[frozenset[RecordType]] = frozenset({"model-switch", "rollback", "failover-refused"})
_OVERRIDES: Final[frozenset[RecordType]] = frozenset({"override-set", "override-cleared"})


def table_for(record: AuditRecord) -> str:
    """The table a record is stored in: by its type, and for an override by the kind it overrides."""
    if record.type == "snapshot":
        return SNAPSHOTS
    if record.type.startswith("alert-"):
        return ALERTS
    if record.type in _MODEL_TYPES or (record.type in _OVERRIDES and record.object.kind == "ModelRoute"):
        return MODEL_SWITCHES
    return PROFILE_SWITCHES
