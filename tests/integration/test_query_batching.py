"""Queries asked together in one request answer what each answers alone, against the real Prometheus.

One evaluation's queries travel as ``label_replace((q0), ...) or label_replace((q1), ...)``. The cases are
the answers production sends: one series, none, several, NaN, a scalar, a literal, a parse error, a
range vector, and a series that vanished. Requests are counted by a pass-through proxy in front of the
server, so "one request" is what reached the wire.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import pytest

from detection_operator.core.readings import Missing, Reading
from detection_operator.observe.source import PrometheusConfig, PrometheusSource
from detection_testing.exporter import MetricExporter
from detection_testing.faultproxy import FaultProxy
from detection_testing.prometheus import PrometheusServer

pytestmark = pytest.mark.integration

METRIC = "batching_latency_ms"

VECTORS = [
    f'max({METRIC}{{service="a"}})',
    f'{METRIC}{{service="a"}}',  # a raw series: its name and labels come back with it
    f'max({METRIC}{{service="none"}})',  # empty
    f"{METRIC}",  # several series
    f'max({METRIC}{{service="nan"}})',
    f'timestamp({METRIC}{{service="a"}})',
    f'{METRIC}{{service="a"}} > 1000',  # a filter that keeps nothing
]
ALONE = [
    f'scalar(max({METRIC}{{service="a"}}))',  # a scalar: label_replace refuses it
    "42",  # a literal scalar
    f'max({METRIC}{{service="a"}}',  # a parse error
    f'{METRIC}{{service="a"}}[1m]',  # a range vector
]


@pytest.fixture
def proxy(prometheus: PrometheusServer) -> Iterator[FaultProxy]:
    with FaultProxy(prometheus.url) as fault_proxy:
        yield fault_proxy


def _fed(exporter: MetricExporter, prometheus: PrometheusServer) -> None:
    exporter.set(METRIC, 120.0, {"service": "a"})
    exporter.set(METRIC, 80.0, {"service": "b"})
    exporter.set(METRIC, math.nan, {"service": "nan"})
    prometheus.wait_for_series(f'{METRIC}{{service="b"}}')
    prometheus.wait_for_series(f'{METRIC}{{service="nan"}}', predicate=math.isnan)
    prometheus.wait_for_series(f'{METRIC}{{service="a"}}')


def _same(together: Reading, alone: Reading, query: str) -> bool:
    # Error texts name the request, and a sample time moves with every scrape between two requests:
    # the cause, the value and that there is a time are the reading.
    if isinstance(together, Missing) and isinstance(alone, Missing):
        return together.cause == alone.cause
    return together.ok == alone.ok if query.startswith("timestamp(") else together == alone


async def _ask(url: str, queries: list[str], batch_size: int) -> dict[str, Reading]:
    source = PrometheusSource(PrometheusConfig(url=url, batch_size=batch_size))
    try:
        return await source.query_many(queries)
    finally:
        await source.aclose()


def test_queries_asked_together_answer_what_each_answers_alone_in_one_request(
    exporter: MetricExporter, prometheus: PrometheusServer, proxy: FaultProxy
) -> None:
    _fed(exporter, prometheus)
    alone = asyncio.run(_ask(prometheus.url, VECTORS, batch_size=1))
    assert alone[VECTORS[0]].ok and not alone[VECTORS[2]].ok and alone[VECTORS[3]].cause == "many-series"  # type: ignore[union-attr]

    before = proxy.requests
    together = asyncio.run(_ask(proxy.url, VECTORS, batch_size=32))
    assert proxy.requests - before == 1
    assert all(_same(together[q], alone[q], q) for q in VECTORS), [
        (q, together[q], alone[q]) for q in VECTORS
    ]


def test_a_query_that_cannot_be_asked_in_company_is_asked_alone_then_and_from_then_on(
    exporter: MetricExporter, prometheus: PrometheusServer, proxy: FaultProxy
) -> None:
    _fed(exporter, prometheus)
    queries = [*VECTORS, *ALONE]
    alone = asyncio.run(_ask(prometheus.url, queries, batch_size=1))
    assert alone["42"].ok and alone[ALONE[2]].cause == "error"  # type: ignore[union-attr]

    async def twice() -> tuple[dict[str, Reading], int, dict[str, Reading], int]:
        source = PrometheusSource(PrometheusConfig(url=proxy.url, batch_size=32))
        try:
            start = proxy.requests
            first = await source.query_many(queries)
            middle = proxy.requests
            second = await source.query_many(queries)
            return first, middle - start, second, proxy.requests - middle
        finally:
            await source.aclose()

    first, first_requests, second, second_requests = asyncio.run(twice())
    # First: the refused request, then each query alone. Then: the vectors together, the rest alone.
    assert first_requests == 1 + len(queries)
    assert second_requests == 1 + len(ALONE)
    for answers in (first, second):
        assert all(_same(answers[q], alone[q], q) for q in queries), [
            (q, answers[q], alone[q]) for q in queries
        ]


def test_a_series_that_vanishes_is_missing_in_company_too(
    exporter: MetricExporter, prometheus: PrometheusServer
) -> None:
    _fed(exporter, prometheus)
    exporter.remove(METRIC, {"service": "b"})
    prometheus.wait_for_absent(f'{METRIC}{{service="b"}}', timeout=30)
    gone, kept = f'max({METRIC}{{service="b"}})', f'max({METRIC}{{service="a"}})'
    together = asyncio.run(_ask(prometheus.url, [gone, kept], batch_size=32))
    assert together[gone] == Missing("empty", "the query returned no series")
    assert together[kept].ok
    exporter.set(METRIC, 80.0, {"service": "b"})
