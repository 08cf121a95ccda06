"""Bucket assignment and balance (pure): namespaces to buckets, quotas, and the plan every replica runs each
round, played over rounds for replicas joining and leaving."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from detection_operator.runtime.buckets import bucket_of, holding_off, layout, live_replicas, plan, quota
from detection_operator.runtime.election import LeaseRecord, Observed, Step
from detection_operator.runtime.settings import LeaderElection, Settings


def test_a_namespace_always_lands_in_the_same_bucket_in_every_process() -> None:
    here = [bucket_of(f"team-{i}", 12) for i in range(50)]
    code = (
        "from detection_operator.runtime.buckets import bucket_of;"
        "print([bucket_of(f'team-{i}', 12) for i in range(50)])"
    )
    # Another interpreter has another hash() salt: the bucket must not depend on it.
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert str(here) == there.strip()
    assert all(0 <= b < 12 for b in here)


def test_namespaces_spread_over_the_buckets() -> None:
    counts = Counter(bucket_of(f"ns-{i}", 12) for i in range(1200))
    assert len(counts) == 12
    assert max(counts.values()) < 1.3 * 100 and min(counts.values()) > 0.7 * 100


def test_one_bucket_puts_everything_in_it() -> None:
    assert {bucket_of(f"ns-{i}", 1) for i in range(20)} == {0}


@pytest.mark.parametrize(
    ("buckets", "replicas", "expected"), [(12, 1, 12), (12, 2, 6), (12, 5, 3), (1, 3, 1)]
)
def test_quota_is_the_ceiling_of_buckets_over_replicas(buckets: int, replicas: int, expected: int) -> None:
    assert quota(buckets, replicas) == expected


def test_a_replica_over_its_quota_releases_the_excess_and_claims_nothing() -> None:
    steps = {i: Step.RENEW for i in range(8)} | {8: Step.ACQUIRE, 9: Step.FOLLOW}
    todo = plan(steps, 6, "a")
    assert len(todo.renew) == 6 and len(todo.release) == 2 and todo.claim == ()
    assert set(todo.renew) | set(todo.release) == set(range(8))


def test_a_replica_under_its_quota_claims_free_buckets_up_to_it() -> None:
    steps = {0: Step.RENEW, 1: Step.CREATE, 2: Step.ACQUIRE, 3: Step.ACQUIRE, 4: Step.FOLLOW}
    todo = plan(steps, 3, "a")
    assert todo.renew == (0,) and len(todo.claim) == 2 and set(todo.claim) <= {1, 2, 3}
    assert todo.release == ()


def test_the_buckets_a_replica_keeps_are_stable_and_replicas_rank_them_differently() -> None:
    steps = dict.fromkeys(range(12), Step.RENEW)
    assert plan(steps, 6, "a") == plan(steps, 6, "a")
    free = dict.fromkeys(range(12), Step.ACQUIRE)
    assert plan(free, 6, "a").claim != plan(free, 6, "b").claim


def _record(holder: str | None) -> LeaseRecord:
    return LeaseRecord(holder, 4, "t", "t", 0, "1")


def test_live_replicas_are_the_unexpired_member_holders_and_ourselves() -> None:
    members = [Observed(_record("b"), at=10), Observed(_record("c"), at=1), Observed(_record(None), at=10)]
    # c's slot was last seen changing at 1 and lasts 4 s: at 12 it has expired on our clock.
    assert live_replicas(members, 12, "a") == {"a", "b"}
    assert live_replicas([], 0, "a") == {"a"}


def _rounds(holders: dict[int, str | None], replicas: list[str], rounds: int = 6) -> dict[int, str | None]:
    """Every replica runs its plan in turn against the Leases' holders: a claim succeeds only while the
    Lease is still free (the conditional write of the real Lease), releases clear the holder."""
    for _ in range(rounds):
        for me in replicas:
            steps = {
                i: Step.RENEW if h == me else Step.ACQUIRE if h is None else Step.FOLLOW
                for i, h in holders.items()
            }
            todo = plan(steps, quota(len(holders), len(replicas)), me)
            for i in todo.release:
                holders[i] = None
            for i in todo.claim:
                if holders[i] is None:
                    holders[i] = me
    return holders


def _balanced(holders: dict[int, str | None], replicas: list[str]) -> None:
    counts = Counter(holders.values())
    assert None not in counts, holders
    assert set(counts) == set(replicas)
    assert max(counts.values()) <= quota(len(holders), len(replicas))
    if len(holders) % len(replicas) == 0:  # otherwise ceil(B/N) allows, e.g., 3, 3, 3, 3, 1
        assert max(counts.values()) == min(counts.values())


def test_buckets_spread_evenly_then_move_when_replicas_join_and_leave() -> None:
    holders: dict[int, str | None] = dict.fromkeys(range(12))
    _balanced(_rounds(holders, ["a"]), ["a"])
    _balanced(_rounds(holders, ["a", "b"]), ["a", "b"])
    _balanced(_rounds(holders, ["a", "b", "c"]), ["a", "b", "c"])
    before = dict(holders)
    # c dies: its Leases expire (seen as free by the others), the survivors take them, nothing else moves.
    for i, h in holders.items():
        if h == "c":
            holders[i] = None
    _balanced(_rounds(holders, ["a", "b"]), ["a", "b"])
    assert all(holders[i] == h for i, h in before.items() if h != "c")


def test_thirteen_buckets_over_five_replicas_leave_no_bucket_unheld() -> None:
    holders: dict[int, str | None] = dict.fromkeys(range(13))
    _balanced(_rounds(holders, ["a", "b", "c", "d", "e"]), ["a", "b", "c", "d", "e"])


def test_bucket_settings_from_the_environment_and_lease_names() -> None:
    election = Settings.from_env(
        {"DETECTION_OPERATOR_BUCKETS": "3", "DETECTION_OPERATOR_MEMBER_SLOTS": "2"}
    ).election
    assert election.bucket_leases() == (
        "detection-operator-bucket-0-of-3",
        "detection-operator-bucket-1-of-3",
        "detection-operator-bucket-2-of-3",
    )
    assert election.member_leases() == ("detection-operator-member-0", "detection-operator-member-1")
    # One bucket is active/standby on the one leader Lease, as before buckets existed.
    single = LeaderElection(buckets=1)
    assert single.bucket_leases() == ("detection-operator",) and single.member_leases() == ()
    assert LeaderElection().buckets == 12
    assert Settings.from_env({"DETECTION_OPERATOR_LOG_WRITES": "true"}).log_writes


def test_a_bucket_count_below_one_names_the_variable() -> None:
    with pytest.raises(ValueError, match="DETECTION_OPERATOR_BUCKETS"):
        Settings.from_env({"DETECTION_OPERATOR_BUCKETS": "0"})


def test_lease_names_tell_their_bucket_count() -> None:
    assert layout("detection-operator", "detection-operator") == 1
    assert layout("detection-operator-bucket-3-of-12", "detection-operator") == 12
    assert layout("detection-operator-member-0", "detection-operator") is None
    assert layout("kube-scheduler", "detection-operator") is None
    assert layout("detection-operator-bucket-x", "detection-operator") is None


def test_another_layouts_live_leases_stop_claims_and_the_larger_layout_yields() -> None:
    assert holding_off([], 12) == (False, False)
    # Upgrading from active/standby: the old leader's one Lease is live, the new replicas wait.
    assert holding_off([1], 12) == (True, True)
    # The layout with fewer buckets keeps what it holds and only stops claiming.
    assert holding_off([24], 12) == (True, False)
