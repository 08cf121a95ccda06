"""MetricsSource: run an instant PromQL query and normalise the answer to a value or a typed 'missing'.

Every failure (HTTP error, malformed JSON, timeout) becomes a :class:`~..core.readings.Missing` with its
cause, never an exception and never 0. Queries are coroutines on the event loop over one pooled aiohttp
session per connection: no thread per query (at 2,000 objects the thread hand-offs and urllib3 were 39 % of
the operator's samples). aiohttp, not httpx: on the same loop, against the same real Prometheus, an httpx
request took 2.14 ms of CPU and an aiohttp one 0.78 ms (bench/RESULTS.md "Prometheus client"), and kopf
already runs its watches on aiohttp in this process.

The queries of one evaluation travel in one request: ``label_replace((q0), L, "0", "", "") or ...`` tags
each query's series with its index, and the answer is split by the tag. A request costs more CPU than
everything else an evaluation does with one answer; Prometheus evaluates each part as it would alone. A
query that cannot be a part (a scalar, a string, a parse error: the server refuses the whole request) is
asked alone, then and from then on.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from ..core.readings import Missing, Reading, Value, normalise
from ..telemetry import QUERY_DURATION


class MetricsSource(Protocol):
    """Where samples come from. One implementation (Prometheus) until a measurement says otherwise."""

    async def query(self, promql: str, at: float | None = None, fresh_after: float | None = None) -> Reading:
        """Run one instant query, now or at the Unix time ``at``; an answer shared with other callers must
        have been asked after the Unix time ``fresh_after`` (if given)."""
        ...

    async def query_many(
        self, promqls: Sequence[str], at: float | None = None, fresh_after: float | None = None
    ) -> dict[str, Reading]:
        """Run the distinct queries ``promqls`` together, each as :meth:`query` would; map each to its
        reading."""
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
    """Connections kept alive to the server, and so the requests in flight at once on this connection."""
    batch_size: int = 32
    """Queries asked together in one request at most; 1 asks each alone."""

    def __repr__(self) -> str:
        # Credentials must never reach a log line through an f-string or an exception message.
        return f"PrometheusConfig(url={self.url!r}, timeout_seconds={self.timeout_seconds})"


class PrometheusSource:
    """MetricsSource over an aiohttp session: keep-alive pool, no retries, an explicit timeout.

    The next evaluation is our retry, so each query gets exactly one attempt bounded by
    ``timeout_seconds`` (connecting, and each wait for the answer's bytes), on the server side too.
    Waiting for a free connection is not bounded by it: that is queueing behind our own queries, not a
    slow server.
    """

    def __init__(self, config: PrometheusConfig) -> None:
        self.config = config
        headers = dict(config.headers or {})
        # One Authorization header: basic credentials over a token over one among the headers.
        if config.basic_auth:
            headers["Authorization"] = aiohttp.BasicAuth(*config.basic_auth).encode()
        elif config.bearer_token:
            headers["Authorization"] = f"Bearer {config.bearer_token}"
        self._headers = headers
        # Built here, where a bad bundle fails at once; the session is made on the event loop (this may
        # run in a worker thread, and an aiohttp session belongs to the loop it was made on).
        self._ssl = ssl.create_default_context(cafile=config.ca_file) if config.ca_file else True
        self._url = config.url.rstrip("/") + "/api/v1/query"
        timeout = config.timeout_seconds
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=timeout, sock_read=timeout
        )
        self._session: aiohttp.ClientSession | None = None
        # Prometheus parses durations strictly: "2.0s" is a 400, "2000ms" is fine.
        self._server_timeout = f"{round(timeout * 1000)}ms"
        self._alone: set[str] = set()
        """Queries that cannot be asked in company: the server refused them, or what they answer."""

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.config.pool_size, ssl=self._ssl),
                headers=self._headers,
                timeout=self._timeout,
                # The environment's HTTP(S)_PROXY must not capture the connection to Prometheus.
                trust_env=False,
                raise_for_status=False,
            )
        return self._session

    async def query(self, promql: str, at: float | None = None, fresh_after: float | None = None) -> Reading:
        """Run ``promql`` as an instant query (at ``at``, else now); every failure becomes a Missing.

        Every call asks the server, so every answer is fresh (``fresh_after`` is met).
        """
        return (await self._alone_query(promql, at))[0]

    async def query_many(
        self, promqls: Sequence[str], at: float | None = None, fresh_after: float | None = None
    ) -> dict[str, Reading]:
        """Run the distinct ``promqls`` in requests of up to ``batch_size`` queries each, concurrently."""
        distinct = list(dict.fromkeys(promqls))
        together = [q for q in distinct if q not in self._alone]
        size = max(1, self.config.batch_size)
        parts = [together[i : i + size] for i in range(0, len(together), size)]
        parts += [[q] for q in distinct if q in self._alone]
        answers: dict[str, Reading] = {}
        for answered in await asyncio.gather(*(self._part(part, at) for part in parts)):
            answers.update(answered)
        return {q: answers[q] for q in distinct}

    async def _part(self, promqls: list[str], at: float | None) -> dict[str, Reading]:
        if len(promqls) == 1:
            return {promqls[0]: await self.query(promqls[0], at)}
        started = time.perf_counter()
        tagged = (f'label_replace(({q}), "{BATCH_LABEL}", "{i}", "", "")' for i, q in enumerate(promqls))
        answer, alone = await self._ask(" or ".join(tagged), at)
        if alone:
            # The server refused the request for one part (a scalar, a parse error): each is asked
            # alone, so only that one is missing, and the ones to blame stay alone from now on.
            each = await asyncio.gather(*(self._alone_query(q, at) for q in promqls))
            blamed = [q for q, (_, blame) in zip(promqls, each, strict=True) if blame]
            # Refused only in company (no part is to blame alone): none of them is asked in company again.
            self._keep_alone(blamed or promqls)
            return {q: reading for q, (reading, _) in zip(promqls, each, strict=True)}
        # A timeout, an unreachable server or a bad answer: each part would have met the same.
        readings: dict[str, Reading] = (
            dict.fromkeys(promqls, answer) if isinstance(answer, Missing) else _split(answer, promqls)
        )
        elapsed = time.perf_counter() - started
        for reading in readings.values():
            _observe(reading, elapsed)
        return readings

    async def _alone_query(self, promql: str, at: float | None) -> tuple[Reading, bool]:
        """One query in its own request: its reading, and whether it cannot be asked in company."""
        started = time.perf_counter()
        answer, alone = await self._ask(promql, at)
        reading = answer if isinstance(answer, Missing) else normalise(answer)
        _observe(reading, time.perf_counter() - started)
        return reading, alone

    def _keep_alone(self, promqls: list[str]) -> None:
        if len(self._alone) + len(promqls) > _ALONE_LIMIT:
            self._alone.clear()  # queries come and go with their objects: forget, and learn again
        self._alone.update(promqls)

    async def _ask(self, promql: str, at: float | None) -> tuple[Any | Missing, bool]:
        """The ``data.result`` of one request, or why there is none; and whether the query cannot be
        part of a request of several: the server refused it (400 bad data, 422 failed to execute) or
        it answers something other than an instant vector (label_replace takes nothing else)."""
        params = {"query": promql, "timeout": self._server_timeout}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            # POST: a request of many queries may be longer than a proxy allows a URL to be.
            async with self._client().post(self._url, data=params) as response:
                status, reason, body = response.status, response.reason, await response.read()
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors too
            return Missing("timeout", f"no answer within {self.config.timeout_seconds:g}s"), False
        except (aiohttp.ClientError, ValueError) as exc:
            # ValueError: a header value no request may carry (a line break from a Secret's headers).
            return Missing("error", _short(exc)), False
        if status != 200:
            missing = Missing("error", f"HTTP {status}: {_error_text(body, reason)}")
            return missing, status in (400, 422)
        try:
            data = json.loads(body)["data"]
            return data["result"], data.get("resultType") != "vector"
        except (ValueError, KeyError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
            return Missing("bad-response", _short(exc)), False

    async def aclose(self) -> None:
        """Release pooled connections."""
        if self._session is not None:
            await self._session.close()


BATCH_LABEL = "detection_operator_query"
"""The label that tags each query's series in a request of several (a name no exporter uses)."""
_ALONE_LIMIT = 4096


def _split(result: Any, promqls: list[str]) -> dict[str, Reading]:
    """Each query's reading from the answer of a request of several: its series are those tagged with
    its index. An answer with an untagged series was not computed from the request (a proxy, a cache,
    a fault): it is what each part would have got alone."""
    if not isinstance(result, list):
        return dict.fromkeys(promqls, normalise(result))
    series: defaultdict[str, list[Any]] = defaultdict(list)
    for item in result:
        tag = item.get("metric", {}).get(BATCH_LABEL) if isinstance(item, dict) else None
        if not isinstance(tag, str):
            return dict.fromkeys(promqls, normalise(result))
        series[tag].append(item)
    return {q: normalise(series.get(str(i), [])) for i, q in enumerate(promqls)}


def _observe(reading: Reading, seconds: float) -> None:
    QUERY_DURATION.labels("ok" if isinstance(reading, Value) else reading.cause).observe(seconds)


def _error_text(body: bytes, reason: str | None) -> str:
    # Prometheus explains a refused query in the body ({"error": ...}); a proxy may send anything.
    try:
        parsed: Any = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8
        parsed = None
    text = parsed.get("error") if isinstance(parsed, dict) else None
    return _clip(str(text) if text else reason or "")


def _short(exc: BaseException) -> str:
    return _clip(f"{type(exc).__name__}: {exc}")


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def query_all(
    source: MetricsSource, queries: Sequence[str], at: float | None = None, fresh_after: float | None = None
) -> dict[str, Reading]:
    """Run the distinct ``queries`` together on the event loop; map each to its reading (answers
    shared with other callers asked after ``fresh_after``, if given).

    How many requests reach the server at once is bounded by the source's connection pool.
    """
    return await source.query_many(list(dict.fromkeys(queries)), at, fresh_after)
