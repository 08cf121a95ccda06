"""CoalescingSource: identical queries within the ttl share one request; errors are never shared later."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TypeVar

import pytest

from detection_operator.core.readings import Missing, Reading, Value
from detection_operator.observe.coalesce import CoalescingSource
from detection_operator.observe.connections import Connections
from detection_operator.observe.source import PrometheusConfig, PrometheusSource, query_all

T = TypeVar("T")


def run(awaitable: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(awaitable, 5)

    return asyncio.run(bounded())


class Counting:
    """A source that counts calls and can hold queries in flight until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []
        self.batches: list[list[str]] = []
        self.release: asyncio.Event | None = None
        self.fail = False

    async def query(self, promql: str, at: float | None = None, fresh_after: float | None = None) -> Reading:
        self.calls.append((promql, at))
        if self.release is not None:
            await self.release.wait()
        if self.fail:
            raise RuntimeError("boom")
        return Value(float(len(self.calls)))

    async def query_many(
        self, promqls: Sequence[str], at: float | None = None, fresh_after: float | None = None
    ) -> dict[str, Reading]:
        self.batches.append(list(promqls))
        readings = await asyncio.gather(*(self.query(q, at) for q in promqls))
        return dict(zip(promqls, readings, strict=True))

    async def aclose(self) -> None:
        pass


def test_repeats_within_the_ttl_share_one_request_and_expire_after_it() -> None:
    now = [0.0]
    inner = Counting()
    source = CoalescingSource(inner, ttl=1.0, clock=lambda: now[0])

    async def scenario() -> None:
        assert await source.query("up") == Value(1.0)
        now[0] = 0.9
        assert await source.query("up") == Value(1.0)
        assert await source.query("up", at=5.0) == Value(2.0)  # a past time is another query
        assert await source.query("up", at=5.4) == Value(2.0)  # ... shared within the same ttl-long slot
        assert await source.query("up", at=6.1) == Value(3.0)
        now[0] = 1.01
        assert await source.query("up") == Value(4.0)

    run(scenario())
    assert len(inner.calls) == 4


def test_a_query_in_flight_is_awaited_not_repeated() -> None:
    inner = Counting()
    source = CoalescingSource(inner, ttl=1.0)

    async def scenario() -> set[Reading]:
        inner.release = asyncio.Event()
        first = asyncio.ensure_future(source.query("up"))
        while not inner.calls:
            await asyncio.sleep(0)
        followers = [asyncio.ensure_future(source.query("up")) for _ in range(3)]
        await asyncio.sleep(0.01)
        inner.release.set()
        return set(await asyncio.gather(first, *followers))

    assert run(scenario()) == {Value(1.0)} and len(inner.calls) == 1


def test_a_caller_cancelled_does_not_cancel_the_query_for_the_others() -> None:
    inner = Counting()
    source = CoalescingSource(inner, ttl=1.0)

    async def scenario() -> Reading:
        inner.release = asyncio.Event()
        first = asyncio.ensure_future(source.query("up"))
        while not inner.calls:
            await asyncio.sleep(0)
        follower = asyncio.ensure_future(source.query("up"))
        await asyncio.sleep(0)
        first.cancel()
        inner.release.set()
        return await follower

    assert run(scenario()) == Value(1.0) and len(inner.calls) == 1


def test_an_answer_asked_before_a_refresh_is_not_shared_with_an_evaluation_due_after_it() -> None:
    wall = [1000.0]
    inner = Counting()
    source = CoalescingSource(inner, ttl=1.0, clock=lambda: wall[0], wall=lambda: wall[0])

    async def scenario() -> list[Reading]:
        first = await source.query("up")  # asked at 1000.0
        wall[0] = 1000.5  # a scrape at 1000.4 refreshed the series
        stale = await source.query("up")  # a caller on the fixed grid takes the shared answer
        fresh = await source.query("up", fresh_after=1000.5)  # one due after the refresh asks again
        again = await source.query("up", fresh_after=1000.5)  # ... and shares that answer
        return [first, stale, fresh, again]

    assert run(scenario()) == [Value(1.0), Value(1.0), Value(2.0), Value(2.0)]


def test_a_raising_query_reaches_its_waiters_and_is_not_remembered() -> None:
    inner = Counting()
    inner.fail = True
    source = CoalescingSource(inner, ttl=60.0)
    with pytest.raises(RuntimeError):
        run(source.query("up"))
    inner.fail = False
    assert run(source.query("up")) == Value(2.0)


def test_missing_readings_are_shared_like_values() -> None:
    class Empty(Counting):
        async def query(
            self, promql: str, at: float | None = None, fresh_after: float | None = None
        ) -> Reading:
            self.calls.append((promql, at))
            return Missing("empty")

    inner = Empty()
    source = CoalescingSource(inner, ttl=60.0)

    async def twice() -> tuple[Reading, Reading]:
        return await source.query("up"), await source.query("up")

    assert run(twice()) == (Missing("empty"), Missing("empty"))
    assert len(inner.calls) == 1


def test_connections_coalesce_only_when_asked() -> None:
    config = PrometheusConfig(url="http://127.0.0.1:9")
    assert isinstance(Connections(config, lambda ns, name: {}).for_object("ns", None), PrometheusSource)
    coalescing = Connections(config, lambda ns, name: {}, coalesce_seconds=1.0).for_object("ns", None)
    assert isinstance(coalescing, CoalescingSource) and isinstance(coalescing.inner, PrometheusSource)


def test_two_objects_asking_the_same_queries_at_once_send_each_once() -> None:
    inner = Counting()
    source = CoalescingSource(inner, ttl=1.0)

    async def two_objects() -> tuple[dict[str, Reading], dict[str, Reading]]:
        inner.release = asyncio.Event()
        first = asyncio.ensure_future(query_all(source, ["up", "a", "up"]))
        while len(inner.calls) < 2:  # both of the first object's queries are in flight
            await asyncio.sleep(0)
        second = asyncio.ensure_future(query_all(source, ["a", "up"]))
        await asyncio.sleep(0.01)
        assert len(inner.calls) == 2  # the second object sent nothing
        inner.release.set()
        return await first, await second

    first, second = run(two_objects())
    assert first == second and set(first) == {"up", "a"}
    assert sorted(q for q, _ in inner.calls) == ["a", "up"]


def test_expired_answers_are_dropped_within_a_ttl() -> None:
    now = [0.0]
    source = CoalescingSource(Counting(), ttl=1.0, clock=lambda: now[0])

    async def scenario() -> None:
        for i in range(50):
            await source.query(f"q{i}")
        now[0] = 2.5
        await source.query("fresh")

    run(scenario())
    assert len(source) == 1


def test_the_queries_of_one_call_nobody_shares_go_to_the_inner_source_in_one_call() -> None:
    inner = Counting()
    source = CoalescingSource(inner, ttl=1.0)

    async def scenario() -> tuple[dict[str, Reading], dict[str, Reading]]:
        first = await query_all(source, ["a", "b"])
        second = await query_all(source, ["b", "c", "d", "c"])
        return first, second

    first, second = run(scenario())
    assert inner.batches == [["a", "b"], ["c", "d"]]  # b was shared, c asked once
    assert second["b"] == first["b"] and list(second) == ["b", "c", "d"]
