"""CoalescingSource: identical queries within the ttl share one request; errors are never shared later."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from detection_operator.observe.coalesce import CoalescingSource
from detection_operator.observe.connections import Connections
from detection_operator.observe.source import (
    Missing,
    PrometheusConfig,
    PrometheusSource,
    Reading,
    Value,
    query_all,
)


class Counting:
    """A source that counts calls and can hold a query in flight until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail = False

    def query(self, promql: str, at: float | None = None) -> Reading:
        self.calls.append((promql, at))
        self.entered.set()
        assert self.release.wait(5)
        if self.fail:
            raise RuntimeError("boom")
        return Value(float(len(self.calls)))

    def cached(self, promql: str, at: float | None = None) -> Reading | Future[Reading] | None:
        return None

    def close(self) -> None:
        pass


def test_repeats_within_the_ttl_share_one_request_and_expire_after_it() -> None:
    now = [0.0]
    inner = Counting()
    source = CoalescingSource(inner, ttl=1.0, clock=lambda: now[0])
    assert source.query("up") == Value(1.0)
    now[0] = 0.9
    assert source.query("up") == Value(1.0)
    assert source.query("up", at=5.0) == Value(2.0)  # a past time is another query
    assert source.query("up", at=5.4) == Value(2.0)  # ... shared within the same ttl-long slot
    assert source.query("up", at=6.1) == Value(3.0)
    now[0] = 1.01
    assert source.query("up") == Value(4.0)
    assert len(inner.calls) == 4


def test_a_query_in_flight_is_awaited_not_repeated() -> None:
    inner = Counting()
    inner.release.clear()
    source = CoalescingSource(inner, ttl=1.0)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(source.query, "up")
        assert inner.entered.wait(5)
        followers = [pool.submit(source.query, "up") for _ in range(3)]
        inner.release.set()
        results = {first.result(5), *(f.result(5) for f in followers)}
    assert results == {Value(1.0)} and len(inner.calls) == 1


def test_a_raising_query_reaches_its_waiters_and_is_not_remembered() -> None:
    inner = Counting()
    inner.fail = True
    source = CoalescingSource(inner, ttl=60.0)
    with pytest.raises(RuntimeError):
        source.query("up")
    inner.fail = False
    assert source.query("up") == Value(2.0)


def test_missing_readings_are_shared_like_values() -> None:
    class Empty(Counting):
        def query(self, promql: str, at: float | None = None) -> Reading:
            self.calls.append((promql, at))
            return Missing("empty")

    inner = Empty()
    source = CoalescingSource(inner, ttl=60.0)
    assert source.query("up") == source.query("up") == Missing("empty")
    assert len(inner.calls) == 1


def test_connections_coalesce_only_when_asked() -> None:
    config = PrometheusConfig(url="http://127.0.0.1:9")
    assert isinstance(Connections(config, lambda ns, name: {}).for_object("ns", None), PrometheusSource)
    coalescing = Connections(config, lambda ns, name: {}, coalesce_seconds=1.0).for_object("ns", None)
    assert isinstance(coalescing, CoalescingSource) and isinstance(coalescing.inner, PrometheusSource)


def test_cached_answers_only_finished_fresh_results_without_blocking() -> None:
    now = [0.0]
    inner = Counting()
    source = CoalescingSource(inner, ttl=1.0, clock=lambda: now[0])
    assert source.cached("up") is None
    source.query("up")
    assert source.cached("up") == Value(1.0)
    now[0] = 1.5
    assert source.cached("up") is None
    inner.release.clear()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(source.query, "up")
        assert inner.entered.wait(5)
        in_flight = source.cached("up")  # the caller awaits it instead of sending it again
        assert isinstance(in_flight, Future) and not in_flight.done()
        inner.release.set()
        assert running.result(5) == in_flight.result(5) == Value(2.0)
        assert len(inner.calls) == 2


class CountingPool(ThreadPoolExecutor):
    """A pool that counts what is submitted to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.submitted = 0

    def submit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.submitted += 1
        return super().submit(*args, **kwargs)


def test_query_all_awaits_a_query_in_flight_without_taking_a_worker() -> None:
    inner = Counting()
    inner.release.clear()
    source = CoalescingSource(inner, ttl=1.0)

    async def two_objects() -> tuple[dict[str, Reading], dict[str, Reading]]:
        with CountingPool() as pool:
            first = asyncio.create_task(query_all(source, ["up", "a"], pool))
            while len(inner.calls) < 2:  # both of the first object's queries are in flight
                await asyncio.sleep(0.001)
            second = asyncio.create_task(query_all(source, ["up", "a"], pool))
            await asyncio.sleep(0.01)
            assert pool.submitted == 2  # the second object sent nothing and holds no worker
            inner.release.set()
            return await first, await second

    first, second = asyncio.run(asyncio.wait_for(two_objects(), 5))
    assert first == second and set(first) == {"up", "a"}
    assert sorted(q for q, _ in inner.calls) == ["a", "up"]


def test_expired_answers_are_dropped_within_a_ttl() -> None:
    now = [0.0]
    source = CoalescingSource(Counting(), ttl=1.0, clock=lambda: now[0])
    for i in range(50):
        source.query(f"q{i}")
    now[0] = 2.5
    source.query("fresh")
    assert len(source) == 1
