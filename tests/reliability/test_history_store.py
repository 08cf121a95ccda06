"""The history store under faults, with the real operator, apiserver, Prometheus and PostgreSQL.

- The database goes away for a minute: decisions go on (the profile switches meanwhile), snapshots queue
  and every one of them arrives when the database is back, none twice; the switch's audit record waits in
  the status outbox and arrives once.
- Two replicas: only the leader writes; after it is SIGKILLed the standby goes on, each switch is stored
  once, by the replica that decided it, and no sampling interval twice (the snapshot id is fixed by the
  interval, so a takeover cannot double it).

Short timings (1 s evaluations, a 2 s snapshot interval, a 4 s Lease) keep it quick; `make bench` runs
the five-minute outage under 100 objects.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_testing.exporter import MetricExporter
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.postgres import PostgresServer
from detection_testing.prometheus import PrometheusServer
from detection_testing.specs import LATENCY_METRIC, latency_policy

SNAPSHOT_SECONDS = 2
OUTAGE_SECONDS = 60
NAMES = ("operator-a", "operator-b")


def store_env(server: PostgresServer, tmp_path: Path) -> dict[str, str]:
    interval = {"DETECTION_OPERATOR_HISTORY_SNAPSHOT_INTERVAL": f"{SNAPSHOT_SECONDS}s"}
    return {**server.operator_env(tmp_path / "pg-password"), **interval}


def snapshots(server: PostgresServer) -> list[tuple[Any, ...]]:
    """(time, profile, operator) of every stored snapshot, oldest first (empty before the schema exists)."""
    if not server.execute("SELECT to_regclass('model_performance_metrics') IS NOT NULL")[0][0]:
        return []
    return server.execute("SELECT time, to_state, operator FROM model_performance_metrics ORDER BY time")


def intervals(rows: list[tuple[Any, ...]]) -> list[int]:
    return [int(t.timestamp()) // SNAPSHOT_SECONDS for t, *_ in rows]


def start_policy(
    kube: client.ApiClient, exporter: MetricExporter, namespace: str, server: PostgresServer
) -> None:
    """A policy at ``balanced`` (latency 80), and its first snapshots in the store."""
    exporter.set(LATENCY_METRIC, 80, {"namespace": namespace})
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DetectionPolicy",
        "metadata": {"name": "p"},
        "spec": {**latency_policy(), "alerts": {"receivers": []}},
    }
    client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "detectionpolicies", body
    )
    wait_for(lambda: len(snapshots(server)) >= 3, timeout=60, what="snapshots in the store")


def profile(kube: client.ApiClient, namespace: str) -> str | None:
    obj = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "detectionpolicies", "p"
    )
    return (obj.get("status") or {}).get("profile")


@pytest.fixture
def operator_env(own_postgres: PostgresServer, tmp_path: Path) -> dict[str, str]:
    return store_env(own_postgres, tmp_path)


def test_a_database_outage_loses_no_snapshot_and_stops_no_decision(
    operator: OperatorProcess,
    own_postgres: PostgresServer,
    kube: client.ApiClient,
    exporter: MetricExporter,
    namespace: str,
) -> None:
    start_policy(kube, exporter, namespace, own_postgres)

    own_postgres.stop()
    down_at = time.time()
    # Decisions go on without the store: the policy switches while the database is away.
    exporter.set(LATENCY_METRIC, 300, {"namespace": namespace})
    wait_for(lambda: profile(kube, namespace) == "lean", timeout=30, what="the switch during the outage")
    wait_for(
        lambda: "history store unavailable" in operator.log_file.read_text(),
        timeout=30,
        what="the operator to report the store unavailable",
    )
    while time.time() - down_at < OUTAGE_SECONDS:
        time.sleep(1)
        assert operator.alive(), operator.log_tail()
    own_postgres.start()
    up_at = time.time()

    def arrived() -> list[tuple[Any, ...]] | None:
        rows = snapshots(own_postgres)
        return rows if rows and rows[-1][0].timestamp() > up_at else None

    wait_for(arrived, timeout=60, what="the queued snapshots to arrive")
    counts = operator.metrics()["detection_operator_history_snapshots_total"]
    taken, dropped = (counts.get(frozenset({("outcome", o)}), 0.0) for o in ("taken", "dropped"))
    # None lost: every snapshot the operator had taken by now gets stored (the first ones, and those of
    # the outage, included).

    def all_taken() -> list[tuple[Any, ...]] | None:
        found = snapshots(own_postgres)
        return found if len(found) >= taken else None

    rows = wait_for(
        all_taken,
        timeout=60,
        what=f"all {taken:.0f} snapshots taken so far in the store",
    )

    during = [r for r in rows if down_at <= r[0].timestamp() <= up_at]
    expected = OUTAGE_SECONDS // SNAPSHOT_SECONDS
    print(f"\nstore outage {up_at - down_at:.0f} s: {len(during)} snapshots taken meanwhile, all stored")
    assert len(intervals(rows)) == len(set(intervals(rows))), "an interval stored twice"
    assert dropped == 0
    # About one per interval of the outage (fewer only when this shared machine delays evaluations).
    assert len(during) >= expected // 2, (len(during), expected)
    assert "lean" in {r[1] for r in during}, "the snapshots taken meanwhile show the switch"

    # The switch's audit record waited in the status outbox and arrives once (its delivery backs off).
    def switch_stored() -> list[tuple[Any, ...]]:
        return own_postgres.execute(
            "SELECT id, from_state, to_state, time FROM profile_switch_events WHERE to_state = 'lean'"
        )

    stored = wait_for(switch_stored, timeout=240, what="the switch's audit record in the store")
    assert len(stored) == 1 and stored[0][1] != "lean"
    # Record times are whole seconds (as the apiserver writes times), so the bound is the outage's second.
    assert int(down_at) <= stored[0][3].timestamp() <= up_at, "decided during the outage"
    obj = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "detectionpolicies", "p"
    )
    ids = [
        r["id"]
        for r in obj["status"]["outbox"]["records"]
        if r["type"] == "profile-switch" and r["to"] == "lean"
    ]
    assert ids == [stored[0][0]]
    assert own_postgres.password not in operator.log_file.read_text()


@pytest.fixture
def replicas(
    cluster: Any,
    crds: list[str],
    namespace: str,
    prometheus: PrometheusServer,
    own_postgres: PostgresServer,
    tmp_path: Path,
) -> Iterator[dict[str, OperatorProcess]]:
    env = {
        "DETECTION_OPERATOR_PROMETHEUS_URL": prometheus.url,
        "DETECTION_OPERATOR_PROMETHEUS_TIMEOUT_SECONDS": "2",
        "DETECTION_OPERATOR_LEASE_DURATION_SECONDS": "4",
        "DETECTION_OPERATOR_RENEW_DEADLINE_SECONDS": "3",
        "DETECTION_OPERATOR_RETRY_PERIOD_SECONDS": "1",
        # Active/standby (one bucket, the one Lease `holder` reads): one writer, then a takeover.
        "DETECTION_OPERATOR_BUCKETS": "1",
        **store_env(own_postgres, tmp_path),
    }
    processes: dict[str, OperatorProcess] = {}
    try:
        for name in NAMES:
            processes[name] = OperatorProcess(
                cluster.kubeconfig, tmp_path / f"{name}.log", namespaces=[namespace], env=env, pod_name=name
            )
            processes[name].start()
        yield processes
    finally:
        for process in processes.values():
            process.stop()


def holder(kube: client.ApiClient, namespace: str) -> str | None:
    lease = client.CoordinationV1Api(kube).read_namespaced_lease("detection-operator", namespace)
    return lease.spec.holder_identity or None


def switches(server: PostgresServer) -> list[tuple[Any, ...]]:
    """(id, to, operator) of every stored profile switch, oldest first."""
    if not server.execute("SELECT to_regclass('profile_switch_events') IS NOT NULL")[0][0]:
        return []
    return server.execute("SELECT id, to_state, operator FROM profile_switch_events ORDER BY time")


def test_two_replicas_one_writer_and_nothing_twice_across_a_takeover(
    replicas: dict[str, OperatorProcess],
    own_postgres: PostgresServer,
    kube: client.ApiClient,
    exporter: MetricExporter,
    namespace: str,
) -> None:
    start_policy(kube, exporter, namespace, own_postgres)
    leader = holder(kube, namespace)
    assert leader in NAMES
    standby = next(n for n in NAMES if n != leader)
    # The first evaluations may have had no data yet (the fallback profile): start from balanced.
    wait_for(lambda: profile(kube, namespace) == "balanced", timeout=60, what="status.profile=balanced")
    # Its record reaches the store from the outbox after the status write: wait for it before counting.
    stored_before = wait_for(
        lambda: (rows := switches(own_postgres)) and rows[-1][1] == "balanced" and rows,
        timeout=60,
        what="the switch to balanced in the store",
    )
    before = len(stored_before)
    exporter.set(LATENCY_METRIC, 300, {"namespace": namespace})
    wait_for(lambda: len(switches(own_postgres)) > before, timeout=60, what="the switch to lean in the store")
    assert {r[2] for r in snapshots(own_postgres)} == {leader}, "only the leader writes snapshots"

    replicas[leader].kill()
    killed_at = time.time()
    wait_for(lambda: holder(kube, namespace) == standby, timeout=60, what="the standby to take over")
    exporter.set(LATENCY_METRIC, 80, {"namespace": namespace})
    wait_for(
        lambda: len(switches(own_postgres)) > before + 1,
        timeout=90,
        what="the new leader's switch in the store",
    )
    wait_for(
        lambda: len([r for r in snapshots(own_postgres) if r[0].timestamp() > killed_at]) >= 5,
        timeout=60,
        what="snapshots from the new leader",
    )
    stored = switches(own_postgres)
    assert [(r[1], r[2]) for r in stored[before:]] == [("lean", leader), ("balanced", standby)]
    assert {r[2] for r in stored[:before]} <= {leader}
    assert len({r[0] for r in stored}) == len(stored), "a switch stored twice"
    rows = snapshots(own_postgres)
    assert len(intervals(rows)) == len(set(intervals(rows))), "an interval stored twice"
    assert {r[2] for r in rows if r[0].timestamp() > killed_at + 1} == {standby}
