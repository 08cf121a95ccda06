"""Active-active replicas against one apiserver: objects split into buckets by namespace, each bucket with
its own Lease; the buckets spread evenly over the live replicas and move when one joins, is SIGKILLed or is
frozen with SIGSTOP, and no object is ever written by two replicas at once. Real apiserver, Prometheus and
operator processes; double evaluations are read from both replicas' logs (detection_testing.ownership).

Four buckets and one namespace per bucket, so every replica always owns objects; two policies per namespace
ask the same query, so a namespace's queries coalesce on the one replica that owns it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from detection_operator.api.base import GROUP, VERSION
from detection_operator.runtime.buckets import bucket_of, settled, weights
from detection_testing import ownership
from detection_testing.exporter import MetricExporter
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.prometheus import PrometheusServer
from detection_testing.specs import LATENCY_METRIC, latency_policy

BUCKETS = 4
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 4.0, 3.0, 1.0
TAKEOVER_BOUND = LEASE_DURATION + RETRY_PERIOD
SLACK = 3.0
"""API round trips on this shared, loaded machine come on top of the bound."""
POLICIES = ("first", "second")


def policy(name: str) -> dict[str, Any]:
    spec = latency_policy()
    del spec["alerts"]  # steady metrics: nothing to alert on
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DetectionPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


class Replicas:
    """Operator processes sharing the bucket Leases in ``lease_namespace``, watching ``namespaces``."""

    def __init__(
        self, kube: client.ApiClient, kubeconfig: Path, lease_namespace: str, namespaces: list[str], tmp: Path
    ) -> None:
        self.kube, self.kubeconfig, self.tmp = kube, kubeconfig, tmp
        self.lease_namespace, self.namespaces = lease_namespace, namespaces
        self.env: dict[str, str] = {}
        self.processes: dict[str, OperatorProcess] = {}

    def start(self, name: str) -> None:
        if name not in self.processes:
            self.processes[name] = OperatorProcess(
                self.kubeconfig,
                self.tmp / f"{name}.log",
                namespaces=[self.lease_namespace, *self.namespaces],
                env=self.env,
                pod_name=name,
                log_format="json",
            )
        self.processes[name].start()

    def holders(self) -> dict[int, str | None]:
        leases = client.CoordinationV1Api(self.kube)
        found: dict[int, str | None] = {}
        for i in range(BUCKETS):
            try:
                spec = leases.read_namespaced_lease(
                    f"detection-operator-bucket-{i}-of-{BUCKETS}", self.lease_namespace
                ).spec
                found[i] = spec.holder_identity or None
            except ApiException as exc:
                if exc.status != 404:
                    raise
                found[i] = None
        return found

    def held(self, name: str) -> float:
        return self.processes[name].metrics()["detection_operator_buckets_held"][frozenset()]

    def wait_spread(self, counts: dict[str, int], timeout: float = 60) -> None:
        """Wait until the Leases' holders and each replica's own gauge show ``counts`` buckets each."""

        def settled() -> bool:
            by_holder = Counter(self.holders().values())
            return dict(by_holder) == counts and all(self.held(n) == c for n, c in counts.items())

        wait_for(settled, timeout=timeout, interval=0.2, what=f"buckets spread as {counts}")

    def ownership(self) -> ownership.Ownership:
        return ownership.read({n: p.log_file for n, p in self.processes.items()}, BUCKETS)

    def wait_written(self, who: str, namespaces: list[str], after: float, timeout: float = 60) -> None:
        """Wait until ``who`` has written every policy of ``namespaces`` since ``after`` (Unix time)."""

        def done() -> bool:
            writes = self.ownership().writes
            return all(
                any(w.replica == who and w.namespace == ns and w.name == p and w.at > after for w in writes)
                for ns in namespaces
                for p in POLICIES
            )

        wait_for(done, timeout=timeout, interval=0.3, what=f"{who} writing {namespaces}")

    def wait_written_by_one(self, who: str, timeout: float = 60) -> None:
        """Wait until ``who``, a replica of one bucket, has written in every namespace."""

        def done() -> bool:
            found = ownership.read({who: self.processes[who].log_file}, 1)
            return all(who in found.writers(ns) for ns in self.namespaces) and not found.outside

        wait_for(done, timeout=timeout, interval=0.3, what=f"{who} writing every namespace")

    def namespaces_of(self, who: str) -> list[str]:
        holders = self.holders()
        return [ns for ns in self.namespaces if holders[bucket_of(ns, BUCKETS)] == who]

    def assert_held_off(self, new: str, old: str, old_holds: int) -> None:
        """Wait until ``new`` (of another bucket count than ``old``) holds off, then check for longer than
        a lease duration that it claims nothing while ``old`` keeps renewing its ``old_holds`` buckets."""
        wait_for(
            lambda: "claiming no bucket" in self.processes[new].log_tail(400),
            timeout=30,
            what=f"{new} to hold off",
        )
        deadline = time.monotonic() + 2 * LEASE_DURATION
        while time.monotonic() < deadline:
            assert self.held(old) == old_holds
            assert self.held(new) == 0
            time.sleep(0.5)

    def wait_by_load(self, policies: dict[str, int]) -> tuple[int, ...]:
        """Wait until the running replicas' buckets are at rest by the weights of ``policies`` (how many
        policies, each evaluated every second, by namespace) and each replica's gauge agrees; the weights."""
        weighed = weights({ns: count * 3600.0 for ns, count in policies.items()}, BUCKETS)

        def by_load() -> bool:
            holders = self.holders()
            return settled(holders, weighed, list(self.processes)) and all(
                self.held(n) == c for n, c in Counter(holders.values()).items() if n is not None
            )

        wait_for(by_load, timeout=60, interval=0.2, what="buckets placed by load")
        return weighed

    def assert_no_double_writes(self) -> None:
        found = self.ownership()
        assert found.writes, "no status writes in the logs"
        assert not found.outside, f"writes by a replica not holding the bucket: {found.outside[:5]}"
        assert not found.doubles(), f"writes inside another replica's tenure: {found.doubles()[:5]}"


@pytest.fixture
def replicas(
    cluster: Any,
    crds: list[str],
    kube: client.ApiClient,
    exporter: MetricExporter,
    namespace: str,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> Iterator[Replicas]:
    core = client.CoreV1Api(kube)
    # One namespace per bucket, named after the test's namespace (so nothing collides with other tests).
    chosen: dict[int, str] = {}
    k = 0
    while len(chosen) < BUCKETS:
        chosen.setdefault(bucket_of(f"{namespace}-{k}", BUCKETS), f"{namespace}-{k}")
        k += 1
    namespaces = sorted(chosen.values())
    for ns in namespaces:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        exporter.set(LATENCY_METRIC, 80, {"namespace": ns})
    replicas = Replicas(kube, cluster.kubeconfig, namespace, namespaces, tmp_path)
    replicas.env = {
        "DETECTION_OPERATOR_PROMETHEUS_URL": prometheus.url,
        "DETECTION_OPERATOR_PROMETHEUS_TIMEOUT_SECONDS": "2",
        "DETECTION_OPERATOR_LEASE_DURATION_SECONDS": str(LEASE_DURATION),
        "DETECTION_OPERATOR_RENEW_DEADLINE_SECONDS": str(RENEW_DEADLINE),
        "DETECTION_OPERATOR_RETRY_PERIOD_SECONDS": str(RETRY_PERIOD),
        "DETECTION_OPERATOR_BUCKETS": str(BUCKETS),
        "DETECTION_OPERATOR_MEMBER_SLOTS": "4",
    }
    try:
        yield replicas
    finally:
        for process in replicas.processes.values():
            process.stop()
        for ns in namespaces:
            core.delete_namespace(ns)


def _create_policies(replicas: Replicas) -> None:
    objects = client.CustomObjectsApi(replicas.kube)
    for ns in replicas.namespaces:
        for name in POLICIES:
            objects.create_namespaced_custom_object(GROUP, VERSION, ns, "detectionpolicies", policy(name))


def test_buckets_spread_on_join_and_move_to_the_survivor_after_sigkill(replicas: Replicas) -> None:
    replicas.start("operator-a")
    replicas.wait_spread({"operator-a": BUCKETS})
    _create_policies(replicas)
    replicas.wait_written("operator-a", replicas.namespaces, after=0)

    # A second replica joins: the first releases its excess, the buckets end up two and two.
    joined_at = time.monotonic()
    replicas.start("operator-b")
    replicas.wait_spread({"operator-a": 2, "operator-b": 2})
    print(f"\njoin: buckets spread 2 + 2 after {time.monotonic() - joined_at:.2f} s")
    mine = replicas.namespaces_of("operator-b")
    replicas.wait_written("operator-b", mine, after=time.time())
    # Each namespace is owned whole: coalescing still shares its queries on the replica that owns it.
    metrics = replicas.processes["operator-b"].metrics()
    assert metrics["detection_operator_prometheus_queries_coalesced_total"][frozenset()] > 0

    killed_at, killed_wall = time.monotonic(), time.time()
    replicas.processes["operator-a"].kill()
    wait_for(
        lambda: set(replicas.holders().values()) == {"operator-b"} and replicas.held("operator-b") == BUCKETS,
        timeout=TAKEOVER_BOUND + 30,
        interval=0.1,
        what="operator-b holding every bucket",
    )
    takeover = time.monotonic() - killed_at
    print(f"takeover after SIGKILL: {takeover:.2f} s (bound {TAKEOVER_BOUND:g} s + API latency)")
    assert takeover <= TAKEOVER_BOUND + SLACK
    replicas.wait_written("operator-b", replicas.namespaces, after=killed_wall)
    replicas.assert_no_double_writes()


def test_a_frozen_replica_loses_its_buckets_writes_nothing_on_waking_then_rejoins(replicas: Replicas) -> None:
    replicas.start("operator-a")
    replicas.start("operator-b")
    replicas.wait_spread({"operator-a": 2, "operator-b": 2})
    _create_policies(replicas)
    frozen = replicas.namespaces_of("operator-a")
    replicas.wait_written("operator-a", frozen, after=0)

    replicas.processes["operator-a"].pause()
    paused_wall = time.time()
    wait_for(
        lambda: set(replicas.holders().values()) == {"operator-b"},
        timeout=TAKEOVER_BOUND + 30,
        interval=0.1,
        what="operator-b holding the frozen replica's buckets",
    )
    replicas.wait_written("operator-b", frozen, after=paused_wall)

    # Woken, the replica finds its renew deadlines long past: it stops, then rejoins and gets two back.
    replicas.processes["operator-a"].resume()
    wait_for(
        lambda: '"lost bucket' in replicas.processes["operator-a"].log_tail(2000),
        timeout=30,
        what="the resumed replica to notice it lost its buckets",
    )
    replicas.wait_spread({"operator-a": 2, "operator-b": 2})
    replicas.wait_written("operator-a", replicas.namespaces_of("operator-a"), after=time.time())
    replicas.assert_no_double_writes()


def test_an_upgrade_from_active_standby_waits_for_the_old_leader_to_let_go(replicas: Replicas) -> None:
    # The previous release: one bucket, the one Lease "detection-operator", held by the old leader.
    replicas.env["DETECTION_OPERATOR_BUCKETS"] = "1"
    replicas.start("operator-old")
    _create_policies(replicas)
    replicas.wait_written_by_one("operator-old")
    replicas.env["DETECTION_OPERATOR_BUCKETS"] = str(BUCKETS)
    replicas.start("operator-new")
    replicas.assert_held_off("operator-new", old="operator-old", old_holds=1)

    stopped_wall = time.time()
    replicas.processes["operator-old"].stop()
    replicas.wait_spread({"operator-new": BUCKETS})
    replicas.wait_written("operator-new", replicas.namespaces, after=stopped_wall)
    new_writes = [w for w in replicas.ownership().writes if w.replica == "operator-new"]
    assert min(w.at for w in new_writes) > stopped_wall


def test_a_replica_of_another_bucket_count_holding_off_takes_no_share_from_the_old_ones(
    replicas: Replicas,
) -> None:
    # A rolling update from 4 buckets to 2: the new replica holds off while the old one's Leases live. The
    # member Leases are shared by both layouts; counted as live, the new replica would halve the old one's
    # share, and the buckets it gave up could be claimed by nobody until the old one stopped.
    replicas.start("operator-old")
    _create_policies(replicas)
    replicas.wait_spread({"operator-old": BUCKETS})
    replicas.env["DETECTION_OPERATOR_BUCKETS"] = "2"
    replicas.start("operator-new")
    holding_off = time.time()
    replicas.assert_held_off("operator-new", old="operator-old", old_holds=BUCKETS)
    replicas.wait_written("operator-old", replicas.namespaces, after=holding_off)

    replicas.processes["operator-old"].stop()
    wait_for(lambda: replicas.held("operator-new") == 2, timeout=30, interval=0.2, what="the new layout held")


def test_a_heavy_namespace_gets_a_replica_to_itself(replicas: Replicas) -> None:
    # One namespace with eight policies, three with two: by bucket count each replica would hold two
    # buckets (one with 10 of the 14 policies); by load the heavy bucket alone is a replica's share.
    heavy = replicas.namespaces[0]
    objects = client.CustomObjectsApi(replicas.kube)
    extra = [f"extra-{i}" for i in range(6)]
    for name in extra:
        objects.create_namespaced_custom_object(GROUP, VERSION, heavy, "detectionpolicies", policy(name))
    _create_policies(replicas)
    replicas.start("operator-a")
    replicas.start("operator-b")
    weighed = replicas.wait_by_load({ns: 2 + len(extra) * (ns == heavy) for ns in replicas.namespaces})
    holders = replicas.holders()
    alone = holders[bucket_of(heavy, BUCKETS)]
    assert alone is not None and Counter(holders.values()) == {
        alone: 1,
        next(iter(set(holders.values()) - {alone})): 3,
    }
    # Each replica reports the share of the load it holds, from its own watch: about a half each.
    for name in replicas.processes:
        ratio = replicas.processes[name].metrics()["detection_operator_load_held_ratio"][frozenset()]
        mine = sum(weighed[i] for i, h in holders.items() if h == name)
        assert ratio == pytest.approx(mine / sum(weighed), abs=1e-6)
        assert 0.4 < ratio < 0.6
    other = next(n for n in replicas.processes if n != alone)
    replicas.wait_written(other, replicas.namespaces_of(other), after=time.time())
    replicas.assert_no_double_writes()


def test_a_replica_grown_heavier_gives_a_bucket_to_the_lighter_one_even_below_its_share(
    replicas: Replicas,
) -> None:
    # Two and two buckets while there is nothing to weigh; then a's namespaces get 4 and 2 policies and b's
    # 1 and 1. Giving up only what it could spare, a kept 6 of 8 for good: without the 2 it would hold 4
    # policies and its one Lease, one Lease weight short of the share (half of 8 policies and 4 Leases).
    # Giving the 2 to b leaves b at 4 policies and 3 Leases, lighter than a's 6 and 2: it moves.
    replicas.start("operator-a")
    replicas.start("operator-b")
    replicas.wait_spread({"operator-a": 2, "operator-b": 2})
    heavy, moved = replicas.namespaces_of("operator-a")
    counts = {ns: 1 for ns in replicas.namespaces_of("operator-b")} | {heavy: 4, moved: 2}
    objects = client.CustomObjectsApi(replicas.kube)
    for ns, count in sorted(counts.items(), key=lambda item: item[1]):
        for k in range(count):
            objects.create_namespaced_custom_object(GROUP, VERSION, ns, "detectionpolicies", policy(f"p{k}"))
    moved_at = time.time()
    replicas.wait_by_load(counts)
    holders = replicas.holders()
    assert holders[bucket_of(heavy, BUCKETS)] == "operator-a"
    assert Counter(holders.values()) == {"operator-a": 1, "operator-b": 3}

    def written_by_b() -> bool:
        writes = replicas.ownership().writes
        return any(w.replica == "operator-b" and w.namespace == moved and w.at > moved_at for w in writes)

    wait_for(written_by_b, timeout=30, interval=0.3, what=f"operator-b writing {moved}")
    replicas.assert_no_double_writes()
