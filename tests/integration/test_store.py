"""The PostgreSQL history store on a real server: migrations, idempotent writes, alerts, retention, reads."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from detection_operator.api.records import AuditRecord, RecordType, record_id
from detection_operator.core.identity import ObjectRef
from detection_operator.store import (
    HistoryQuery,
    MigrationError,
    PostgresSink,
    StoreConfig,
    StoreConnection,
    StoreUnavailable,
    connect,
    enforce_retention,
    migrate,
    read_history,
)
from detection_operator.store.connection import Connection
from detection_operator.store.schema import MIGRATIONS, Migration
from detection_operator.tools.store import read_store_history
from detection_testing.postgres import PostgresServer

T = TypeVar("T")
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
POLICY = ObjectRef("DetectionPolicy", "shop", "checkout", "uid-1")
ROUTE = ObjectRef("ModelRoute", "shop", "scoring", "uid-2")


def config_for(server: PostgresServer, database: str) -> StoreConfig:
    return StoreConfig(
        host=server.host, port=server.port, database=database, user=server.user, password=server.password
    )


@pytest.fixture
def store(postgres: PostgresServer) -> StoreConfig:
    """A fresh database on the session's server."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    postgres.create_database(name)
    return config_for(postgres, name)


def make(ref: ObjectRef, type_: RecordType, at: datetime, seq: str = "", **fields: object) -> AuditRecord:
    return AuditRecord(
        id=record_id(ref, type_, 1, seq or at.isoformat()),
        type=type_,
        object=ref,
        time=at,
        generation=1,
        operator="replica-a",
        **fields,  # type: ignore[arg-type]
    )


def run(config: StoreConfig, body: Callable[[Connection], Awaitable[T]]) -> T:
    async def main() -> T:
        conn = await connect(config)
        try:
            return await body(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


def deliver(config: StoreConfig, *batches: list[AuditRecord]) -> None:
    async def main() -> None:
        sink = PostgresSink(config)
        try:
            for batch in batches:
                await sink.deliver(batch)
        finally:
            await sink.close()

    asyncio.run(main())


def count(config: StoreConfig, table: str) -> int:
    async def body(conn: Connection) -> int:
        row = await (await conn.execute(f"SELECT count(*) FROM {table}".encode())).fetchone()
        assert row is not None
        return int(row[0])

    return run(config, body)


def test_migrations_apply_once_and_refuse_an_unknown_newer_schema(store: StoreConfig) -> None:
    assert run(store, migrate) == [m.version for m in MIGRATIONS]
    assert run(store, migrate) == []
    newer = (*MIGRATIONS, Migration(999, "from the future", "SELECT 1"))
    assert run(store, lambda conn: migrate(conn, newer)) == [999]
    with pytest.raises(MigrationError, match=r"versions \[999\]"):
        run(store, migrate)


def test_a_redelivered_batch_stores_nothing_twice(store: StoreConfig) -> None:
    records = [
        make(POLICY, "profile-switch", T0, **{"from": "lean", "to": "paranoid", "reason": "bot ratio 0.4"}),
        make(ROUTE, "model-switch", T0 + timedelta(seconds=5), **{"from": "primary", "to": "backup"}),
        make(ROUTE, "override-set", T0 + timedelta(seconds=6), to="backup"),
        make(POLICY, "override-set", T0 + timedelta(seconds=7), to="paranoid"),
    ]
    deliver(store, records, records, records[1:3])
    assert count(store, "profile_switch_events") == 2
    assert count(store, "model_switch_events") == 2
    back = run(store, lambda conn: read_history(conn, HistoryQuery()))
    assert [r.id for r in back] == [r.id for r in records]
    assert back[0] == records[0]


def test_an_alert_row_keeps_value_threshold_and_is_closed_by_its_resolution(store: StoreConfig) -> None:
    details = {"fingerprint": "fp-latency", "severity": "critical"}
    fired = make(ROUTE, "alert-fired", T0, values={"p99": 2.5}, thresholds={"p99": 1.0}, details=details)
    resolved = make(ROUTE, "alert-resolved", T0 + timedelta(minutes=3), details=details)
    # The resolution arrives first (a redelivery's order); the firing that follows is closed all the same.
    deliver(store, [resolved], [fired])

    async def body(conn: Connection) -> list[tuple[object, ...]]:
        cur = await conn.execute(
            b"SELECT type, value, threshold, fired_at, resolved_at, severity"
            b" FROM performance_alerts ORDER BY time"
        )
        return await cur.fetchall()

    assert run(store, body) == [
        ("alert-fired", 2.5, 1.0, T0, T0 + timedelta(minutes=3), "critical"),
        ("alert-resolved", None, None, None, T0 + timedelta(minutes=3), "critical"),
    ]


def test_history_filters_by_object_since_and_type_newest_last(store: StoreConfig) -> None:
    records = [make(POLICY, "profile-switch", T0 + timedelta(minutes=i), to=f"p{i}") for i in range(10)]
    records += [make(ROUTE, "model-switch", T0 + timedelta(minutes=i, seconds=30)) for i in range(10)]
    records += [make(ROUTE, "snapshot", T0 + timedelta(minutes=i, seconds=40), seq=str(i)) for i in range(10)]
    deliver(store, records)

    def read(**query: object) -> list[AuditRecord]:
        return run(store, lambda conn: read_history(conn, HistoryQuery(**query)))  # type: ignore[arg-type]

    policy = read(kind="DetectionPolicy", namespace="shop", name="checkout")
    assert [r.to for r in policy] == [f"p{i}" for i in range(10)]
    latest = read(limit=3)
    assert [r.time for r in latest] == [T0 + timedelta(minutes=8, seconds=30), T0 + timedelta(minutes=9),
                                        T0 + timedelta(minutes=9, seconds=30)]  # fmt: skip
    assert all(r.type != "snapshot" for r in read(limit=1000)), "snapshots only when asked for"
    assert len(read(types=["snapshot"])) == 10
    since = read(kind="ModelRoute", since=T0 + timedelta(minutes=7), types=["model-switch"])
    assert [r.time.minute for r in since] == [7, 8, 9]
    assert read(namespace="elsewhere") == []


def test_retention_deletes_old_rows_in_batches_and_keeps_the_rest(store: StoreConfig) -> None:
    old = [make(POLICY, "profile-switch", T0 - timedelta(days=100, minutes=i)) for i in range(23)]
    new = [make(POLICY, "profile-switch", T0 - timedelta(days=10, minutes=i)) for i in range(4)]
    deliver(store, old + new)
    deleted = run(store, lambda conn: enforce_retention(conn, timedelta(days=90), T0, batch=5))
    assert deleted["profile_switch_events"] == 23
    assert count(store, "profile_switch_events") == 4


def test_a_store_that_is_down_raises_and_the_same_batch_arrives_once_when_it_is_back(
    own_postgres: PostgresServer,
) -> None:
    config = config_for(own_postgres, own_postgres.database)
    records = [make(POLICY, "profile-switch", T0 + timedelta(seconds=i)) for i in range(50)]

    async def main() -> None:
        sink = PostgresSink(config)
        await sink.deliver(records[:10])
        own_postgres.stop()
        with pytest.raises(StoreUnavailable, match=r"detection_operator@127\.0\.0\.1"):
            await sink.deliver(records)
        own_postgres.start()
        await sink.deliver(records)  # what the outbox does: the whole batch again
        await sink.close()

    asyncio.run(main())
    assert count(config, "profile_switch_events") == 50


def test_the_password_never_shows_in_repr_or_errors(own_postgres: PostgresServer) -> None:
    config = config_for(own_postgres, own_postgres.database)
    assert own_postgres.password not in repr(config)
    own_postgres.stop()

    async def main() -> str:
        try:
            await StoreConnection(config).get()
        except StoreUnavailable as exc:
            return str(exc)
        raise AssertionError("connected to a stopped server")

    message = asyncio.run(main())
    assert own_postgres.password not in message
    assert config.target in message


def test_the_migrate_command_applies_once_and_says_so(
    postgres: PostgresServer, store: StoreConfig, tmp_path: Path
) -> None:
    env = {**os.environ, **postgres.operator_env(tmp_path / "password", store.database)}
    command = [sys.executable, "-m", "detection_operator", "migrate"]
    dry = subprocess.run([*command, "--dry-run"], env=env, capture_output=True, text=True, check=True)
    assert dry.stdout.strip() == f"{store.target}: schema at version 0, would apply 1"
    first = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert first.stdout.strip() == f"{store.target}: schema at version 0, applied 1"
    again = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert again.stdout.strip() == f"{store.target}: schema at version 1, nothing to apply"
    wrong = subprocess.run(
        command,
        env={**env, "DETECTION_OPERATOR_HISTORY_POSTGRES_USER": "nobody"},
        capture_output=True,
        text=True,
    )
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert "nobody@" in wrong.stderr and store.password not in wrong.stderr


def test_the_history_store_backend_reads_what_the_sink_wrote(store: StoreConfig) -> None:
    records = [
        make(ROUTE, "rollback", T0 + timedelta(minutes=i), **{"from": "backup", "to": "primary"})
        for i in range(3)
    ]
    deliver(store, records)
    query = HistoryQuery(kind="ModelRoute", namespace="shop", name="scoring", since=T0 + timedelta(minutes=1))
    assert read_store_history(store, query) == records[1:]


def test_the_history_command_reads_the_store_when_it_is_configured(
    postgres: PostgresServer, store: StoreConfig, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    records = [
        make(
            ROUTE,
            "model-switch",
            now - timedelta(days=2),
            **{"from": "primary", "to": "backup", "reason": "p"},
        ),
        make(
            ROUTE, "rollback", now - timedelta(days=1), **{"from": "backup", "to": "primary", "reason": "ok"}
        ),
        make(POLICY, "profile-switch", now - timedelta(hours=1), to="lean"),
    ]
    deliver(store, records)
    env = {
        **os.environ,
        "KUBECONFIG": str(tmp_path / "absent"),
        **postgres.operator_env(tmp_path / "password", store.database),
    }
    command = [sys.executable, "-m", "detection_operator", "history"]
    shown = subprocess.run(
        [*command, "mr/scoring", "-n", "shop", "--since", "7d", "--output", "json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert [r["id"] for r in json.loads(shown.stdout)] == [r.id for r in records[:2]]
    recent = subprocess.run(
        [*command, "-n", "shop", "--since", "36h"], env=env, capture_output=True, text=True
    )
    assert recent.returncode == 0, recent.stderr
    assert [line.split()[2] for line in recent.stdout.splitlines()] == ["rollback", "profile-switch"]
    down = subprocess.run(
        [*command, "-n", "shop"], env={**env, "DETECTION_OPERATOR_HISTORY_POSTGRES_PORT": "1"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert down.returncode == 2 and "Traceback" not in down.stderr and "unreachable" in down.stderr
