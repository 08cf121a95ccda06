"""The Prometheus client's cost per request on the evaluation's hot path, httpx against aiohttp.

Both ask the real Prometheus the same request an evaluation sends (its queries tagged and joined into one
POST, as observe/source.py builds it), over a keep-alive pool of 16 connections with 8 requests in
flight, on one event loop. CPU = this process's CPU time per request (building it, the HTTP machinery,
decoding the answer); the operator's own source (aiohttp, and splitting the answer by tag) is the third
row. Rounds alternate between the clients so that a noisy neighbour hits each alike; the medians of the
rounds are quoted.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

from detection_operator.observe.source import BATCH_LABEL, PrometheusConfig, PrometheusSource
from detection_testing.exporter import MetricExporter
from detection_testing.prometheus import PrometheusServer

REQUESTS = 1000
ROUNDS = 5
IN_FLIGHT = 8
POOL = 16
QUERIES = [
    *(f'max(bench_latency_ms{{namespace="ns-{i}"}})' for i in range(6)),
    *(f'sum(rate(bench_requests_total{{namespace="ns-{i}"}}[1m]))' for i in range(3)),
    'max(timestamp(bench_latency_ms{namespace="ns-0"}))',
]
"""An evaluation's queries: the plan of a policy and its freshness probe."""


def _body() -> dict[str, str]:
    tagged = (f'label_replace(({q}), "{BATCH_LABEL}", "{i}", "", "")' for i, q in enumerate(QUERIES))
    return {"query": " or ".join(tagged), "timeout": "5000ms"}


async def _per_request(ask: Callable[[], Awaitable[object]]) -> float:
    """CPU seconds per request, ``IN_FLIGHT`` at a time."""
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one() -> None:
        async with slots:
            await ask()

    await asyncio.gather(*(one() for _ in range(50)))  # connections opened, code warm
    cpu = time.process_time()
    await asyncio.gather(*(one() for _ in range(REQUESTS)))
    return (time.process_time() - cpu) / REQUESTS


async def _rounds(url: str) -> dict[str, list[float]]:
    data = _body()
    endpoint = f"{url}/api/v1/query"
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    results: dict[str, list[float]] = {}
    async with (
        httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(5, pool=None), trust_env=False) as hx,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POOL)) as session,
    ):
        source = PrometheusSource(PrometheusConfig(url=url, pool_size=POOL))

        async def with_httpx() -> object:
            response = await hx.post(endpoint, data=data)
            return json.loads(response.raise_for_status().content)

        async def with_aiohttp() -> object:
            async with session.post(endpoint, data=data) as response:
                response.raise_for_status()
                return json.loads(await response.read())

        async def with_source() -> object:
            return await source.query_many(QUERIES)

        clients = {
            "httpx.AsyncClient (the source before)": with_httpx,
            "aiohttp.ClientSession": with_aiohttp,
            "PrometheusSource.query_many (aiohttp, answer split)": with_source,
        }
        try:
            for _ in range(ROUNDS):
                for name, ask in clients.items():
                    results.setdefault(name, []).append(await _per_request(ask))
        finally:
            await source.aclose()
    return results


def measure(workdir: Path) -> dict[str, float]:
    """Median CPU seconds per request of each client, against a real Prometheus."""
    with (
        MetricExporter() as exporter,
        PrometheusServer(workdir / "prometheus", targets=[exporter.target]) as prometheus,
    ):
        for i in range(6):
            exporter.set("bench_latency_ms", 100.0 + i, {"namespace": f"ns-{i}"})
            exporter.set("bench_requests_total", 1000.0 * i, {"namespace": f"ns-{i}"})
        prometheus.wait_for_series('bench_latency_ms{namespace="ns-5"}')
        rounds = asyncio.run(_rounds(prometheus.url))
    return {name: statistics.median(values) for name, values in rounds.items()}


def section(workdir: Path) -> list[str]:
    """RESULTS.md lines."""
    medians = measure(workdir)
    baseline = next(iter(medians.values()))
    return [
        "## Prometheus client: CPU per request",
        "",
        *(__doc__ or "").strip().split("\n")[2:],
        "",
        f"{len(QUERIES)} queries per request, {REQUESTS} requests per round, {ROUNDS} rounds.",
        "",
        "| client | CPU per request (median of rounds) | httpx / this |",
        "|---|---|---|",
        *(f"| {name} | {cpu * 1e3:.2f} ms | {baseline / cpu:.1f} |" for name, cpu in medians.items()),
        "",
    ]
