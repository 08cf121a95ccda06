"""Reads for ``history``: an object's (or every object's) records since a time, by type, newest last."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..api.records import AuditRecord, RecordType
from ..core.identity import ObjectRef
from .connection import Connection
from .schema import ALERTS, MODEL_SWITCHES, PROFILE_SWITCHES, RECORD_COLUMNS, SNAPSHOTS, TABLES

__all__ = ["HistoryQuery", "read_history"]

_TABLES_OF_TYPE: dict[str, tuple[str, ...]] = {
    "profile-switch": (PROFILE_SWITCHES,),
    "model-switch": (MODEL_SWITCHES,),
    "rollback": (MODEL_SWITCHES,),
    "failover-refused": (MODEL_SWITCHES,),
    "override-set": (PROFILE_SWITCHES, MODEL_SWITCHES),
    "override-cleared": (PROFILE_SWITCHES, MODEL_SWITCHES),
    "snapshot": (SNAPSHOTS,),
}


@dataclass(frozen=True)
class HistoryQuery:
    """Which records ``history`` asks for; every field left empty matches all."""

    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    since: datetime | None = None
    types: Collection[RecordType] = ()
    limit: int = 100
    """The newest this many records (the output is still in time order)."""

    def tables(self) -> tuple[str, ...]:
        """The tables that can hold the asked-for types (snapshots only when asked for by name)."""
        if not self.types:
            return tuple(t for t in TABLES if t != SNAPSHOTS)
        wanted = {t for type_ in self.types for t in _TABLES_OF_TYPE.get(type_, (ALERTS,))}
        return tuple(t for t in TABLES if t in wanted)


def _select(table: str, query: HistoryQuery) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("kind", query.kind), ("namespace", query.namespace), ("name", query.name)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if query.since is not None:
        where.append("time >= %s")
        params.append(query.since)
    if query.types:
        where.append("type = ANY(%s)")
        params.append(list(query.types))
    columns = ", ".join(f'"{c}"' for c in RECORD_COLUMNS)
    condition = f"WHERE {' AND '.join(where)}" if where else ""
    # Each table's own newest rows first (its index does it), then the newest of all of them.
    sql = f"(SELECT {columns} FROM {table} {condition} ORDER BY time DESC, id DESC LIMIT %s)"
    return sql, [*params, query.limit]


def _record(row: tuple[Any, ...]) -> AuditRecord:
    (id_, type_, kind, namespace, name, uid, time, from_, to, reason, values, thresholds, operator,
     generation, details) = row  # fmt: skip
    return AuditRecord(
        id=id_,
        type=type_,
        object=ObjectRef(kind, namespace, name, uid),
        time=time,
        from_=from_,
        to=to,
        reason=reason,
        values=values,
        thresholds=thresholds,
        operator=operator,
        generation=generation,
        details=details,
    )


async def read_history(conn: Connection, query: HistoryQuery) -> list[AuditRecord]:
    """The newest ``query.limit`` matching records, oldest first."""
    parts = [_select(table, query) for table in query.tables()]
    if not parts:
        return []
    union = " UNION ALL ".join(p[0] for p in parts)
    sql = f"SELECT * FROM ({union}) AS history ORDER BY time DESC, id DESC LIMIT %s"
    params = [param for p in parts for param in p[1]] + [query.limit]
    cur = await conn.execute(sql.encode(), params)
    rows = await cur.fetchall()
    return [_record(r) for r in reversed(rows)]
