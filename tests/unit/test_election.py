"""Leader election decisions (pure) and the scheduler's standby gate."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from detection_operator.core.identity import Key
from detection_operator.runtime.election import LeaseRecord, Observed, Step, decide, leading, observe
from detection_operator.runtime.scheduler import Scheduler
from detection_operator.runtime.settings import LeaderElection, Settings

ME, OTHER = "operator-0", "operator-1"


def record(holder: str | None, renew: str = "t1", version: str = "1", duration: float = 4) -> LeaseRecord:
    return LeaseRecord(holder, duration, renew, "t0", 0, version)


def test_no_lease_is_created() -> None:
    assert decide(Observed(None, 0), 0, ME, 1).step is Step.CREATE


def test_our_own_lease_is_renewed_even_right_after_a_restart() -> None:
    # A restarted replica with the same identity must not wait for its own Lease to expire.
    assert decide(observe(None, record(ME), 100), 100, ME, 1).step is Step.RENEW


def test_a_released_lease_is_acquired_at_once() -> None:
    assert decide(observe(None, record(None), 0), 0, ME, 1).step is Step.ACQUIRE


def test_a_live_lease_of_another_is_followed_until_it_expires_on_our_clock() -> None:
    seen = observe(None, record(OTHER), now=10)
    follow = decide(seen, now=12.5, identity=ME, retry_period=1)
    assert follow.step is Step.FOLLOW and follow.wait == 1
    # Close to expiry the next round is scheduled at the expiry, not a whole retry period later.
    near = decide(seen, now=13.6, identity=ME, retry_period=1)
    assert near.step is Step.FOLLOW and near.wait == pytest.approx(0.4)
    assert decide(seen, now=14, identity=ME, retry_period=1).step is Step.ACQUIRE


def test_a_renewal_restarts_the_expiry_clock() -> None:
    seen = observe(None, record(OTHER, renew="t1", version="1"), now=10)
    unchanged = observe(seen, record(OTHER, renew="t1", version="1"), now=13)
    assert unchanged.at == 10
    renewed = observe(unchanged, record(OTHER, renew="t2", version="2"), now=13)
    assert renewed.at == 13
    assert decide(renewed, now=15, identity=ME, retry_period=1).step is Step.FOLLOW


def test_remote_timestamps_are_never_compared_with_our_clock() -> None:
    # A renewTime far in the past (skewed holder clock) does not make the Lease look expired.
    seen = observe(None, record(OTHER, renew="1970-01-01T00:00:00.000000Z"), now=10)
    assert decide(seen, now=11, identity=ME, retry_period=1).step is Step.FOLLOW


def test_leadership_lapses_at_the_renew_deadline_counted_from_the_request_sent() -> None:
    assert not leading(None, 5, 3)
    assert leading(10, 12.9, 3)
    assert not leading(10, 13, 3)


def test_election_settings_from_the_environment() -> None:
    election = Settings.from_env(
        {
            "POD_NAME": "op-1",
            "POD_NAMESPACE": "ops",
            "DETECTION_OPERATOR_LEASE_DURATION_SECONDS": "4",
            "DETECTION_OPERATOR_RENEW_DEADLINE_SECONDS": "3",
            "DETECTION_OPERATOR_RETRY_PERIOD_SECONDS": "1",
            "DETECTION_OPERATOR_HTTP_PORT": "9000",
        }
    )
    assert election.http_port == 9000
    e = election.election
    assert (e.enabled, e.identity, e.lease_namespace, e.lease_name) == (
        True,
        "op-1",
        "ops",
        "detection-operator",
    )
    assert (e.lease_duration, e.renew_deadline, e.retry_period) == (4, 3, 1)
    override = Settings.from_env({"POD_NAMESPACE": "ops", "DETECTION_OPERATOR_LEASE_NAMESPACE": "x"})
    assert override.election.lease_namespace == "x"
    assert Settings.from_env({}).election.identity  # <hostname>-<pid> without POD_NAME
    assert not Settings.from_env({"DETECTION_OPERATOR_LEADER_ELECTION": "false"}).election.enabled


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DETECTION_OPERATOR_LEADER_ELECTION": "maybe"}, "DETECTION_OPERATOR_LEADER_ELECTION"),
        ({"DETECTION_OPERATOR_RENEW_DEADLINE_SECONDS": "20"}, "RENEW_DEADLINE_SECONDS"),
    ],
)
def test_bad_election_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_election_timings_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="RETRY_PERIOD_SECONDS"):
        LeaderElection(lease_duration=4, renew_deadline=3, retry_period=3)


def test_a_standby_scheduler_dispatches_nothing_until_it_leads() -> None:
    async def scenario() -> tuple[int, int]:
        runs: list[Key] = []
        lead = [False]

        async def evaluate(key: Key, body: Mapping[str, Any]) -> None:
            runs.append(key)

        scheduler = Scheduler(evaluate, max_concurrency=2, owns=lambda _: lead[0])
        task = asyncio.create_task(scheduler.run())
        scheduler.upsert(("detectionpolicies", "ns", "a"), {"metadata": {"generation": 1}}, interval=60)
        await asyncio.sleep(0.05)
        as_standby = len(runs)
        lead[0] = True
        scheduler.wake()  # what leadership_changed does: the due object runs at once, not at the next tick
        await asyncio.sleep(0.05)
        task.cancel()
        return as_standby, len(runs)

    assert asyncio.run(scenario()) == (0, 1)
