"""Bucket assignment and balance (pure): namespaces to buckets, quotas, and the plan every replica runs each
round, played over rounds for replicas joining and leaving."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from fractions import Fraction

import pytest

from detection_operator.runtime.buckets import (
    Plan,
    bucket_of,
    holding_off,
    layout,
    live_replicas,
    loads,
    plan,
    settled,
    share,
    weights,
)
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
    ("buckets", "replicas", "expected"), [(12, 1, 12), (12, 2, 6), (12, 5, 3), (13, 5, 3), (1, 3, 1)]
)
def test_with_equal_weights_a_replica_holds_the_ceiling_of_buckets_over_replicas(
    buckets: int, replicas: int, expected: int
) -> None:
    target = share(weights({}, buckets), replicas)
    everything = plan(dict.fromkeys(range(buckets), Step.RENEW), target, "a")
    nothing = plan(dict.fromkeys(range(buckets), Step.ACQUIRE), target, "a")
    assert len(everything.renew) == len(nothing.claim) == expected


def test_a_replica_over_its_share_releases_the_excess_and_claims_nothing() -> None:
    steps = {i: Step.RENEW for i in range(8)} | {8: Step.ACQUIRE, 9: Step.FOLLOW}
    todo = plan(steps, Fraction(6), "a")
    assert len(todo.renew) == 6 and len(todo.release) == 2 and todo.claim == ()
    assert set(todo.renew) | set(todo.release) == set(range(8))


def test_a_replica_under_its_share_claims_free_buckets_up_to_it() -> None:
    steps = {0: Step.RENEW, 1: Step.CREATE, 2: Step.ACQUIRE, 3: Step.ACQUIRE, 4: Step.FOLLOW}
    todo = plan(steps, Fraction(3), "a")
    assert todo.renew == (0,) and len(todo.claim) == 2 and set(todo.claim) <= {1, 2, 3}
    assert todo.release == ()


def test_the_buckets_a_replica_keeps_are_stable_and_replicas_rank_them_differently() -> None:
    steps = dict.fromkeys(range(12), Step.RENEW)
    assert plan(steps, Fraction(6), "a") == plan(steps, Fraction(6), "a")
    free = dict.fromkeys(range(12), Step.ACQUIRE)
    assert plan(free, Fraction(6), "a").claim != plan(free, Fraction(6), "b").claim


def test_a_bucket_weighs_its_namespaces_evaluations_per_hour_plus_one() -> None:
    a = "team-a"
    b = next(f"team-{i}" for i in range(100) if bucket_of(f"team-{i}", 4) != bucket_of(a, 4))
    weighed = weights({a: 360.0, b: 0.4}, 4)  # 360: one object every 10 s
    assert weighed[bucket_of(a, 4)] == 361 and weighed[bucket_of(b, 4)] == 1
    assert sum(weighed) == 361 + 1 + 2 and share(weighed, 2) == Fraction(364, 2)


def test_a_heavy_bucket_is_kept_only_while_the_rest_cannot_reach_the_share() -> None:
    held = dict.fromkeys(range(4), Step.RENEW)
    # 20 + 1 + 1 + 1 held, share 12: giving up the 20 would leave 3, so the 1s go until what is kept is
    # the 20 alone (one more 1 would be above the share by more than it weighs).
    todo = plan(held, Fraction(12), "a", weights=(20, 1, 1, 1))
    assert set(todo.renew) == {0} and set(todo.release) == {1, 2, 3}
    # Below the share a replica claims even a bucket heavier than what it lacks: someone must hold it.
    free = {0: Step.RENEW, 1: Step.ACQUIRE}
    assert plan(free, Fraction(12), "b", weights=(5, 20)).claim == (1,)


def test_giving_up_everything_and_claiming_nothing_with_a_share_of_zero() -> None:
    steps = {0: Step.RENEW, 1: Step.RENEW, 2: Step.ACQUIRE}
    todo = plan(steps, Fraction(0), "a", weights=(3, 1, 1))
    assert todo.renew == () and set(todo.release) == {0, 1} and todo.claim == ()


def _record(holder: str | None) -> LeaseRecord:
    return LeaseRecord(holder, 4, "t", "t", 0, "1")


def test_live_replicas_are_the_unexpired_member_holders_and_ourselves() -> None:
    members = [Observed(_record("b"), at=10), Observed(_record("c"), at=1), Observed(_record(None), at=10)]
    # c's slot was last seen changing at 1 and lasts 4 s: at 12 it has expired on our clock.
    assert live_replicas(members, 12, "a") == {"a", "b"}
    assert live_replicas([], 0, "a") == {"a"}


def _rounds(
    holders: dict[int, str | None],
    replicas: list[str],
    rounds: int = 8,
    weighed: tuple[int, ...] | None = None,
) -> dict[int, str | None]:
    """Every replica runs its plan in turn against the Leases' holders: a claim succeeds only while the
    Lease is still free (the conditional write of the real Lease), releases clear the holder. Returns
    once a whole round moved nothing; a placement still moving after ``rounds`` fails."""
    target = share(weighed or (1,) * len(holders), len(replicas))
    for _ in range(rounds):
        before = dict(holders)
        for me in replicas:
            steps = {
                i: Step.RENEW if h == me else Step.ACQUIRE if h is None else Step.FOLLOW
                for i, h in holders.items()
            }
            held = loads(holders, weighed or (1,) * len(holders), replicas)
            others = [load for name, load in held.items() if name != me]
            todo = plan(steps, target, me, weighed, others)
            for i in todo.release:
                holders[i] = None
            for i in todo.claim:
                if holders[i] is None:
                    holders[i] = me
        if holders == before:
            return holders
    raise AssertionError(f"still moving after {rounds} rounds: {holders}")


def _balanced(
    holders: dict[int, str | None], replicas: list[str], weighed: tuple[int, ...] | None = None
) -> None:
    weight = weighed or (1,) * len(holders)
    # Above the share by less than the lightest bucket kept: giving any of them up would drop below it.
    assert settled(holders, weight, replicas), holders
    loads = Counter(holders.values())
    if weighed is None and len(holders) % len(replicas) == 0:  # else e.g. 3, 3, 3, 3, 1 (ceil(B/N))
        assert max(loads.values()) == min(loads.values())


def test_settled_means_every_bucket_held_by_a_live_replica_and_none_to_give_up() -> None:
    assert settled({0: "a", 1: "b", 2: "a"}, (1, 1, 1), ["a", "b"])
    assert not settled({0: "a", 1: None, 2: "a"}, (1, 1, 1), ["a", "b"])  # a free bucket
    assert not settled({0: "a", 1: "c", 2: "a"}, (1, 1, 1), ["a", "b"])  # held by a dead replica
    assert not settled({0: "a", 1: "a", 2: "a"}, (1, 1, 1), ["a", "b"])  # b holds nothing, a gives one up
    assert settled({0: "a", 1: "b", 2: "b"}, (10, 1, 1), ["a", "b"])  # a's one heavy bucket, b the rest


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


# The scale benchmark's 30 namespaces of 20 objects at 10 s in 12 buckets: 6, 5, 4, 2 x 7, 1 and 0 namespaces.
_BENCH = tuple(1 + 7200 * n for n in (6, 5, 4, 2, 2, 2, 2, 2, 2, 2, 1, 0))


@pytest.mark.parametrize("replicas", [["a", "b"], ["a", "b", "c"], ["a", "b", "c", "d"]])
def test_uneven_buckets_spread_by_weight(replicas: list[str]) -> None:
    holders: dict[int, str | None] = dict.fromkeys(range(12))
    _balanced(_rounds(holders, ["a"], weighed=_BENCH), ["a"], _BENCH)
    _balanced(_rounds(holders, replicas, weighed=_BENCH), replicas, _BENCH)
    loads = Counter[str | None]()
    for i, h in holders.items():
        loads[h] += _BENCH[i]
    # By bucket count one replica of three carried 0.57 of the objects; by weight the busiest is within
    # one namespace (7,200 evaluations per hour) of an even split.
    assert max(loads.values()) <= sum(_BENCH) / len(replicas) + 7200


def test_a_dead_replicas_weight_goes_to_the_survivors_and_one_bucket_at_most_moves_between_them() -> None:
    holders: dict[int, str | None] = dict.fromkeys(range(12))
    _rounds(holders, ["a", "b", "c"], weighed=_BENCH)
    kept = {i: h for i, h in holders.items() if h != "c"}
    for i, h in holders.items():
        if h == "c":
            holders[i] = None
    _balanced(_rounds(holders, ["a", "b"], weighed=_BENCH), ["a", "b"], _BENCH)
    # The survivors were below their new share, so they claim; then one bucket may move to even the two.
    assert sum(holders[i] != h for i, h in kept.items()) <= 1, holders
    assert _loads(holders) == {"a": 15 * 7200 + 4, "b": 15 * 7200 + 8}


def test_two_replicas_come_to_rest_even_where_sparing_alone_stopped_at_17_and_13_namespaces() -> None:
    # What two replicas held at rest when a replica gave a bucket up only if it kept its share: a holds
    # 6 + 5 + 4 + 2 namespaces (4 Leases), b the other 13 (8 Leases). Giving up the 2-namespace bucket
    # would leave a at 15 namespaces + 3, below the share of 15 namespaces + 6.
    holders: dict[int, str | None] = {i: "a" if i < 4 else "b" for i in range(12)}
    target = share(_BENCH, 2)
    steps = {i: Step.RENEW if h == "a" else Step.FOLLOW for i, h in holders.items()}
    assert plan(steps, target, "a", _BENCH).release == ()  # without the others' loads: at rest
    assert plan(steps, target, "a", _BENCH, [_loads(holders)["b"]]).release == (3,)
    _balanced(_rounds(holders, ["a", "b"], weighed=_BENCH), ["a", "b"], _BENCH)
    assert sorted(_loads(holders).values()) == [15 * 7200 + 4, 15 * 7200 + 8]


def test_a_replica_evens_loads_only_above_its_share_and_only_with_one_who_ends_lighter_than_it() -> None:
    steps = {0: Step.RENEW, 1: Step.RENEW, 2: Step.FOLLOW, 3: Step.FOLLOW}
    # Above the share of 10 with 11 (5 + 6); the other holds 9: moving 5 or 6 would only swap the loads.
    assert plan(steps, Fraction(10), "a", (5, 6, 5, 4), [9]).release == ()
    # The other holds 4: the bucket that evens the two best goes (5 -> 6 and 9, not 4 + 6 = 10 and 5).
    weighed = (5, 6, 3, 1)
    assert plan(steps, Fraction(15, 2), "a", weighed, [4]).release == (0,)
    # Below or at its share a replica gives nothing away, however light the others.
    assert plan(steps, Fraction(11), "a", (5, 6, 5, 4), [0]).release == ()
    # Nor while a bucket is free: it goes to a replica below its share first, then the loads are read again.
    free = {**steps, 3: Step.ACQUIRE}
    assert plan(free, Fraction(15, 2), "a", weighed, [4]) == Plan(renew=(1, 0), claim=(), release=())


def _loads(holders: dict[int, str | None]) -> dict[str, int]:
    return loads(holders, _BENCH, ())


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
