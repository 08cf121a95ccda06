"""Active-active replicas, pure: which bucket an object is in, how many buckets a replica may hold, and
which Leases to renew, claim or give up this round. The I/O around it lives in `lease.py`.

Objects are split into buckets by a stable hash of their *namespace*, so the objects of one namespace (which
mostly ask the same `$namespace` queries, coalesced into one request) are always evaluated by one replica.
Each bucket has its own Lease with the semantics of `election.py`; only the holder of a bucket's Lease
evaluates and writes that bucket's objects. Replicas learn the live set from member Leases: each replica
holds exactly one of a fixed number of member slots, and the slots' live holders are the live replicas.

Buckets are placed by weight, not by count: a bucket weighs its objects' evaluations per hour plus one (its
Lease), as every replica counts them from its watch. With N live replicas each replica's share is 1/N of
the total weight; it claims free buckets while it holds less than its share. A replica above its share
gives a bucket up when what it keeps still reaches its share, or when the bucket would leave every replica
below its share lighter than the giver is now: every replica reads the others' loads from the Leases'
holders. Namespaces are few and uneven, so counting buckets left one replica of three with 0.57 of the
objects; with the first rule alone two replicas came to rest at 17 and 13 of 30 namespaces (giving up a
2-namespace bucket left the heavier one 3 Lease weights short of its share); with both, at rest no
replica above its share outweighs the heaviest one below it by more than its own lightest bucket. Each
move lowers the sum of the squared loads, so the placement settles. With equal weights this is exactly a
quota of ceil(B/N).

With one bucket there are no member Leases and the bucket's Lease is the leader Lease of active/standby.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from .election import Observed, Step, expired


def _hash(text: str) -> int:
    # Not hash(): it is salted per process, and every replica must put a namespace in the same bucket.
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


@functools.lru_cache(maxsize=65536)
def bucket_of(namespace: str, buckets: int) -> int:
    """The bucket of every object in ``namespace``: the same in every replica and across restarts.

    Cached: the scheduler asks it for every object on every pass."""
    return _hash(namespace) % buckets


def weights(demand: Mapping[str, float], buckets: int) -> tuple[int, ...]:
    """Each bucket's weight: one for its Lease plus the evaluations per hour of its namespaces' objects
    (``demand``, by namespace). Whole numbers, so every replica compares shares exactly."""
    per_bucket = [0.0] * buckets
    for namespace, per_hour in demand.items():
        per_bucket[bucket_of(namespace, buckets)] += per_hour
    return tuple(1 + round(load) for load in per_bucket)


def share(weights: Sequence[int], replicas: int) -> Fraction:
    """What one of ``replicas`` live replicas should hold: 1/N of the total weight."""
    return Fraction(sum(weights), max(1, replicas))


def loads(
    holders: Mapping[int, str | None], weights: Sequence[int], replicas: Collection[str]
) -> dict[str, int]:
    """The weight each replica holds: every one of ``replicas`` (zero if it holds nothing) and every
    other holder in ``holders`` (bucket: holder, None for a free bucket)."""
    held = dict.fromkeys(replicas, 0)
    for i, holder in holders.items():
        if holder is not None:
            held[holder] = held.get(holder, 0) + weights[i]
    return held


def settled(holders: Mapping[int, str | None], weights: Sequence[int], replicas: Collection[str]) -> bool:
    """Whether ``plan`` would move nothing more: every bucket held by one of ``replicas``, each holding
    some, none giving a bucket up (by either rule of :func:`plan`)."""
    if any(holder not in replicas for holder in holders.values()):
        return False
    held = loads(holders, weights, replicas)
    target = share(weights, len(held))
    for replica, load in held.items():
        mine = [weights[i] for i, holder in holders.items() if holder == replica]
        others = [other for name, other in held.items() if name != replica]
        if (
            not mine
            or _spare(load, mine, target) is not None
            or _evens(load, mine, target, others) is not None
        ):
            return False
    return True


def _spare(load: int, held: Sequence[int], target: Fraction) -> int | None:
    """The worst-ranked held weight (by position) we can give up and still hold ``target``, if any."""
    return next((p for p in reversed(range(len(held))) if load - held[p] >= target), None)


def _evens(load: int, held: Sequence[int], target: Fraction, others: Sequence[int]) -> int | None:
    """Above ``target``, the held weight (by position) to give the replicas below it (``others`` are the
    other live replicas' loads): one that leaves whichever of them takes it lighter than we are now, the
    one that evens the two loads best. None if there is none."""
    below = [other for other in others if other < target]
    if load <= target or not below:
        return None
    # Whoever below the share takes the bucket ends lighter than we were, so every move lowers the sum of
    # the squared loads: no placement comes back, and the moves stop.
    ceiling = max(below)
    fits = [p for p in reversed(range(len(held))) if ceiling + held[p] < load]
    return min(fits, key=lambda p: abs(load - ceiling - 2 * held[p]), default=None)


def live_replicas(members: Iterable[Observed], now: float, identity: str) -> frozenset[str]:
    """The holders of member Leases that have not expired on our clock, and ourselves."""
    alive = {
        seen.record.holder
        for seen in members
        if seen.record and seen.record.holder and not expired(seen, now)
    }
    return frozenset(alive | {identity})


def layout(name: str, lease_name: str) -> int | None:
    """The bucket count a Lease's name belongs to (1 for the one Lease of active/standby), or None for a
    Lease that is no bucket's (a member slot, another program's)."""
    if name == lease_name:
        return 1
    prefix = f"{lease_name}-bucket-"
    count = name.removeprefix(prefix).partition("-of-")[2]
    return int(count) if name.startswith(prefix) and count.isdigit() else None


def holding_off(foreign: Iterable[int], buckets: int) -> tuple[bool, bool]:
    """(claim nothing, give up everything) while replicas of other bucket counts hold live bucket Leases.

    During a rolling update that changes the count (the previous release's active/standby Lease counts as
    one bucket) two layouts map one namespace to different Leases, so each would let its own replica
    write. A replica claims nothing while another layout's Lease is live, and the layout with more buckets
    gives up what it holds: the one with fewer never has to, so they cannot both yield, or both keep.
    """
    counts = list(foreign)
    return bool(counts), any(count < buckets for count in counts)


@dataclass(frozen=True)
class Plan:
    """What to do with a set of Leases (by index) this round."""

    renew: tuple[int, ...] = ()
    """Held, and kept."""
    claim: tuple[int, ...] = ()
    """Free or expired, and claimed while we hold less than our share: create or acquire."""
    release: tuple[int, ...] = ()
    """Given up to rebalance (holder cleared) so a replica below its share takes it at once."""


def plan(
    steps: Mapping[int, Step],
    target: Fraction,
    identity: str,
    weights: Sequence[int] | None = None,
    others: Sequence[int] = (),
) -> Plan:
    """Hold about ``target`` of the Leases' weight (each weighs one without ``weights``): give held Leases
    up while what we keep without one still weighs at least ``target``; above it, while no Lease is free,
    give one a round to the replicas below it if every one of them (``others`` are the other live
    replicas' loads) would still end lighter than we are now; claim free ones while we hold less than
    ``target``.

    A Lease given up goes to a replica below its share, so every move narrows the gap between two replicas
    and the placement settles; a free Lease always has a replica below its share to claim it, because the
    held ones weigh less than the total. Every replica ranks the Leases in its own order (rendezvous hashing
    of identity and index): replicas racing for free Leases mostly want different ones, and a replica keeps
    its best-ranked ones, so what it holds is stable over rounds.
    """

    def rank(index: int) -> int:
        return _hash(f"{identity}/{index}")

    def weight(index: int) -> int:
        return weights[index] if weights is not None else 1

    held = sorted((i for i, step in steps.items() if step is Step.RENEW), key=rank)
    free = sorted((i for i, step in steps.items() if step in (Step.CREATE, Step.ACQUIRE)), key=rank)
    load = sum(weight(i) for i in held)
    release = []
    while (spare := _spare(load, [weight(i) for i in held], target)) is not None:
        release.append(held.pop(spare))
        load -= weight(release[-1])
    # Only when nothing was spare and no bucket is free: what was spared or is free goes to a replica below
    # its share, so the loads read this round are not the loads after it. Then one bucket at most, as
    # nothing else was spare either.
    evens = not release and not free
    if evens and (given := _evens(load, [weight(i) for i in held], target, others)) is not None:
        release.append(held.pop(given))
        load -= weight(release[-1])
    claim = []
    for i in free:
        if load >= target:
            break
        claim.append(i)
        load += weight(i)
    return Plan(renew=tuple(held), claim=tuple(claim), release=tuple(release))
