"""MetricsSource: run an instant PromQL query and normalise the answer to a value or a typed 'missing'.

Every failure (HTTP error, malformed JSON, timeout) becomes a :class:`~..core.readings.Missing` with its
cause, never an exception and never 0. Queries are coroutines on the event loop over one pooled httpx
client per connection: no thread per query (at 2,000 objects the thread hand-offs and urllib3 were 39 % of
the operator's samples).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ..core.readings import Missing, Reading, Value, normalise
from ..telemetry import QUERY_DURATION


class MetricsSource(Protocol):
    """Where samples come from. One implementation (Prometheus) until a measurement says otherwise."""

    async def query(self, promql: str, at: float | None = None, fresh_after: float | None = None) -> Reading:
        """Run one instant query, now or at the Unix time ``at``; an answer shared with other callers must
        have been asked after the Unix time ``fresh_after`` (if given)."""
        ...

    async def aclose(self) -> None:
        """Release pooled connections."""
        ...


@dataclass(frozen=True)
class PrometheusConfig:
    """How to reach a Prometheus-compatible server (Prometheus, Thanos, Mimir, ...)."""

    url: str
    timeout_seconds: float = 5.0
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    ca_file: str | None = None
    headers: Mapping[str, str] | None = None
    pool_size: int = 16
    """Connections kept alive to the server, and so the queries in flight at once on this connection."""

    def __repr__(self) -> str:
        # Credentials must never reach a log line through an f-string or an exception message.
        return f"PrometheusConfig(url={self.url!r}, timeout_seconds={self.timeout_seconds})"


class PrometheusSource:
    """MetricsSource over an async httpx client: keep-alive pool, no retries, an explicit timeout.

    The next evaluation is our retry, so each query gets exactly one attempt bounded by
    ``timeout_seconds`` (connect, each read and write), on the server side too. Waiting for a free
    connection is not bounded by it: that is queueing behind our own queries, not a slow server.
    """

    def __init__(self, config: PrometheusConfig) -> None:
        self.config = config
        headers = dict(config.headers or {})
        if config.bearer_token:
            headers["Authorization"] = f"Bearer {config.bearer_token}"
        timeout = config.timeout_seconds
        self._client = httpx.AsyncClient(
            base_url=config.url.rstrip("/"),
            headers=headers,
            auth=config.basic_auth,
            verify=ssl.create_default_context(cafile=config.ca_file) if config.ca_file else True,
            trust_env=False,
            timeout=httpx.Timeout(timeout, pool=None),
            limits=httpx.Limits(max_connections=config.pool_size, max_keepalive_connections=config.pool_size),
        )
        # Prometheus parses durations strictly: "2.0s" is a 400, "2000ms" is fine.
        self._server_timeout = f"{round(timeout * 1000)}ms"

    async def query(self, promql: str, at: float | None = None, fresh_after: float | None = None) -> Reading:
        """Run ``promql`` as an instant query (at ``at``, else now); every failure becomes a Missing.

        Every call asks the server, so every answer is fresh (``fresh_after`` is met).
        """
        started = time.perf_counter()
        reading = await self._query(promql, at)
        outcome = "ok" if isinstance(reading, Value) else reading.cause
        QUERY_DURATION.labels(outcome).observe(time.perf_counter() - started)
        return reading

    async def _query(self, promql: str, at: float | None) -> Reading:
        params = {"query": promql, "timeout": self._server_timeout}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            response = await self._client.get("/api/v1/query", params=params)
        except httpx.TimeoutException:
            return Missing("timeout", f"no answer within {self.config.timeout_seconds:g}s")
        except httpx.HTTPError as exc:
            return Missing("error", _short(exc))
        if response.status_code != 200:
            return Missing("error", f"HTTP {response.status_code}: {_error_text(response)}")
        try:
            return normalise(response.json()["data"]["result"])
        except (ValueError, KeyError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            return Missing("bad-response", _short(exc))

    async def aclose(self) -> None:
        """Release pooled connections."""
        await self._client.aclose()


def _error_text(response: httpx.Response) -> str:
    # Prometheus explains a refused query in the body ({"error": ...}); a proxy may send anything.
    try:
        body: Any = response.json()
    except json.JSONDecodeError:
        body = None
    text = body.get("error") if isinstance(body, dict) else None
    return _clip(str(text) if text else response.reason_phrase)


def _short(exc: BaseException) -> str:
    return _clip(f"{type(exc).__name__}: {exc}")


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def query_all(
    source: MetricsSource, queries: Sequence[str], at: float | None = None, fresh_after: float | None = None
) -> dict[str, Reading]:
    """Run the distinct ``queries`` concurrently on the event loop; map each to its reading (answers
    shared with other callers asked after ``fresh_after``, if given).

    How many reach the server at once is bounded by the source's connection pool.
    """
    distinct = list(dict.fromkeys(queries))
    readings = await asyncio.gather(*(source.query(q, at, fresh_after) for q in distinct))
    return dict(zip(distinct, readings, strict=True))
