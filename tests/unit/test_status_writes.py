"""Which status writes may wait: only `lastEvaluated` and measured values, never decisions."""

from __future__ import annotations

from typing import Any

from detection_operator.record.status_writes import fingerprint, must_write, settled

STATUS: dict[str, Any] = {
    "profile": "balanced",
    "lastEvaluated": "2026-11-23T10:00:00Z",
    "rules": [{"name": "latency", "value": 90.0, "verdict": "clear", "streak": 0}],
    "externalContributors": [{"name": "ip-intel", "weight": 1.4, "circuit": "closed"}],
    "models": [
        {"name": "primary", "score": 0.9, "requests": 10.0, "metrics": {"accuracy": 0.95}, "level": "ok"}
    ],
    "memory": {"rules": {"latency": {"streak": 0}}},
}


def edit(**changes: Any) -> dict[str, Any]:
    return {**STATUS, **changes}


def test_measurements_alone_wait_for_the_refresh_period() -> None:
    moved = edit(
        lastEvaluated="2026-11-23T10:00:10Z",
        rules=[{**STATUS["rules"][0], "value": 95.0}],
        externalContributors=[{**STATUS["externalContributors"][0], "weight": 1.2}],
        models=[{**STATUS["models"][0], "score": 0.8, "requests": 12.0, "metrics": {"accuracy": 0.94}}],
    )
    assert settled(moved) == settled(STATUS)
    # Key order is not part of a status: one read back from the apiserver is sorted.
    assert fingerprint(dict(reversed(moved.items()))) == fingerprint(STATUS)
    assert not must_write(fingerprint(STATUS), fingerprint(moved), age_seconds=10, refresh_seconds=60)
    assert must_write(fingerprint(STATUS), fingerprint(moved), age_seconds=60, refresh_seconds=60)
    assert must_write(fingerprint(STATUS), fingerprint(moved), age_seconds=10, refresh_seconds=0)


def test_decisions_conditions_and_memory_are_written_at_once() -> None:
    for changed in (
        edit(profile="lean"),
        edit(rules=[{**STATUS["rules"][0], "streak": 1}]),
        edit(models=[{**STATUS["models"][0], "level": "warning"}]),
        edit(memory={"rules": {"latency": {"streak": 1}}}),
        edit(conditions=[{"type": "Ready", "status": "False"}]),
    ):
        assert must_write(fingerprint(STATUS), fingerprint(changed), age_seconds=1, refresh_seconds=60)


def test_the_first_write_of_an_object_always_happens() -> None:
    assert must_write(None, fingerprint(STATUS), age_seconds=0, refresh_seconds=60)


def test_delivery_progress_waits_but_new_records_and_drops_do_not() -> None:
    pending = {"records": [{"id": "a"}], "pending": [{"sink": "hook", "ids": ["a"]}], "dropped": 0}
    before = edit(outbox=pending)
    taken = edit(outbox={**pending, "pending": []})
    assert not must_write(fingerprint(before), fingerprint(taken), age_seconds=1, refresh_seconds=60)
    for changed in (
        edit(outbox={**pending, "records": [{"id": "a"}, {"id": "b"}]}),
        edit(outbox={**pending, "dropped": 1}),
    ):
        assert must_write(fingerprint(before), fingerprint(changed), age_seconds=1, refresh_seconds=60)
