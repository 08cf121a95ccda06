"""Leader election decisions, pure: given the Lease as read, when it was last seen to change, the time and
who we are, what to do. The I/O around it lives in `lease.py`.

The semantics are client-go's (k8s.io/client-go/tools/leaderelection): a replica acquires the Lease when
nobody holds it, when it already holds it (a restart with the same identity re-acquires at once), or when
the holder has not renewed it for ``leaseDurationSeconds`` *as measured on our own clock since we saw the
record change* — remote timestamps are never compared with local time, so clock skew between replicas
cannot hand the Lease to two of them. The holder renews every retry period and stops leading when no
renewal has succeeded within the renew deadline, which is shorter than the lease duration: it has stopped
writing before anyone else may start.

Why not kopf's peering: kopf documents peering as a way to pause deployed operators while a developer runs
one of higher priority; its own source (kopf/_core/engines/peering.py, nolar/kopf) says "There are NO
per-object locks between the operators". Its module docstring says that same-priority operators warn and
"continue to function" (both act), and the code of kopf 1.45 (``process_peering_event``) instead pauses
*all* same-priority operators, including itself. Either way two equal replicas never get "one active, one
standby": they double-act or nobody acts. So kopf runs standalone and this Lease decides who writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class LeaseRecord:
    """The parts of a coordination.k8s.io/v1 Lease the election reads."""

    holder: str | None
    lease_duration_seconds: float
    renew_time: str | None
    acquire_time: str | None
    transitions: int
    resource_version: str


@dataclass(frozen=True)
class Observed:
    """The last record seen and the local (monotonic) time it was first seen in that form."""

    record: LeaseRecord | None
    at: float


class Step(Enum):
    """What to do with the Lease this round."""

    CREATE = "create"
    """No Lease exists: create it holding it."""
    RENEW = "renew"
    """We hold it: move renewTime forward."""
    ACQUIRE = "acquire"
    """Free or expired: take it over (holder, acquireTime, transitions + 1)."""
    FOLLOW = "follow"
    """Someone else holds a live Lease: wait."""


@dataclass(frozen=True)
class Decision:
    """The step, and how long to wait before the next round."""

    step: Step
    wait: float


def observe(previous: Observed | None, record: LeaseRecord | None, now: float) -> Observed:
    """Remember when the record last changed; an unchanged record keeps its first-seen time."""
    if previous is not None and _same(previous.record, record):
        return previous
    return Observed(record, now)


def _same(a: LeaseRecord | None, b: LeaseRecord | None) -> bool:
    if a is None or b is None:
        return a is b
    # A renewal changes renewTime (and the resourceVersion): that is what "the holder is alive" means.
    return (a.holder, a.renew_time, a.resource_version) == (b.holder, b.renew_time, b.resource_version)


def decide(observed: Observed, now: float, identity: str, retry_period: float) -> Decision:
    """The step for this round; a follower wakes when the Lease would expire if sooner than a retry."""
    record = observed.record
    if record is None:
        return Decision(Step.CREATE, retry_period)
    if record.holder == identity:
        return Decision(Step.RENEW, retry_period)
    if not record.holder or expired(observed, now):
        return Decision(Step.ACQUIRE, retry_period)
    return Decision(Step.FOLLOW, min(retry_period, observed.at + record.lease_duration_seconds - now))


def expired(observed: Observed, now: float) -> bool:
    """Whether the Lease went unrenewed for its duration, counted on our clock since we saw it change."""
    record = observed.record
    return record is None or now >= observed.at + record.lease_duration_seconds


def leading(renewed_at: float | None, now: float, renew_deadline: float) -> bool:
    """Whether we may act as leader: our last successful renewal began less than the deadline ago.

    ``renewed_at`` is when that renewal's request was *sent*, so the deadline is counted conservatively.
    """
    return renewed_at is not None and now - renewed_at < renew_deadline
