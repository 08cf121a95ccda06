"""Operator settings, read once from the environment (the Helm chart sets these)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.times import age
from ..observe.source import PrometheusConfig

if TYPE_CHECKING:
    from ..store.config import StoreConfig

_PREFIX = "DETECTION_OPERATOR_"


def _read_file(path: str | None) -> str | None:
    # A mounted Secret may lack some keys (no CA, say): an absent file means "not configured".
    return Path(path).read_text().strip() if path and Path(path).is_file() else None


def _existing(path: str | None) -> str | None:
    return path if path and Path(path).is_file() else None


@dataclass(frozen=True)
class LeaderElection:
    """The coordination.k8s.io/v1 Leases that decide which replica evaluates and writes which objects."""

    enabled: bool = True
    lease_name: str = "detection-operator"
    lease_namespace: str = "default"
    identity: str = ""
    """This replica's holderIdentity: $POD_NAME, else <hostname>-<pid>."""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    buckets: int = 12
    """Objects are split into this many buckets by namespace, each with its own Lease (see buckets.py);
    12 spreads evenly over 1, 2, 3, 4 or 6 replicas. 1 is active/standby on the one Lease ``lease_name``."""
    member_slots: int = 8
    """Member Leases through which replicas see each other: at least the replicas that can run at once
    (a rolling update's surge too); a replica that finds none free still claims free buckets."""

    def bucket_leases(self) -> tuple[str, ...]:
        """The Lease of each bucket, by index; the names carry the bucket count, so replicas configured
        with another count (during a rolling update that changes it) see each other's Leases as foreign."""
        if self.buckets == 1:
            return (self.lease_name,)
        return tuple(f"{self.lease_name}-bucket-{i}-of-{self.buckets}" for i in range(self.buckets))

    def member_leases(self) -> tuple[str, ...]:
        """The member slots' Leases; none with one bucket, where nobody needs to know the others."""
        if self.buckets == 1:
            return ()
        return tuple(f"{self.lease_name}-member-{i}" for i in range(self.member_slots))

    def __post_init__(self) -> None:
        if self.buckets < 1 or self.member_slots < 1:
            raise ValueError(
                f"{_PREFIX}BUCKETS ({self.buckets}) and {_PREFIX}MEMBER_SLOTS ({self.member_slots}) "
                "must be at least 1"
            )
        # client-go's rule: the holder must give up before others may take over, and retry in between.
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                f"{_PREFIX}RETRY_PERIOD_SECONDS ({self.retry_period:g}) < RENEW_DEADLINE_SECONDS "
                f"({self.renew_deadline:g}) < LEASE_DURATION_SECONDS ({self.lease_duration:g}) must hold"
            )


def _flag(name: str, raw: str | None, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"{_PREFIX}{name} must be true or false, not {raw!r}")


@dataclass(frozen=True)
class Settings:
    """What the operator process is configured with."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty means cluster-wide."""
    max_workers: int = 16
    """Threads for blocking Kubernetes calls; also the connections (and so the queries in flight) per
    Prometheus connection, whose queries run on the event loop."""
    max_concurrent_evaluations: int = 128
    """Evaluations in flight at once; the rest wait their turn. Most of an evaluation's time is waiting
    (on Prometheus, on a worker for a status write), so this bounds waiting coroutines, not work: at
    2,000 objects on 10 s, 32 fell behind (192 of 200 evaluations/s, lag p95 22 s) where 128 kept up."""
    http_port: int = 8080
    """Port of /healthz, /readyz and /metrics."""
    election: LeaderElection = field(default_factory=LeaderElection)
    status_refresh_seconds: float = 0.0
    """A status whose only changes are `lastEvaluated` and measured values is rewritten at most this often;
    decisions, conditions and memory are always written at once. 0 writes after every evaluation."""
    log_writes: bool = False
    """Log one line per status write (which replica wrote which object) without the rest of debug logging:
    an audit of hand-overs between replicas."""
    query_coalesce_seconds: float = 1.0
    """Identical queries within this many seconds share one Prometheus request; 0 turns that off."""
    scrape_alignment: bool = True
    """Evaluate each object right after its data is refreshed (runtime.alignment); off: a fixed grid."""
    receivers_file: str | None = None
    """YAML/JSON file (a mounted Secret) listing alert receivers; see notify.receivers."""
    prometheus: PrometheusConfig = field(
        default_factory=lambda: PrometheusConfig(url="http://prometheus-operated.monitoring.svc:9090")
    )
    """Default Prometheus connection; objects may override it through a Secret."""
    history_store: StoreConfig | None = None
    """The PostgreSQL history store, when configured (``HISTORY_POSTGRES_HOST`` set)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``DETECTION_OPERATOR_*`` variables; unset ones keep their defaults.

        Credentials come from files (mounted Secrets), never from plain environment values.
        """
        env = os.environ if env is None else env

        def get(name: str, default: str | None = None) -> str | None:
            return env.get(_PREFIX + name, default)

        namespaces = tuple(n.strip() for n in (get("NAMESPACES") or "").split(",") if n.strip())
        username, password = get("PROMETHEUS_USERNAME"), _read_file(get("PROMETHEUS_PASSWORD_FILE"))
        default = cls()
        prometheus = PrometheusConfig(
            url=get("PROMETHEUS_URL") or default.prometheus.url,
            timeout_seconds=float(get("PROMETHEUS_TIMEOUT_SECONDS") or default.prometheus.timeout_seconds),
            bearer_token=_read_file(get("PROMETHEUS_BEARER_TOKEN_FILE")),
            basic_auth=(username, password) if username and password else None,
            ca_file=_existing(get("PROMETHEUS_CA_FILE")),
            headers=json.loads(get("PROMETHEUS_HEADERS") or "{}") or None,
            pool_size=int(get("MAX_WORKERS") or default.max_workers),
            batch_size=int(get("QUERY_BATCH") or default.prometheus.batch_size),
        )
        return cls(
            namespaces=namespaces,
            max_workers=int(get("MAX_WORKERS") or default.max_workers),
            max_concurrent_evaluations=int(
                get("MAX_CONCURRENT_EVALUATIONS") or default.max_concurrent_evaluations
            ),
            http_port=int(get("HTTP_PORT") or default.http_port),
            election=LeaderElection(
                enabled=_flag("LEADER_ELECTION", get("LEADER_ELECTION"), default.election.enabled),
                lease_name=get("LEASE_NAME") or default.election.lease_name,
                lease_namespace=get("LEASE_NAMESPACE") or env.get("POD_NAMESPACE") or "default",
                identity=env.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
                lease_duration=float(get("LEASE_DURATION_SECONDS") or default.election.lease_duration),
                renew_deadline=float(get("RENEW_DEADLINE_SECONDS") or default.election.renew_deadline),
                retry_period=float(get("RETRY_PERIOD_SECONDS") or default.election.retry_period),
                buckets=int(get("BUCKETS") or default.election.buckets),
                member_slots=int(get("MEMBER_SLOTS") or default.election.member_slots),
            ),
            status_refresh_seconds=float(get("STATUS_REFRESH_SECONDS") or default.status_refresh_seconds),
            log_writes=_flag("LOG_WRITES", get("LOG_WRITES"), default.log_writes),
            query_coalesce_seconds=float(get("QUERY_COALESCE_SECONDS") or default.query_coalesce_seconds),
            scrape_alignment=_flag("SCRAPE_ALIGNMENT", get("SCRAPE_ALIGNMENT"), default.scrape_alignment),
            receivers_file=get("RECEIVERS_FILE"),
            prometheus=prometheus,
            history_store=_history_store(get),
        )


def _history_store(get: Callable[[str], str | None]) -> StoreConfig | None:
    """The store's settings, or None without a host; the password only from a file (a Secret's key)."""
    host = get("HISTORY_POSTGRES_HOST")
    if not host:
        return None
    # Here, not at the top: the store brings psycopg (8.6 MB of RSS), which an operator without it skips.
    from ..store.config import StoreConfig

    default = StoreConfig(host=host)
    password_file = get("HISTORY_POSTGRES_PASSWORD_FILE")
    password = _read_file(password_file)
    if password_file and password is None:
        raise ValueError(f"{_PREFIX}HISTORY_POSTGRES_PASSWORD_FILE: no file at {password_file}")

    def ages(name: str, fallback: timedelta) -> timedelta:
        raw = get(name)
        try:
            return age(raw) if raw else fallback
        except ValueError as exc:
            raise ValueError(f"{_PREFIX}{name}: {exc}") from None

    return StoreConfig(
        host=host,
        port=int(get("HISTORY_POSTGRES_PORT") or default.port),
        database=get("HISTORY_POSTGRES_DATABASE") or default.database,
        user=get("HISTORY_POSTGRES_USER") or default.user,
        password=password,
        sslmode=get("HISTORY_POSTGRES_SSLMODE") or default.sslmode,
        retention=ages("HISTORY_RETENTION", default.retention),
        snapshot_interval=ages("HISTORY_SNAPSHOT_INTERVAL", default.snapshot_interval),
    )
