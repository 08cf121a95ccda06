"""The PostgreSQL history store on a real server (Debian's, fsync on): history over 1 M rows, the write cost
of an evaluation, and a five-minute outage under 100 objects evaluated every 5 s.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import Stats
from detection_operator.api.records import AuditRecord, RecordType, record_id
from detection_operator.core.identity import ObjectRef
from detection_operator.decide.snapshots import Snapshot
from detection_operator.runtime.history_store import HistoryStore
from detection_operator.store import HistoryQuery, PostgresSink, StoreConfig, connect, migrate, read_history
from detection_operator.store.schema import (
    ALERTS,
    MODEL_SWITCHES,
    PROFILE_SWITCHES,
    RECORD_COLUMNS,
    SNAPSHOTS,
    table_for,
)
from detection_operator.store.sink import row
from detection_operator.store.snapshots import snapshot_record
from detection_testing.postgres import PostgresServer

ROWS = 1_000_000
OBJECTS = 2_000
NOW = datetime(2026, 12, 1, tzinfo=UTC)
HEADER = "| | median | p90 | p99 | min | max | n |\n|---|---|---|---|---|---|---|"


def _config(server: PostgresServer) -> StoreConfig:
    return StoreConfig(
        host=server.host,
        port=server.port,
        database=server.database,
        user=server.user,
        password=server.password,
    )


def _ref(i: int) -> ObjectRef:
    kind = "ModelRoute" if i % 2 else "DetectionPolicy"
    return ObjectRef(kind, f"team-{i % 20}", f"obj-{i}", f"uid-{i}")


def _route_snapshot() -> Snapshot:
    """A route of 3 models x 6 metrics: what one evaluation's snapshot holds."""
    models = ("primary", "backup-a", "backup-b")
    metrics = ("accuracy", "latency_p95", "error_rate", "timeouts", "cost", "quality")
    values: dict[str, float | None] = {}
    thresholds: dict[str, float | None] = {}
    for m in models:
        values[f"{m}.score"], values[f"{m}.requests"] = 97.5, 12.3
        for metric in metrics:
            values[f"{m}.{metric}"] = random.random()
            thresholds[f"{m}.{metric}.warning"], thresholds[f"{m}.{metric}.critical"] = 0.8, 0.9
    details = {"model": "primary", "state": "primary", "traffic": {"primary": 100}, "levels": {}}
    return Snapshot("primary", values, thresholds, details)


def _record(i: int, n: int, at: datetime) -> AuditRecord:
    ref = _ref(i)
    types: tuple[RecordType, ...] = (
        ("model-switch", "rollback", "alert-fired", "alert-resolved")
        if ref.kind == "ModelRoute"
        else ("profile-switch", "profile-switch", "alert-fired", "alert-resolved")
    )
    type_ = types[n % len(types)]
    return AuditRecord(
        id=record_id(ref, type_, 1, f"{n}"),
        type=type_,
        object=ref,
        time=at,
        from_="balanced",
        to="paranoid",
        reason="bot ratio above 0.3 for 3 evaluations",
        values={"bot-ratio": 0.41},
        thresholds={"bot-ratio": 0.3},
        operator="detection-operator-0",
        generation=1,
        details={"fingerprint": f"fp-{i}-{n // 4}", "severity": "warning"},
    )


async def _load(config: StoreConfig) -> float:
    """COPY 1 M records (500 per object over 90 days) into the record tables; seconds taken."""

    conn = await connect(config)
    await migrate(conn)
    started = time.perf_counter()
    per_object = ROWS // OBJECTS
    by_table: dict[str, list[tuple[Any, ...]]] = {PROFILE_SWITCHES: [], MODEL_SWITCHES: [], ALERTS: []}
    for i in range(OBJECTS):
        for n in range(per_object):
            record = _record(i, n, NOW - timedelta(days=90) * (1 - n / per_object))
            by_table[table_for(record)].append(row(record))
    extra = {ALERTS: ("fingerprint", "severity", "value", "threshold", "fired_at", "resolved_at")}
    for table, rows in by_table.items():
        columns = ", ".join(f'"{c}"' for c in (*RECORD_COLUMNS, *extra.get(table, ())))
        async with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN".encode()) as copy:
            for r in rows:
                await copy.write_row(r)
    await conn.execute("ANALYZE")
    await conn.close()
    return time.perf_counter() - started


async def _time_queries(config: StoreConfig) -> list[tuple[str, Stats, int]]:
    conn = await connect(config)
    queries = {
        "one object, --since 7d (newest 100)": HistoryQuery(
            kind="ModelRoute", namespace="team-1", name="obj-1", since=NOW - timedelta(days=7)
        ),
        "one object, all 90 days (newest 1000)": HistoryQuery(
            kind="DetectionPolicy", namespace="team-2", name="obj-2", limit=1000
        ),
        "one object, --type alert-fired, 90 days": HistoryQuery(
            kind="ModelRoute", namespace="team-3", name="obj-3", types=["alert-fired"], limit=1000
        ),
        "every object, --since 1d (newest 100)": HistoryQuery(since=NOW - timedelta(days=1)),
        "one namespace, --since 1d (newest 1000)": HistoryQuery(
            namespace="team-5", since=NOW - timedelta(days=1), limit=1000
        ),
    }
    results = []
    for label, query in queries.items():
        samples, found = [], 0
        for _ in range(30):
            started = time.perf_counter()
            found = len(await read_history(conn, query))
            samples.append(time.perf_counter() - started)
        results.append((label, Stats.of(samples), found))
    await conn.close()
    return results


async def _write_cost(config: StoreConfig) -> tuple[Stats, Stats, Stats, float]:
    """Seconds for one evaluation's snapshot, a 5 s flush of 100 objects' snapshots, one switch record;
    and the bytes a stored snapshot takes."""
    sink = PostgresSink(config)
    snap = _route_snapshot()
    one, batch, switch = [], [], []
    for n in range(500):
        record = snapshot_record(_ref(1), snap, NOW + timedelta(minutes=n), timedelta(minutes=1), 1, "op")
        started = time.perf_counter()
        await sink.deliver([record])
        one.append(time.perf_counter() - started)
    for n in range(100):
        at = NOW + timedelta(days=1, minutes=n)
        records = [snapshot_record(_ref(i), snap, at, timedelta(minutes=1), 1, "op") for i in range(100)]
        started = time.perf_counter()
        await sink.deliver(records)
        batch.append(time.perf_counter() - started)
    for n in range(300):
        record = _record(2, n, NOW + timedelta(seconds=n)).model_copy(update={"id": f"{n:032x}"})
        started = time.perf_counter()
        await sink.deliver([record])
        switch.append(time.perf_counter() - started)
    conn = sink.connection
    async with conn.lock:
        c = await conn.get()
        cur = await c.execute(
            f"SELECT pg_total_relation_size('{SNAPSHOTS}')::float / count(*) FROM {SNAPSHOTS}".encode()
        )
        got = await cur.fetchone()
    await sink.close()
    return Stats.of(one), Stats.of(batch), Stats.of(switch), float(got[0]) if got else 0.0


async def _outage(
    server: PostgresServer, config: StoreConfig, objects: int, interval: float, before: float, down: float
) -> dict[str, float]:
    """``objects`` evaluated every ``interval`` s through the operator's HistoryStore; the database down for
    ``down`` s in the middle; every snapshot offered is counted, then looked for in the store."""
    sampled = replace(config, snapshot_interval=timedelta(seconds=interval))
    store = HistoryStore(sampled, "bench-operator", lambda: True)
    conn = await connect(config)
    await migrate(conn)
    await conn.execute(f"TRUNCATE {SNAPSHOTS}".encode())
    await conn.close()
    runner = asyncio.create_task(store.run())
    snap = _route_snapshot()
    offered = 0
    peak = 0
    started = time.monotonic()
    stopped_at = restarted_at = None
    end = before + down + before
    marks: dict[str, float] = {}

    async def watch_backlog() -> None:
        # The backlog is gone once no more than one tick's snapshots wait (the next flush takes those).
        while "restarted" not in marks or store.sink.snapshots_pending > objects:
            await asyncio.sleep(0.1)
        marks["drained"] = time.monotonic()

    watcher = asyncio.create_task(watch_backlog())
    while (elapsed := time.monotonic() - started) < end:
        tick = time.monotonic()
        now = datetime.now(UTC)
        for i in range(objects):
            # What HistoryStore.evaluated does after decide (the bench has no Prometheus behind it).
            if store.sampler.due(_ref(i), now):
                store.offer(_ref(i), snap, now, 1)
                offered += 1
        peak = max(peak, store.sink.snapshots_pending)
        if stopped_at is None and elapsed >= before:
            await asyncio.to_thread(server.stop)
            stopped_at = time.monotonic()
        elif stopped_at is not None and restarted_at is None and time.monotonic() - stopped_at >= down:
            await asyncio.to_thread(server.start)
            restarted_at = marks["restarted"] = time.monotonic()
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - tick)))
    deadline = time.monotonic() + 120
    while store.sink.snapshots_pending and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    watcher.cancel()
    drained = marks.get("drained", float("nan")) - (restarted_at or 0.0)
    runner.cancel()
    await store.close()
    conn = await connect(config)
    cur = await conn.execute(f"SELECT count(*), count(DISTINCT id) FROM {SNAPSHOTS}".encode())
    stored, distinct = await cur.fetchone() or (0, 0)
    await conn.close()
    return {
        "offered": offered,
        "peak": peak,
        "stored": stored,
        "distinct": distinct,
        "dropped": store.sink.snapshots_dropped,
        "down": (restarted_at or 0) - (stopped_at or 0),
        "drained": drained,
    }


def section(workdir: Path, *, outage_seconds: float = 300, around_seconds: float = 60) -> list[str]:
    """The Markdown section of bench/RESULTS.md."""
    random.seed(7)
    with PostgresServer(workdir / "pg", fsync=True) as server:
        config = _config(server)
        load_s = asyncio.run(_load(config))
        queries = asyncio.run(_time_queries(config))
        server.create_database("writes")
        one, batch, switch, bytes_per = asyncio.run(_write_cost(replace(config, database="writes")))
        server.create_database("outage")
        outage = asyncio.run(
            _outage(server, replace(config, database="outage"), 100, 5.0, around_seconds, outage_seconds)
        )
    counts = " | ".join(f"{outage[k]:.0f}" for k in ("offered", "peak", "stored", "distinct", "dropped"))
    return [
        "## History store (PostgreSQL 15, Debian's, on loopback, fsync on)",
        "",
        f"`history` reads over {ROWS:,} records ({OBJECTS} objects x {ROWS // OBJECTS} over 90 days in",
        "profile_switch_events, model_switch_events and performance_alerts, bulk-loaded with COPY in",
        f"{load_s:.0f} s). Each query is `read_history` on an open connection, as `history` runs it.",
        "",
        HEADER,
        *[f"| {label} ({found} rows) | {stats.row('ms')} |" for label, stats, found in queries],
        "",
        "Write cost, one transaction each; a snapshot of a route with 3 models x 6 metrics:",
        "",
        HEADER,
        f"| one evaluation's snapshot alone | {one.row('ms')} |",
        f"| one 5 s flush: 100 objects' snapshots | {batch.row('ms')} |",
        f"| one switch or alert record | {switch.row('ms')} |",
        "",
        f"A stored snapshot takes {bytes_per:,.0f} bytes with its indexes: at the default 1m interval",
        f"(1 440 a day) {bytes_per * 1440 / 2**20:.1f} MiB per object per day.",
        "",
        "Outage: 100 objects evaluated every 5 s through the operator's HistoryStore (sampler, queue,",
        f"flush loop); after {around_seconds:.0f} s the database is stopped (fast shutdown) for",
        f"{outage['down']:.0f} s, then runs {around_seconds:.0f} s more. Snapshots only: audit records",
        "queue in the status outbox.",
        "",
        "| snapshots taken | queued at most | stored | distinct ids | dropped | drained after return |",
        "|---|---|---|---|---|---|",
        f"| {counts} | {outage['drained']:.1f} s |",
        "",
    ]
