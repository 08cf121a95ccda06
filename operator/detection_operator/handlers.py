"""kopf wiring only: startup and shutdown, and the watch feeding the scheduler. Logic lives elsewhere."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from kubernetes import client, config

from .act.kube import read_secret
from .api.base import GROUP, VERSION, parse_duration
from .api.kinds import KINDS
from .metrics.connections import Connections
from .notify.delivery import Notifier
from .notify.receivers import ReceiverConfig
from .outputs import MANAGED_BY, MANAGED_BY_LABEL, owner_key
from .reconcile import Reconciler
from .scheduler import Key, Scheduler
from .settings import Settings

DEFAULT_INTERVAL = 30.0


def _api_client() -> client.ApiClient:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Configure kopf, then start the scheduler that evaluates every object."""
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # A server-side watch timeout makes kopf re-list periodically, which heals a silently broken stream.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.posting.level = logging.INFO
    # The owned-ConfigMap watch (restore_output) streams only our ConfigMaps, filtered by the apiserver.
    settings.watching.label_selectors["configmaps"] = f"{MANAGED_BY_LABEL}={MANAGED_BY}"

    operator_settings = Settings.from_env()
    api = _api_client()
    executor = ThreadPoolExecutor(max_workers=operator_settings.max_workers, thread_name_prefix="blocking")
    connections = Connections(
        operator_settings.prometheus, lambda namespace, name: read_secret(api, namespace, name)
    )
    notifier = Notifier(ReceiverConfig.load(operator_settings.receivers_file))
    reconciler = Reconciler(api, connections, executor, notifier)
    scheduler = Scheduler(reconciler, operator_settings.max_concurrent_evaluations)
    memo.api, memo.executor, memo.reconciler, memo.scheduler = api, executor, reconciler, scheduler
    memo.notifier = notifier
    memo.scheduler_task = asyncio.create_task(scheduler.run(), name="scheduler")


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Stop scheduling, let running evaluations finish, release clients."""
    memo.scheduler_task.cancel()
    await memo.scheduler.drain()
    await memo.notifier.close()
    memo.executor.shutdown(wait=False)
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
        memo.reconciler.forget(key)
        return
    snapshot = {field: body.get(field) for field in ("metadata", "spec", "status")}
    memo.scheduler.upsert(key, snapshot, _interval(body))


for _kind in KINDS:
    kopf.on.event(GROUP, VERSION, _kind.plural, id="track")(track)


@kopf.on.event("", "v1", "configmaps", labels={MANAGED_BY_LABEL: MANAGED_BY}, id="restore-output")
async def restore_output(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A deleted or hand-edited owned ConfigMap makes its owner due now, which re-applies it."""
    key = owner_key(body)
    if key is None:
        return
    data = None if event.get("type") == "DELETED" else dict(body.get("data") or {})
    if memo.reconciler.outputs.drifted(key, body.metadata.name or "", data):
        memo.scheduler.due_now(key)
