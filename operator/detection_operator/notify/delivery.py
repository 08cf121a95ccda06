"""Deliver grouped notifications with httpx: in the background, with retries, never blocking evaluation.

Each receiver is tried independently with exponential back-off (0.5 s, 1 s, 2 s, ...) up to its
``attempts``, each try bounded by its ``timeoutSeconds``. Outcomes are counted per receiver and remembered
per object, so the next evaluation can report them in the ``AlertsDelivered`` condition.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx

from ..core.signing import WEBHOOK_HEADER, sign_webhook
from ..decide.alerts import ObjectKey, Outgoing
from ..runtime import telemetry
from ..runtime.logref import about
from .payloads import alertmanager_alerts, webhook_body
from .receivers import Receiver, ReceiverConfig

log = logging.getLogger(__name__)

BACKOFF_START = 0.5


@dataclass
class Delivery:
    """The latest outcome for one object: which receivers failed, and why."""

    failures: dict[str, str] = field(default_factory=dict)


class Notifier:
    """Sends notifications for objects to the receivers their spec names."""

    def __init__(
        self,
        config: ReceiverConfig,
        client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config
        self._client = client or httpx.AsyncClient(
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16), follow_redirects=False
        )
        self._sleep = sleep
        self._tasks: set[asyncio.Task[None]] = set()
        self._failed: Counter[str] = Counter()
        self.outcomes: dict[ObjectKey, Delivery] = {}

    def dispatch(
        self,
        obj: ObjectKey,
        receivers: list[str],
        items: tuple[Outgoing, ...],
        cooldown: timedelta,
        now: datetime,
    ) -> None:
        """Start delivering ``items`` to each named receiver; returns at once."""
        if not items:
            return
        outcome = self.outcomes.setdefault(obj, Delivery())
        for name in receivers:
            receiver = self.config.get(name)
            if receiver is None:
                outcome.failures[name] = "no such receiver in the operator's settings"
                continue
            task = asyncio.create_task(self._deliver(obj, receiver, items, cooldown, now, outcome))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self,
        obj: ObjectKey,
        receiver: Receiver,
        items: tuple[Outgoing, ...],
        cooldown: timedelta,
        now: datetime,
        outcome: Delivery,
    ) -> None:
        if receiver.type == "webhook":
            url, body = receiver.url, json.dumps(webhook_body(obj, items, now)).encode()
        else:
            url = f"{receiver.url}/api/v2/alerts"
            body = json.dumps(alertmanager_alerts(obj, items, now, cooldown)).encode()
        error = ""
        for attempt in range(receiver.attempts):
            if attempt:
                await self._sleep(BACKOFF_START * 2 ** (attempt - 1))
            headers = {"Content-Type": "application/json", "User-Agent": "detection-operator"}
            if receiver.hmac_key is not None:
                key = receiver.hmac_key.get_secret_value().encode()
                headers[WEBHOOK_HEADER] = sign_webhook(key, body, int(time.time()))
            try:
                response = await self._client.post(
                    url, content=body, headers=headers, timeout=receiver.timeout_seconds
                )
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}"
                continue
            if response.is_success:
                outcome.failures.pop(receiver.name, None)
                telemetry.ALERTS_SENT.labels(receiver.name).inc()
                return
            error = f"HTTP {response.status_code}"
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                break  # the request itself is wrong: retrying cannot help
        self._failed[receiver.name] += 1
        telemetry.ALERTS_FAILED.labels(receiver.name).inc()
        outcome.failures[receiver.name] = f"{error} after {attempt + 1} attempt(s)"
        log.warning(
            "alert delivery to %s failed for %s/%s: %s",
            receiver.name,
            obj.namespace,
            obj.name,
            error,
            extra=about(obj.kind, obj.namespace, obj.name, receiver=receiver.name),
        )

    def failed_count(self, receiver: str) -> int:
        """Deliveries to ``receiver`` that failed since the operator started."""
        return self._failed[receiver]

    async def drain(self) -> None:
        """Wait for deliveries in flight (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Finish deliveries in flight, then release connections."""
        await self.drain()
        await self._client.aclose()
