"""MetricsSource: run an instant PromQL query and normalise the answer to a value or a typed 'missing'.

A missing result is never 0: an empty vector, NaN/Inf, several series where one was expected, an HTTP
error, malformed JSON or a timeout each become a :class:`Missing` with its cause, and the decision logic
treats them as *unknown*.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from ..runtime.telemetry import QUERY_DURATION

MissingCause = Literal["empty", "nan", "inf", "many-series", "error", "timeout", "bad-response"]


@dataclass(frozen=True)
class Value:
    """A usable sample."""

    value: float

    @property
    def ok(self) -> Literal[True]:
        """Always True: the query gave a usable value."""
        return True


@dataclass(frozen=True)
class Missing:
    """No usable sample, and why."""

    cause: MissingCause
    detail: str = ""

    @property
    def ok(self) -> Literal[False]:
        """Always False: there is no value."""
        return False

    def __str__(self) -> str:
        return f"{self.cause}: {self.detail}" if self.detail else self.cause


Reading = Value | Missing


def normalise(result: Any) -> Reading:
    """Turn the ``data.result`` of an instant query (vector or scalar) into a :data:`Reading`."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        return _number(result[1])  # a scalar result: [timestamp, "value"]
    if not isinstance(result, list):
        return Missing("bad-response", f"unexpected result type {type(result).__name__}")
    if not result:
        return Missing("empty", "the query returned no series")
    if len(result) > 1:
        return Missing("many-series", f"{len(result)} series where one was expected")
    sample = result[0].get("value") if isinstance(result[0], dict) else None
    if not isinstance(sample, list) or len(sample) != 2:
        return Missing("bad-response", "a series without a value")
    return _number(sample[1])


def _number(raw: Any) -> Reading:
    try:
        number = float(raw)
    except (TypeError, ValueError):
        return Missing("bad-response", f"not a number: {raw!r}")
    if math.isnan(number):
        return Missing("nan", "the value is NaN")
    if math.isinf(number):
        return Missing("inf", "the value is infinite")
    return Value(number)


class MetricsSource(Protocol):
    """Where samples come from. One implementation (Prometheus) until a measurement says otherwise."""

    def query(self, promql: str, at: float | None = None) -> Reading:
        """Run one instant query, now or at the Unix time ``at``."""
        ...

    def cached(self, promql: str, at: float | None = None) -> Reading | Future[Reading] | None:
        """Without I/O (safe on the event loop): a reading at hand, the same query in flight, or None."""
        ...

    def close(self) -> None:
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

    def __repr__(self) -> str:
        # Credentials must never reach a log line through an f-string or an exception message.
        return f"PrometheusConfig(url={self.url!r}, timeout_seconds={self.timeout_seconds})"


class PrometheusSource:
    """MetricsSource over prometheus-api-client, with retries off and an explicit timeout.

    The library's default retry turns one 503 into seconds of back-off; the next evaluation is our retry,
    so each query gets exactly one attempt bounded by ``timeout_seconds``, on the server side too.
    """

    def __init__(self, config: PrometheusConfig) -> None:
        self.config = config
        headers = dict(config.headers or {})
        if config.bearer_token:
            headers["Authorization"] = f"Bearer {config.bearer_token}"
        session = requests.Session()
        session.verify = config.ca_file or True
        session.trust_env = False
        no_retry = Retry(total=0, connect=0, read=0, status=0, raise_on_status=False)
        self._client = PrometheusConnect(
            url=config.url.rstrip("/"),
            headers=headers or None,
            auth=config.basic_auth,
            session=session,
            retry=no_retry,
            timeout=config.timeout_seconds,
        )
        # Sized for the evaluations that run at once; the library's adapter keeps only 10 connections.
        session.mount(
            config.url, HTTPAdapter(max_retries=no_retry, pool_connections=1, pool_maxsize=config.pool_size)
        )

    def query(self, promql: str, at: float | None = None) -> Reading:
        """Run ``promql`` as an instant query (at ``at``, else now); every failure becomes a Missing."""
        started = time.perf_counter()
        reading = self._query(promql, at)
        outcome = "ok" if isinstance(reading, Value) else reading.cause
        QUERY_DURATION.labels(outcome).observe(time.perf_counter() - started)
        return reading

    def _query(self, promql: str, at: float | None) -> Reading:
        timeout = self.config.timeout_seconds
        # Prometheus parses durations strictly: "2.0s" is a 400, "2000ms" is fine.
        params = {"timeout": f"{round(timeout * 1000)}ms"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            result = self._client.custom_query(promql, params=params)
        except requests.Timeout:
            return Missing("timeout", f"no answer within {timeout:g}s")
        except requests.JSONDecodeError as exc:
            # A RequestException too, but the server answered: malformed JSON is a bad response.
            return Missing("bad-response", _short(exc))
        except requests.RequestException as exc:
            return Missing("error", _short(exc))
        except PrometheusApiClientException as exc:
            return Missing("error", _short(exc))
        except (ValueError, KeyError, TypeError) as exc:
            return Missing("bad-response", _short(exc))
        return normalise(result)

    def cached(self, promql: str, at: float | None = None) -> Reading | Future[Reading] | None:
        """Never: every query goes to the server."""
        return None

    def close(self) -> None:
        """Release pooled connections."""
        self._client.close()


def _short(exc: BaseException, limit: int = 200) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def query_all(
    source: MetricsSource, queries: Sequence[str], executor: Executor, at: float | None = None
) -> dict[str, Reading]:
    """Run the distinct ``queries`` in parallel on ``executor`` (the client blocks); map each to a reading."""
    loop = asyncio.get_running_loop()
    found: dict[str, Reading] = {}
    shared: dict[str, asyncio.Future[Reading]] = {}
    for query in dict.fromkeys(queries):
        # Answers at hand skip the thread hop, which at scale costs more than the lookup; a query another
        # object has in flight is awaited here rather than by a worker blocked on it (which starves the
        # pool when a namespace's objects evaluate together).
        hit = source.cached(query, at)
        if isinstance(hit, Future):
            shared[query] = asyncio.wrap_future(hit, loop=loop)
        elif hit is not None:
            found[query] = hit
    pending = [q for q in dict.fromkeys(queries) if q not in found and q not in shared]
    ran = [loop.run_in_executor(executor, source.query, q, at) for q in pending]
    readings = await asyncio.gather(*ran, *shared.values())
    found.update(zip([*pending, *shared], readings, strict=True))
    return found
