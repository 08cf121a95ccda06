"""Prometheus connection resolution (settings, Secret overrides) and the evaluation scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import certifi
import pytest

from detection_operator.api.common import PrometheusRef
from detection_operator.core.identity import Key
from detection_operator.core.readings import Missing, Value, normalise
from detection_operator.observe.connections import Connections, InvalidConnection, check_url
from detection_operator.observe.source import PrometheusConfig
from detection_operator.runtime.scheduler import Scheduler, namespace_phase

DEFAULT = PrometheusConfig(url="http://prometheus:9090", timeout_seconds=5, headers={"X-Scope-OrgID": "ops"})


def reader(secrets: dict[str, dict[str, bytes]]) -> Any:
    calls: list[str] = []

    def read(namespace: str, name: str) -> Mapping[str, bytes]:
        calls.append(f"{namespace}/{name}")
        return secrets[name]

    read.calls = calls  # type: ignore[attr-defined]
    return read


CA = Path(certifi.where()).read_bytes()
"""A real CA bundle: httpx loads it when the client is built."""


def test_default_connection_without_override() -> None:
    connections = Connections(DEFAULT, reader({}))
    assert connections.for_object("ns", None).config is DEFAULT


def test_secret_override_merges_with_defaults_and_is_cached() -> None:
    read = reader(
        {
            "prom": {
                "url": b"https://mimir.example/prometheus",
                "token": b"t0k3n",
                "headers": b'{"X-Scope-OrgID": "team-a"}',
                "ca.crt": CA,
            }
        }
    )
    clock = [0.0]
    connections = Connections(DEFAULT, read, ttl=60, clock=lambda: clock[0])
    ref = PrometheusRef.model_validate({"secretRef": {"name": "prom"}, "timeout": "2s"})
    source = connections.for_object("team-a", ref)
    config = source.config
    assert config.url == "https://mimir.example/prometheus"
    assert config.bearer_token == "t0k3n" and config.timeout_seconds == 2
    assert config.headers == {"X-Scope-OrgID": "team-a"}
    assert config.ca_file is not None and Path(config.ca_file).read_bytes() == CA
    assert "t0k3n" not in repr(config)
    assert connections.for_object("team-a", ref) is source
    assert connections.at_hand("team-a", ref) is source and connections.at_hand("team-b", ref) is None
    assert connections.at_hand("team-a", None) is connections.for_object("ns", None)
    clock[0] = 61
    assert connections.at_hand("team-a", ref) is None  # due for a re-read: only for_object may do it
    assert connections.for_object("team-a", ref) is not source
    assert read.calls == ["team-a/prom", "team-a/prom"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"url": b"file:///etc/passwd"}, r"key 'url': must be an absolute http\(s\) URL"),
        ({"headers": b"[1, 2]"}, "'headers' is not a JSON object"),
        ({"username": b"u"}, "'username' and 'password' go together"),
        ({"ca.crt": b"-----BEGIN CERT"}, "key 'ca.crt': not a PEM CA bundle"),
    ],
)
def test_bad_secrets_are_rejected_naming_the_key(data: dict[str, bytes], message: str) -> None:
    connections = Connections(DEFAULT, reader({"prom": data}))
    ref = PrometheusRef.model_validate({"secretRef": {"name": "prom"}})
    with pytest.raises(InvalidConnection, match=message):
        connections.for_object("ns", ref)


def test_check_url() -> None:
    assert check_url("http://x:9090", "f") == "http://x:9090"
    with pytest.raises(InvalidConnection):
        check_url("prometheus:9090", "f")


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ([{"metric": {}, "value": [1, "2.5"]}], Value(2.5)),
        ([1700000000, "3"], Value(3.0)),
        ([], Missing("empty", "the query returned no series")),
        ([{"value": [1, "NaN"]}], Missing("nan", "the value is NaN")),
        ([{"value": [1, "+Inf"]}], Missing("inf", "the value is infinite")),
        (
            [{"value": [1, "1"]}, {"value": [1, "2"]}],
            Missing("many-series", "2 series where one was expected"),
        ),
        ({"oops": 1}, Missing("bad-response", "unexpected result type dict")),
    ],
)
def test_normalise(result: Any, expected: Any) -> None:
    assert normalise(result) == expected


def test_scheduler_runs_at_interval_and_at_once_on_a_new_generation_or_a_repair() -> None:
    async def scenario() -> list[tuple[Key, int]]:
        now = [0.0]
        runs: list[tuple[Key, int]] = []

        async def evaluate(key: Key, body: Mapping[str, Any]) -> None:
            runs.append((key, body["metadata"]["generation"]))

        scheduler = Scheduler(evaluate, max_concurrency=2, clock=lambda: now[0])
        task = asyncio.create_task(scheduler.run())
        key: Key = ("detectionpolicies", "ns", "a")
        scheduler.upsert(key, {"metadata": {"generation": 1}}, interval=10)
        await asyncio.sleep(0.01)
        now[0] = 5  # not due yet
        scheduler.upsert(key, {"metadata": {"generation": 1}}, interval=10)
        await asyncio.sleep(0.01)
        scheduler.upsert(key, {"metadata": {"generation": 2}}, interval=10)  # spec changed: due now
        await asyncio.sleep(0.01)
        scheduler.due_now(key)  # its ConfigMap needs repair
        scheduler.due_now(("detectionpolicies", "ns", "unknown"))
        await asyncio.sleep(0.01)
        assert scheduler.count("detectionpolicies") == 1
        scheduler.remove(key)
        scheduler.remove(key)  # a second DELETED event for the same object
        assert (scheduler.count("detectionpolicies"), len(scheduler)) == (0, 0)
        await asyncio.sleep(0.01)
        task.cancel()
        return runs

    runs = asyncio.run(scenario())
    assert [generation for _, generation in runs] == [1, 2, 2]


def test_scheduler_survives_a_failing_evaluation() -> None:
    async def scenario() -> int:
        calls = [0]

        async def evaluate(key: Key, body: Mapping[str, Any]) -> None:
            calls[0] += 1
            raise RuntimeError("boom")

        scheduler = Scheduler(evaluate, max_concurrency=1)
        task = asyncio.create_task(scheduler.run())
        scheduler.upsert(("p", "ns", "a"), {"metadata": {"generation": 1}}, interval=0.01)
        for _ in range(200):
            await asyncio.sleep(0.005)
            if calls[0] >= 3:
                break
        task.cancel()
        return calls[0]

    assert asyncio.run(scenario()) >= 3


def test_an_object_removed_mid_evaluation_is_forgotten_again_when_the_evaluation_ends() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []
        gate = asyncio.Event()

        async def evaluate(key: Key, body: Mapping[str, Any]) -> None:
            await gate.wait()
            seen.append("recorded")  # e.g. a metric series set at the end of the evaluation

        scheduler = Scheduler(
            evaluate, max_concurrency=1, on_removed=lambda key: seen.append(f"forgot {key[2]}")
        )
        task = asyncio.create_task(scheduler.run())
        scheduler.upsert(("p", "ns", "a"), {"metadata": {"generation": 1}}, interval=60)
        await asyncio.sleep(0.01)  # the evaluation is running, waiting on the gate
        scheduler.remove(("p", "ns", "a"))
        gate.set()
        await scheduler.drain()
        task.cancel()
        return seen

    assert asyncio.run(scenario()) == ["forgot a", "recorded", "forgot a"]


def test_a_broken_secret_is_read_again_only_after_the_ttl() -> None:
    read = reader({"prom": {"url": b"ftp://nope"}})
    clock = [0.0]
    connections = Connections(DEFAULT, read, ttl=60, clock=lambda: clock[0])
    ref = PrometheusRef.model_validate({"secretRef": {"name": "prom"}})
    for _ in range(3):
        with pytest.raises(InvalidConnection):
            connections.for_object("ns", ref)
    assert len(read.calls) == 1
    clock[0] = 61
    with pytest.raises(InvalidConnection):
        connections.for_object("ns", ref)
    assert len(read.calls) == 2


@contextlib.asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[None]:
    """The scheduler's loop, running while the block does."""
    task = asyncio.create_task(scheduler.run())
    try:
        yield
    finally:
        task.cancel()


async def advance(scheduler: Scheduler, now: list[float], ticks: int, step: float) -> None:
    """Move the scheduler's clock ``now`` forward tick by tick, letting it dispatch what became due."""
    for tick in range(1, ticks):
        now[0] = tick * step
        scheduler.wake()
        await asyncio.sleep(0)
        await asyncio.sleep(0)


def test_scheduler_puts_each_namespace_on_its_own_grid() -> None:
    async def scenario() -> dict[Key, list[float]]:
        now = [0.0]
        runs: dict[Key, list[float]] = {}

        async def evaluate(key: Key, body: Mapping[str, Any]) -> None:
            runs.setdefault(key, []).append(now[0])

        phases = {"ns-a": 0.25, "ns-b": 0.7}
        scheduler = Scheduler(evaluate, max_concurrency=8, clock=lambda: now[0], phase=lambda k: phases[k[1]])
        keys: list[Key] = [("p", "ns-a", "one"), ("p", "ns-a", "two"), ("p", "ns-b", "three")]
        async with running(scheduler):
            for index, key in enumerate(keys):
                now[0] = index * 1.3  # created at different moments
                scheduler.upsert(key, {"metadata": {"generation": 1}}, interval=10)
                await asyncio.sleep(0.01)
            await advance(scheduler, now, ticks=400, step=0.1)
        return runs

    runs = asyncio.run(scenario())
    a_one, a_two, b = (runs[k] for k in [("p", "ns-a", "one"), ("p", "ns-a", "two"), ("p", "ns-b", "three")])
    # After the first evaluation (at creation) each lands on its namespace's grid, 2.5 + 10k and 7 + 10k,
    # at least half an interval later.
    assert a_one[1:] == a_two[1:] == pytest.approx([12.5, 22.5, 32.5], abs=0.11)
    assert b[1:] == pytest.approx([17.0, 27.0, 37.0], abs=0.11)  # created at 2.6: 7 is too close
    assert namespace_phase(("p", "ns-a", "x")) == namespace_phase(("p", "ns-a", "y"))
    assert 0 <= namespace_phase(("p", "ns-b", "x")) < 1


def test_scheduler_follows_the_data_refresh_where_it_is_learned_and_its_grid_where_not() -> None:
    scrape_offset = 0.3  # the target is scraped at 0.3 + 2k (wall clock = the scheduler's clock here)

    async def scenario() -> dict[Key, list[float]]:
        now = [0.0]
        runs: dict[Key, list[float]] = {}
        aligned: Key = ("p", "ns", "scraped")
        unknown: Key = ("p", "ns", "constant")

        async def evaluate(key: Key, body: Mapping[str, Any]) -> None:
            runs.setdefault(key, []).append(now[0])

        def sampled(key: Key) -> tuple[float, float] | None:
            if key != aligned:
                return None  # its queries read no series: no probe
            return scrape_offset + ((now[0] - scrape_offset) // 2) * 2, now[0]

        scheduler = Scheduler(
            evaluate,
            max_concurrency=8,
            clock=lambda: now[0],
            wall=lambda: now[0],
            phase=lambda k: 0.8,
            sampled=sampled,
        )
        async with running(scheduler):
            for key in (aligned, unknown):
                scheduler.upsert(key, {"metadata": {"generation": 1}}, interval=2)
            await asyncio.sleep(0.01)
            await advance(scheduler, now, ticks=200, step=0.05)
        return runs

    runs = asyncio.run(scenario())
    scraped, constant = runs[("p", "ns", "scraped")], runs[("p", "ns", "constant")]
    # Learned after two refreshes; from then on right after each scrape (0.3 + 2k + 0.1 margin).
    # (Within two 0.05 s ticks of this test's clock.)
    assert scraped[-3:] == pytest.approx([4.4, 6.4, 8.4], abs=0.11)
    # (The first gap is the grid's, between half and one and a half intervals.)
    assert all(b - a >= 2 * 0.95 - 0.11 for a, b in itertools.pairwise(scraped[1:]))
    assert constant[1:] == pytest.approx([1.6, 3.6, 5.6, 7.6, 9.6], abs=0.11)  # its grid: 1.6 + 2k
