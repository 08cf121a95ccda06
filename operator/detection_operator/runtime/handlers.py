"""kopf wiring only: startup and shutdown, and the watch feeding the scheduler. Logic lives elsewhere."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import kopf
from kubernetes import client, config

from .. import telemetry
from ..act.kube import read_secret
from ..act.outputs import MANAGED_BY, MANAGED_BY_LABEL, owner_key
from ..api.base import GROUP, VERSION
from ..api.kinds import KINDS, by_plural
from ..core.identity import Key
from ..core.times import parse_duration
from ..notify.delivery import Deliverer
from ..notify.receivers import ReceiverConfig
from ..observe.connections import Connections
from ..reconcile import reconciler as reconciler_module
from ..reconcile.reconciler import Reconciler
from .http_server import HttpServer
from .lease import Elector
from .scheduler import Scheduler, namespace_phase
from .settings import Settings

DEFAULT_INTERVAL = 30.0

T = TypeVar("T")

log = logging.getLogger(__name__)


def _api_client(pool_size: int) -> client.ApiClient:
    configuration = client.Configuration()
    # One connection per worker: the default (5 per CPU) left workers waiting on urllib3's pool.
    configuration.connection_pool_maxsize = pool_size
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)


WATCH_HANDLERS = ("track", "restore-output")
"""The ids of the watch handlers: kopf calls one at every watch event."""


class QuietWatchHandlers(logging.Filter):
    """Drops kopf's "Handler 'track' succeeded." lines, logged at INFO for every watch event of every
    object in every replica (each status write is one): half of a replica's log lines at the benchmark's
    600 objects, 1922 of 3851, each formatted and written. Failures and retries are logged as before."""

    _quiet = frozenset(f"Handler {handler!r} succeeded." for handler in WATCH_HANDLERS)

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and record.msg in self._quiet)


_QUIET = QuietWatchHandlers()


class _NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: every handler here is an event handler, which reads none. kopf builds one at every
    watch event all the same, deep-copying the body (3 % of the operator's samples at 500 objects)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Configure kopf, then start the HTTP endpoints, the leader election and the scheduler."""
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.diffbase_storage = _NoDiffBase()
    # A server-side watch timeout makes kopf re-list periodically, which heals a silently broken stream.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.posting.level = logging.INFO
    # kopf's worker for an object keeps the object's last raw event (managedFields and all, ~50 KB at the
    # scale benchmark) until it has idled this long; at 5 s (kopf's default) that was ~250 objects alive
    # at 2,000 objects. Our watch handlers only hand the body to the scheduler, so a worker has nothing
    # to wait for.
    settings.queueing.idle_timeout = 0.5
    objects_log = logging.getLogger("kopf.objects")
    if _QUIET not in objects_log.filters:
        objects_log.addFilter(_QUIET)
    # The owned-ConfigMap watch (restore_output) streams only our ConfigMaps, filtered by the apiserver.
    settings.watching.label_selectors["configmaps"] = f"{MANAGED_BY_LABEL}={MANAGED_BY}"

    operator_settings = Settings.from_env()
    if operator_settings.log_writes:
        # Its debug lines are the per-write ones ("wrote status"); the root logger stays at its level.
        logging.getLogger(reconciler_module.__name__).setLevel(logging.DEBUG)
    election = operator_settings.election
    api = _api_client(operator_settings.max_workers)
    executor = ThreadPoolExecutor(max_workers=operator_settings.max_workers, thread_name_prefix="blocking")
    connections = Connections(
        operator_settings.prometheus,
        lambda namespace, name: read_secret(api, namespace, name),
        coalesce_seconds=operator_settings.query_coalesce_seconds,
    )
    notifier = Deliverer.from_config(ReceiverConfig.load(operator_settings.receivers_file))
    reconciler = Reconciler(
        api,
        connections,
        executor,
        notifier,
        identity=election.identity,
        may_write=lambda namespace: _owns(memo, namespace),
        status_refresh_seconds=operator_settings.status_refresh_seconds,
        scrape_alignment=operator_settings.scrape_alignment,
    )
    history = None
    if operator_settings.history_store is not None:
        from .history_store import HistoryStore  # with psycopg, only when the store is configured

        # Its sink joins the outbox's sinks; snapshots come from every evaluation of an owned object.
        history = HistoryStore(
            operator_settings.history_store,
            election.identity,
            lambda: _leading(memo),
            owns=lambda namespace: _owns(memo, namespace),
        )
        notifier.add(history.record_sink)
        reconciler.on_evaluated = history.evaluated
        store = operator_settings.history_store
        log.info("history store %s: snapshots every %s, retention %s", store.target, store.snapshot_interval,
                 store.retention)  # fmt: skip
    scheduler = Scheduler(
        reconciler,
        operator_settings.max_concurrent_evaluations,
        owns=lambda key: _owns(memo, key[1]),
        on_lag=telemetry.SCHEDULE_LAG.observe,
        phase=namespace_phase,
        on_removed=reconciler.forget,
        sampled=reconciler.take_sample if operator_settings.scrape_alignment else None,
        fresh_after=reconciler.need_fresh,
    )
    telemetry.ALIGNED.set_function(scheduler.aligned)

    def ownership_changed(gained: frozenset[int], lost: frozenset[int]) -> None:
        moved = gained | lost
        reconciler.reset(lambda key: elector is not None and elector.bucket(key[1]) in moved)
        if gained:
            scheduler.wake()

    elector = None
    # Its own threads: renewals queued behind a busy replica's evaluation I/O would miss the renew
    # deadline, and the replica would drop its buckets exactly when it is loaded.
    # One thread per Lease written in a round (its buckets and member slot), so a slow apiserver delays
    # the renewals side by side rather than one after another.
    election_pool = ThreadPoolExecutor(max_workers=election.buckets + 1, thread_name_prefix="election")

    async def election_blocking(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(election_pool, functools.partial(fn, *args))

    if election.enabled:
        elector = Elector(api, election, election_blocking, ownership_changed, demand=scheduler.demand)
    memo.elector = elector  # before anything can ask _owns(): without it, this replica owns every object
    # Read at each scrape, so the gauge drops the moment a renewal misses its deadline.
    telemetry.LEADER.set_function(lambda: float(_leading(memo)))
    ready = memo.get("ready")
    http = HttpServer("0.0.0.0", operator_settings.http_port, ready=ready.is_set if ready else lambda: True)
    await http.start()
    memo.api, memo.executor, memo.reconciler, memo.scheduler = api, executor, reconciler, scheduler
    memo.election_pool = election_pool
    memo.notifier, memo.http, memo.connections = notifier, http, connections
    memo.scheduler_task = asyncio.create_task(scheduler.run(), name="scheduler")
    memo.history = history
    if history is not None:
        memo.history_task = asyncio.create_task(history.run(), name="history-store")
    if elector is not None:
        memo.elector_task = asyncio.create_task(elector.run(), name="bucket-election")
    log.info(
        "replica %s serving /healthz, /readyz, /metrics on port %d; election %s",
        election.identity,
        operator_settings.http_port,
        (
            f"of {election.buckets} bucket(s) on leases {election.lease_namespace}/{election.lease_name}*"
            if election.enabled
            else "off"
        ),
    )


def _leading(memo: kopf.Memo) -> bool:
    elector: Elector | None = memo.elector
    return elector is None or elector.leading()


def _owns(memo: kopf.Memo, namespace: str) -> bool:
    elector: Elector | None = memo.elector
    return elector is None or elector.owns(namespace)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Stop scheduling, let running evaluations finish, hand the Lease over, release clients."""
    memo.scheduler_task.cancel()
    await memo.scheduler.drain()
    if memo.elector is not None:
        memo.elector_task.cancel()
        await memo.elector.release()
    await memo.notifier.close()
    if memo.history is not None:
        memo.history_task.cancel()
        await memo.history.close()
    await memo.connections.aclose()
    await memo.reconciler.aclose()
    await memo.http.stop()
    memo.executor.shutdown(wait=False)
    memo.election_pool.shutdown(wait=False)
    memo.api.close()


def _interval(body: kopf.Body) -> float:
    try:
        return parse_duration(str(body.get("spec", {}).get("interval", "30s")))
    except ValueError:
        return DEFAULT_INTERVAL


async def track(
    event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, resource: kopf.Resource, **_: Any
) -> None:
    """Keep the scheduler's view of each object current; deleted objects are forgotten."""
    key: Key = (resource.plural, body.metadata.namespace or "", body.metadata.name or "")
    if event.get("type") == "DELETED":
        memo.scheduler.remove(key)
    else:
        # Without managedFields: the apiserver's bookkeeping of who set which field, never read here, was
        # the largest part of each object kept (a third of a policy's JSON, more as Python objects). The
        # status as its JSON text: only an evaluation with no newer status of its own reads it (the first,
        # and the first after a bucket move), and as Python objects it was 12 KB of each object's 21.
        metadata = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
        status = json.dumps(body.get("status") or {}, separators=(",", ":"))
        snapshot = {"metadata": metadata, "spec": body.get("spec"), "status": status}
        memo.scheduler.upsert(key, snapshot, _interval(body))
    telemetry.OBJECTS.labels(by_plural(resource.plural).kind).set(memo.scheduler.count(resource.plural))


for _kind in KINDS:
    kopf.on.event(GROUP, VERSION, _kind.plural, id=WATCH_HANDLERS[0])(track)


@kopf.on.event("", "v1", "configmaps", labels={MANAGED_BY_LABEL: MANAGED_BY}, id=WATCH_HANDLERS[1])
async def restore_output(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A deleted or hand-edited owned ConfigMap makes its owner due now, which re-applies it."""
    key = owner_key(body)
    if key is None:
        return
    data = None if event.get("type") == "DELETED" else dict(body.get("data") or {})
    if memo.reconciler.outputs.drifted(key, body.metadata.name or "", data):
        memo.scheduler.due_now(key)
