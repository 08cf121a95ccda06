"""Leader election I/O: read and write the Lease with the Kubernetes client in the worker pool, and run
the decisions of `election.py` every retry period.

Every replica watches and keeps its scheduler warm; only the one for which :meth:`LeaderElector.leading`
is true dispatches evaluations and writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from .election import Decision, LeaseRecord, Observed, Step, decide, leading, observe
from .settings import LeaderElection

log = logging.getLogger(__name__)

Blocking = Callable[..., Awaitable[Any]]


def _micro_time(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: datetime | str | None) -> str | None:
    return _micro_time(value) if isinstance(value, datetime) else value


def read_lease(api: client.ApiClient, namespace: str, name: str) -> LeaseRecord | None:
    """The Lease as the election sees it, or None when it does not exist."""
    try:
        lease: Any = client.CoordinationV1Api(api).read_namespaced_lease(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    spec = lease.spec
    return LeaseRecord(
        holder=spec.holder_identity or None,
        lease_duration_seconds=float(spec.lease_duration_seconds or 0),
        renew_time=_text(spec.renew_time),
        acquire_time=_text(spec.acquire_time),
        transitions=spec.lease_transitions or 0,
        resource_version=lease.metadata.resource_version,
    )


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


class LeaderElector:
    """Holds (or waits for) the Lease; calls ``on_change(leading)`` when leadership is gained or lost."""

    def __init__(
        self,
        api: client.ApiClient,
        settings: LeaderElection,
        blocking: Blocking,
        on_change: Callable[[bool], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._settings = settings
        self._blocking = blocking
        self._on_change = on_change
        self._clock = clock
        self._observed: Observed | None = None
        self._renewed_at: float | None = None
        self._was_leading = False

    @property
    def identity(self) -> str:
        """This replica's holderIdentity."""
        return self._settings.identity

    def leading(self) -> bool:
        """Whether this replica may evaluate and write now; cheap, checked right before each write."""
        return leading(self._renewed_at, self._clock(), self._settings.renew_deadline)

    async def run(self) -> None:
        """Acquire, renew or follow every retry period until cancelled."""
        s = self._settings
        while True:
            wait = s.retry_period
            try:
                wait = (await self._round()).wait
            except ApiException as exc:
                log.warning("lease %s/%s: %s %s", s.lease_namespace, s.lease_name, exc.status, exc.reason)
            except (HTTPError, OSError) as exc:  # apiserver unreachable: expected while it restarts
                log.warning("lease %s/%s: %s", s.lease_namespace, s.lease_name, type(exc).__name__)
            except Exception:  # the loop must survive anything a round throws; leadership then lapses
                log.exception("lease %s/%s: election round failed", s.lease_namespace, s.lease_name)
            self._notice()
            await asyncio.sleep(wait)

    async def _round(self) -> Decision:
        s = self._settings
        now = self._clock()
        record = await self._blocking(read_lease, self._api, s.lease_namespace, s.lease_name)
        self._observed = observe(self._observed, record, now)
        decision = decide(self._observed, now, s.identity, s.retry_period)
        if decision.step is Step.FOLLOW:
            return decision
        sent = self._clock()
        try:
            await self._blocking(
                write_lease, self._api, s.lease_namespace, s.lease_name, decision.step, record,
                s.identity, s.lease_duration,
            )  # fmt: skip
        except ApiException as exc:
            if exc.status not in (409, 404):
                raise
            log.info("lease %s/%s: another replica wrote it first", s.lease_namespace, s.lease_name)
            return decision
        self._renewed_at = sent
        return decision

    def _notice(self) -> None:
        now_leading = self.leading()
        if now_leading != self._was_leading:
            self._was_leading = now_leading
            log.info(
                "%s leadership of lease %s/%s",
                "acquired" if now_leading else "lost",
                self._settings.lease_namespace,
                self._settings.lease_name,
                extra={"identity": self.identity},
            )
            self._on_change(now_leading)

    async def release(self) -> None:
        """Give the Lease up at shutdown (holderIdentity cleared) so a standby takes over at once."""
        if not self.leading():
            return
        self._renewed_at = None
        self._notice()
        s = self._settings
        try:
            record = await self._blocking(read_lease, self._api, s.lease_namespace, s.lease_name)
            if record is not None and record.holder == s.identity:
                await self._blocking(
                    write_lease, self._api, s.lease_namespace, s.lease_name, Step.RENEW, record,
                    None, s.lease_duration,
                )  # fmt: skip
                log.info("released lease %s/%s", s.lease_namespace, s.lease_name)
        except (ApiException, HTTPError, OSError) as exc:  # the standby then takes over at expiry
            reason = getattr(exc, "reason", None) or type(exc).__name__
            log.warning("could not release lease %s/%s: %s", s.lease_namespace, s.lease_name, reason)
