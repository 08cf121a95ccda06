"""Active-active replicas, pure: which bucket an object is in, how many buckets a replica may hold, and
which Leases to renew, claim or give up this round. The I/O around it lives in `lease.py`.

Objects are split into buckets by a stable hash of their *namespace*, so the objects of one namespace (which
mostly ask the same `$namespace` queries, coalesced into one request) are always evaluated by one replica.
Each bucket has its own Lease with the semantics of `election.py`; only the holder of a bucket's Lease
evaluates and writes that bucket's objects. Replicas learn the live set from member Leases: each replica
holds exactly one of a fixed number of member slots, and the slots' live holders are the live replicas.
With N live replicas each claims at most ceil(B/N) buckets and gives up what it holds beyond that, so the
buckets spread evenly and move when a replica dies (its Leases expire) or joins (the others release).

With one bucket there are no member Leases and the bucket's Lease is the leader Lease of active/standby.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .election import Observed, Step, expired


def _hash(text: str) -> int:
    # Not hash(): it is salted per process, and every replica must put a namespace in the same bucket.
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


@functools.lru_cache(maxsize=65536)
def bucket_of(namespace: str, buckets: int) -> int:
    """The bucket of every object in ``namespace``: the same in every replica and across restarts.

    Cached: the scheduler asks it for every object on every pass."""
    return _hash(namespace) % buckets


def quota(buckets: int, replicas: int) -> int:
    """The most buckets one of ``replicas`` live replicas may hold: ceil(B/N)."""
    return -(-buckets // max(1, replicas))


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
    """Free or expired, and within our quota: create or acquire."""
    release: tuple[int, ...] = ()
    """Held beyond our quota: give up (holder cleared) so another replica takes it at once."""


def plan(steps: Mapping[int, Step], limit: int, identity: str) -> Plan:
    """Keep at most ``limit`` of the Leases we hold and claim free ones up to it.

    Every replica ranks the Leases in its own order (rendezvous hashing of identity and index), so replicas
    racing for free Leases mostly want different ones, and the ones a replica keeps are stable over rounds.
    """

    def rank(index: int) -> int:
        return _hash(f"{identity}/{index}")

    held = sorted((i for i, step in steps.items() if step is Step.RENEW), key=rank)
    free = sorted((i for i, step in steps.items() if step in (Step.CREATE, Step.ACQUIRE)), key=rank)
    keep = held[:limit]
    return Plan(
        renew=tuple(keep), claim=tuple(free[: max(0, limit - len(keep))]), release=tuple(held[limit:])
    )
