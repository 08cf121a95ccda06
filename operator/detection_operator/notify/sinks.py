"""Where audit records go: one small Protocol, and the HTTP receivers (webhook, Alertmanager) behind it.

A sink takes a batch of one object's records, oldest first, and either takes them all or raises
:class:`DeliveryError`. It must be idempotent by record id: the outbox sends a record again whenever it
cannot know it arrived (a restart between the send and the status write that settles it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

import httpx

from .. import telemetry
from ..api.records import AuditRecord
from ..core.signing import WEBHOOK_HEADER, sign_webhook
from .payloads import alertmanager_alerts, webhook_body
from .receivers import Receiver

BACKOFF_START = 0.5
"""Seconds before the second try of a round; doubles per try."""


class DeliveryError(Exception):
    """A sink did not take a batch; the message says why (it appears in the delivery conditions)."""


class RecordSink(Protocol):
    """A destination of audit records (receivers, the history store)."""

    @property
    def name(self) -> str:
        """The sink's name, as pending deliveries in status name it."""
        ...

    async def deliver(self, records: Sequence[AuditRecord]) -> None:
        """Take ``records`` (idempotently by id) or raise :class:`DeliveryError`."""
        ...


class HttpReceiver:
    """A webhook or an Alertmanager: ``attempts`` tries a round, exponential back-off, signed bodies."""

    def __init__(
        self,
        receiver: Receiver,
        client: httpx.AsyncClient,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.receiver = receiver
        self._client = client
        self._sleep = sleep

    @property
    def name(self) -> str:
        """The receiver's name in the operator's settings."""
        return self.receiver.name

    def _request(self, records: Sequence[AuditRecord]) -> tuple[str, bytes]:
        if self.receiver.type == "webhook":
            return self.receiver.url, json.dumps(webhook_body(records, datetime.now(UTC))).encode()
        return f"{self.receiver.url}/api/v2/alerts", json.dumps(alertmanager_alerts(records)).encode()

    async def deliver(self, records: Sequence[AuditRecord]) -> None:
        """POST the batch; a 4xx other than 408/429 ends the round at once (retrying cannot help)."""
        receiver = self.receiver
        url, body = self._request(records)
        error = ""
        attempt = 0
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
                error = type(exc).__name__
                continue
            if response.is_success:
                telemetry.ALERTS_SENT.labels(receiver.name).inc()
                return
            error = f"HTTP {response.status_code}"
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                break
        telemetry.ALERTS_FAILED.labels(receiver.name).inc()
        raise DeliveryError(f"{error} after {attempt + 1} attempt(s)")
