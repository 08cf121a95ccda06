"""Bucket election I/O: list the Leases with the Kubernetes client in the worker pool, and every retry period
run the decisions of `election.py` and `buckets.py`: hold one member slot, hold a share of the buckets'
weight.

Every replica watches and keeps its scheduler warm for every object; it dispatches and writes only for the
objects whose bucket it holds (:meth:`Elector.owns`, checked right before each write). With one bucket this
is the active/standby leader election on one Lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from .. import telemetry
from .buckets import Plan, bucket_of, holding_off, layout, live_replicas, loads, plan, share, weights
from .election import LeaseRecord, Observed, Step, decide, expired, leading, observe
from .settings import LeaderElection

log = logging.getLogger(__name__)

Blocking = Callable[..., Awaitable[Any]]
OnChange = Callable[[frozenset[int], frozenset[int]], None]
"""Called with the buckets gained and the buckets given up or lost."""
Demand = Callable[[], Mapping[str, float]]
"""Evaluations per hour of the watched objects, by namespace (what a bucket weighs)."""


def _micro_time(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: datetime | str | None) -> str | None:
    return _micro_time(value) if isinstance(value, datetime) else value


def list_leases(api: client.ApiClient, namespace: str) -> dict[str, LeaseRecord]:
    """Every Lease of the namespace as the election sees it, by name: one request for all buckets."""
    leases: Any = client.CoordinationV1Api(api).list_namespaced_lease(namespace)
    records = {}
    for lease in leases.items:
        spec = lease.spec
        records[lease.metadata.name] = LeaseRecord(
            holder=spec.holder_identity or None,
            lease_duration_seconds=float(spec.lease_duration_seconds or 0),
            renew_time=_text(spec.renew_time),
            acquire_time=_text(spec.acquire_time),
            transitions=spec.lease_transitions or 0,
            resource_version=lease.metadata.resource_version,
        )
    return records


def write_lease(
    api: client.ApiClient,
    namespace: str,
    name: str,
    step: Step,
    record: LeaseRecord | None,
    holder: str | None,
    duration: float,
) -> None:
    """Create, renew, acquire or (holder None) release the Lease; a 409 means another replica won."""
    now = _micro_time(datetime.now(UTC))
    spec: dict[str, Any] = {
        "holderIdentity": holder,
        "leaseDurationSeconds": max(1, round(duration)),
        "renewTime": now,
        "acquireTime": record.acquire_time if record and step is Step.RENEW else now,
        "leaseTransitions": (record.transitions if record else 0) + (step is Step.ACQUIRE),
    }
    body: dict[str, Any] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    api_ = client.CoordinationV1Api(api)
    if record is None:
        api_.create_namespaced_lease(namespace, body)  # type: ignore[arg-type]
        return
    # The resourceVersion makes the update conditional: of two replicas racing, one gets a 409.
    body["metadata"]["resourceVersion"] = record.resource_version
    api_.replace_namespaced_lease(name, namespace, body)  # type: ignore[arg-type]


class Elector:
    """Holds a member slot and its share of the bucket Leases' weight (``demand``, every round; without it
    every bucket weighs the same); reports changes through ``on_change``."""

    def __init__(
        self,
        api: client.ApiClient,
        settings: LeaderElection,
        blocking: Blocking,
        on_change: OnChange,
        clock: Callable[[], float] = time.monotonic,
        demand: Demand = dict,
    ) -> None:
        self._api = api
        self._settings = settings
        self._blocking = blocking
        self._on_change = on_change
        self._clock = clock
        self._demand = demand
        self._buckets = settings.bucket_leases()
        self._members = settings.member_leases()
        self._weights = weights({}, len(self._buckets))
        self._observed: dict[str, Observed] = {}
        self._renewed_at: dict[str, float] = {}
        """Per Lease we hold: when our last successful write of it was *sent*."""
        self._handing_over: set[str] = set()
        """Leases given up last round, still naming us: cleared this round, whatever this round's plan."""
        self._epochs: dict[str, int] = {}
        """Per Lease we hold: its leaseTransitions, which name our tenure in the logs."""
        self._held: frozenset[int] = frozenset()
        self._live = 1
        self._holding_off = False
        telemetry.BUCKETS_TOTAL.set(len(self._buckets))

    @property
    def identity(self) -> str:
        """This replica's holderIdentity."""
        return self._settings.identity

    def _holds(self, name: str, now: float) -> bool:
        return leading(self._renewed_at.get(name), now, self._settings.renew_deadline)

    def bucket(self, namespace: str) -> int:
        """The bucket of a namespace's objects."""
        return bucket_of(namespace, len(self._buckets))

    def owns(self, namespace: str) -> bool:
        """Whether this replica may evaluate and write the namespace's objects now; cheap, checked right
        before each write: the bucket's last renewal began less than the renew deadline ago."""
        return self._holds(self._buckets[self.bucket(namespace)], self._clock())

    def held(self) -> frozenset[int]:
        """The buckets this replica may write for now."""
        now = self._clock()
        return frozenset(i for i, name in enumerate(self._buckets) if self._holds(name, now))

    def leading(self) -> bool:
        """Whether this replica holds any bucket (with one bucket: whether it is the leader)."""
        return bool(self.held())

    async def run(self) -> None:
        """Renew, claim, release or follow every retry period until cancelled."""
        s = self._settings
        while True:
            wait = s.retry_period
            try:
                wait = await self._round()
            except ApiException as exc:
                log.warning("leases in %s: %s %s", s.lease_namespace, exc.status, exc.reason)
            except (HTTPError, OSError) as exc:  # apiserver unreachable: expected while it restarts
                log.warning("leases in %s: %s", s.lease_namespace, type(exc).__name__)
            except Exception:  # the loop must survive anything a round throws; ownership then lapses
                log.exception("leases in %s: election round failed", s.lease_namespace)
            self._notice()
            await asyncio.sleep(wait)

    async def _round(self) -> float:
        """One round; how long to wait before the next (a follower wakes when a Lease would expire)."""
        s = self._settings
        now = self._clock()
        records = await self._blocking(list_leases, self._api, s.lease_namespace)
        waits = [s.retry_period]
        steps: dict[str, Step] = {}
        for name in (*self._members, *self._buckets):
            seen = self._observed[name] = observe(self._observed.get(name), records.get(name), now)
            decision = decide(seen, now, s.identity, s.retry_period)
            steps[name] = decision.step
            waits.append(decision.wait)
        handing_over, self._handing_over = self._handing_over, set()
        for name in handing_over:
            if steps[name] is Step.RENEW:
                # Neither ours to keep nor free to claim: a plan of this round with other loads than last
                # round's would take it back, and the replica it was meant for would wait another round.
                steps[name] = Step.FOLLOW
                await self._release(name, records.get(name), "to rebalance")
        no_claims, give_up = holding_off(self._foreign(records, now), len(self._buckets))
        self._hold_off(no_claims)
        live = frozenset({s.identity})  # with one bucket there are no member Leases: active/standby
        if self._members:
            # The member slot first: a replica's slot is renewed before its buckets, so others never see
            # its buckets expire while its slot still counts it as alive. A replica holding off holds no
            # slot: the member Leases are shared by every bucket count, and a replica of the previous
            # count that counted it would give up a share of its buckets that nobody may claim.
            slots = Fraction(0) if no_claims else Fraction(1)
            member_plan = plan(_by_index(self._members, steps), slots, s.identity)
            await self._apply(self._members, member_plan, records)
            live = live_replicas((self._observed[n] for n in self._members), now, s.identity)
        self._live = len(live)
        self._weights = weights(self._demand(), len(self._buckets))
        target = share(self._weights, self._live)
        bucket_steps = _by_index(self._buckets, steps)
        others = self._others(live, now)
        if no_claims:
            bucket_steps = {
                i: step if step is Step.RENEW else Step.FOLLOW for i, step in bucket_steps.items()
            }
            target = Fraction(0) if give_up else target
            others = []  # the others of our count may be holding off too: nobody would take what we give
        todo = plan(bucket_steps, target, s.identity, self._weights, others)
        await self._apply(self._buckets, todo, records)
        return max(0.0, min(waits))

    def _others(self, live: frozenset[str], now: float) -> list[int]:
        """The weight every other live replica holds, by the bucket Leases as last observed."""
        holders = {i: self._another(self._observed[name], now) for i, name in enumerate(self._buckets)}
        held = loads(holders, self._weights, live - {self.identity})
        return list(held.values())

    def _another(self, seen: Observed, now: float) -> str | None:
        """The replica other than us holding the Lease as observed, while it has not expired; else None."""
        holder = seen.record.holder if seen.record else None
        return holder if holder and holder != self.identity and not expired(seen, now) else None

    def _foreign(self, records: Mapping[str, LeaseRecord], now: float) -> list[int]:
        """The bucket counts of live Leases that other replicas hold in another layout."""
        s, own = self._settings, set(self._buckets)
        counts = []
        for name, record in records.items():
            count = layout(name, s.lease_name)
            if count is None or name in own:
                continue
            seen = self._observed[name] = observe(self._observed.get(name), record, now)
            if self._another(seen, now):
                counts.append(count)
        return counts

    def _hold_off(self, now_holding_off: bool) -> None:
        if now_holding_off != self._holding_off:
            self._holding_off = now_holding_off
            if now_holding_off:
                log.warning(
                    "leases of another bucket count are held in %s (a rolling update changing "
                    "leaderElection.buckets?): claiming no bucket until they are released or expire",
                    self._settings.lease_namespace,
                )
            else:
                log.info("no leases of another bucket count are held any more: claiming buckets")

    async def _apply(self, names: Sequence[str], todo: Plan, records: Mapping[str, LeaseRecord]) -> None:
        s = self._settings
        for i in todo.release:
            name = names[i]
            if self._renewed_at.pop(name, None) is not None:
                # Stop writing now, hand over next round: a write that passed its check just before has
                # a retry period to land before another replica can acquire the bucket.
                self._handing_over.add(name)
                self._notice("to rebalance")
            else:
                await self._release(name, records.get(name), "to rebalance")

        async def write(name: str) -> None:
            record = records.get(name)
            step = (
                Step.RENEW
                if record and record.holder == s.identity
                else Step.CREATE
                if record is None
                else Step.ACQUIRE
            )
            sent = self._clock()
            try:
                await self._blocking(
                    write_lease, self._api, s.lease_namespace, name, step, record, s.identity,
                    s.lease_duration,
                )  # fmt: skip
            except ApiException as exc:
                if exc.status not in (409, 404):
                    raise
                log.debug("lease %s/%s: another replica wrote it first", s.lease_namespace, name)
                return
            if step is not Step.RENEW or name not in self._epochs:
                self._epochs[name] = (record.transitions if record else 0) + (step is Step.ACQUIRE)
            self._renewed_at[name] = sent
            # At once, with no await in between: no evaluation of a new bucket is logged before it.
            self._notice()

        results = await asyncio.gather(
            *(write(names[i]) for i in (*todo.renew, *todo.claim)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _release(self, name: str, record: LeaseRecord | None, why: str) -> None:
        """Stop writing for the Lease first, then clear its holder so another replica takes it at once."""
        s = self._settings
        self._renewed_at.pop(name, None)
        self._notice(why)
        if record is None or record.holder != s.identity:
            return
        try:
            await self._blocking(
                write_lease, self._api, s.lease_namespace, name, Step.RENEW, record, None, s.lease_duration
            )  # fmt: skip
            log.info("released lease %s/%s %s", s.lease_namespace, name, why)
        except (ApiException, HTTPError, OSError) as exc:  # the others then take over at expiry
            reason = getattr(exc, "reason", None) or type(exc).__name__
            log.warning("could not release lease %s/%s: %s", s.lease_namespace, name, reason)

    def _notice(self, why: str = "") -> None:
        """Log, count and report the buckets gained and lost since the last look."""
        held = self.held()
        gained, gone = held - self._held, self._held - held
        self._held = held
        telemetry.BUCKETS_HELD.set(len(held))
        telemetry.LOAD_HELD.set(self._load(held))
        telemetry.LIVE_REPLICAS.set(self._live)
        if not (gained or gone):
            return
        for i in sorted(gained):
            self._log_change("acquired", i, "")
        for i in sorted(gone):
            self._log_change("released" if why else "lost", i, why or "(renew deadline passed)")
        self._on_change(gained, gone)

    def _load(self, held: frozenset[int]) -> float:
        """The share of all buckets' weight in ``held``, by the last round's weights."""
        return sum(self._weights[i] for i in held) / sum(self._weights)

    def _log_change(self, change: str, bucket: int, why: str) -> None:
        name = self._buckets[bucket]
        epoch = self._epochs.get(name, 0)
        telemetry.BUCKET_CHANGES.labels(change).inc()
        log.info(
            "%s bucket %d of %d (lease %s/%s, epoch %d)%s; holding %d of %d (%.0f%% of the load) with %d "
            "live replica(s)",
            change, bucket, len(self._buckets), self._settings.lease_namespace, name, epoch,
            f" {why}" if why else "", len(self._held), len(self._buckets), 100 * self._load(self._held),
            self._live,
            extra={"identity": self.identity, "bucket": bucket, "change": change, "epoch": epoch},
        )  # fmt: skip

    async def release(self) -> None:
        """Give every Lease up at shutdown (holderIdentity cleared) so the others take over at once."""
        s = self._settings
        try:
            records = await self._blocking(list_leases, self._api, s.lease_namespace)
        except (ApiException, HTTPError, OSError) as exc:
            self._renewed_at.clear()
            self._notice("at shutdown")
            log.warning("could not release leases in %s: %s", s.lease_namespace, type(exc).__name__)
            return
        held = [
            n for n in (*self._buckets, *self._members) if records.get(n) and records[n].holder == s.identity
        ]
        await asyncio.gather(*(self._release(name, records[name], "at shutdown") for name in held))
        self._renewed_at.clear()
        self._notice("at shutdown")


def _by_index(names: Sequence[str], steps: Mapping[str, Step]) -> dict[int, Step]:
    return {i: steps[name] for i, name in enumerate(names)}
