"""route.json: traffic and fallbacks move the revision; RouteReader follows the weights and fallbacks."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import jsonschema
import pytest

from detection_operator.client.readers import RouteReader
from detection_operator.decide.publish import route_publication

from .test_decide_route import HEALTHY, T0, Run, make_spec
from .test_decide_route_traffic import start_on_primary, world

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs/schemas/route.schema.json").read_text())


def test_route_json_carries_traffic_and_fallbacks_and_the_revision_follows_them() -> None:
    run = Run()
    spec = run.spec
    on_primary = start_on_primary(run)
    first = route_publication(spec, on_primary, "ns", "r", None, 0, T0)
    document = json.loads(first.route_json)
    jsonschema.validate(document, SCHEMA)
    assert document["traffic"] == {"primary": 100} and document["fallbacks"] == ["backup1", "backup2"]
    again = route_publication(spec, start_on_primary(Run()), "ns", "r", first.digest, first.revision, T0)
    assert not again.changed and again.revision == first.revision
    run.step(world())
    failed_over = run.step(world())
    moved = route_publication(spec, failed_over, "ns", "r", first.digest, first.revision, T0)
    assert moved.changed and moved.revision == first.revision + 1
    assert json.loads(moved.route_json)["traffic"] == {"backup1": 95, "primary": 5}


def test_a_fallback_change_alone_moves_the_revision() -> None:
    run = Run()
    decision = start_on_primary(run)
    first = route_publication(run.spec, decision, "ns", "r", None, 0, T0)
    failing_backup = world(primary=HEALTHY)  # backups idle: still fallbacks
    run.memory = run.memory.model_copy(update={"traffic": [*run.memory.traffic[:-1], run.memory.traffic[-1]]})
    same = route_publication(run.spec, run.step(failing_backup), "ns", "r", first.digest, first.revision, T0)
    assert not same.changed
    critical = {**HEALTHY, "accuracy": 0.5}
    changed = run.step(world(primary=HEALTHY, backup1=critical))
    assert changed.fallbacks == ("backup2",)
    assert route_publication(run.spec, changed, "ns", "r", first.digest, first.revision, T0).changed


def write(directory: Path, traffic: dict[str, int], fallbacks: list[str], revision: int = 1) -> None:
    run = Run(make_spec())
    decision = run.step(world(primary=HEALTHY))
    document = json.loads(route_publication(run.spec, decision, "ns", "r", None, 0, T0).route_json)
    document.update(traffic=traffic, fallbacks=fallbacks, active=max(traffic, key=traffic.__getitem__))
    document["revision"] = revision
    (directory / "route.json").write_text(json.dumps(document))


def test_choose_follows_the_weights_exactly_and_evenly(tmp_path: Path) -> None:
    write(tmp_path, {"backup1": 95, "primary": 5}, ["backup2"])
    reader = RouteReader(tmp_path)
    assert reader.choose() is None  # nothing loaded yet
    reader.load()
    picks = [reader.choose() for _ in range(200)]
    assert Counter(picks) == {"backup1": 190, "primary": 10}
    primary_at = [i for i, p in enumerate(picks) if p == "primary"]
    # About one in twenty, never a burst or a drought.
    assert all(15 <= b - a <= 25 for a, b in itertools.pairwise(primary_at))


def test_attempts_are_the_choice_then_active_then_fallbacks(tmp_path: Path) -> None:
    write(tmp_path, {"backup1": 50, "primary": 50}, ["backup2", "primary"])
    reader = RouteReader(tmp_path)
    reader.load()
    orders = {tuple(reader.attempts()) for _ in range(4)}
    assert orders == {("backup1", "backup2", "primary"), ("primary", "backup1", "backup2")}


def test_a_bad_document_is_refused_and_the_last_good_kept(tmp_path: Path) -> None:
    write(tmp_path, {"primary": 100}, [])
    reader = RouteReader(tmp_path)
    reader.load()
    with pytest.raises(ValueError, match="not a valid document"):
        reader.accept(b'{"active": "x"}')
    assert reader.current is not None and reader.choose() == "primary"
    with pytest.raises(ValueError, match="no signature"):
        RouteReader(key=b"k").accept(b"{}")


def test_explain_shows_each_models_state_traffic_and_the_probation() -> None:
    from detection_operator.tools.explain import render

    status = {
        "activeModel": "backup1",
        "state": "FailedOver",
        "reason": "serving backup backup1",
        "models": [
            {"name": "primary", "state": "healthy", "trafficPercent": 5, "level": "ok", "trend": "stable"},
            {"name": "backup1", "state": "healthy", "trafficPercent": 95, "level": "ok", "trend": "stable"},
            {"name": "backup2", "state": "idle", "trafficPercent": 0, "level": "unknown", "trend": "unknown"},
        ],
        "probation": {
            "requests": 12,
            "minRequests": 50,
            "healthyForSeconds": 30,
            "stableForSeconds": 300,
            "failures": 1,
            "trafficPausedUntil": None,
        },
    }
    text = render({"kind": "ModelRoute", "namespace": "ns", "name": "r", "status": status, "published": None})
    assert "idle" in text and "95 %" in text
    assert "Primary's probation: served 12 of 50 requests, healthy 30s of 300s, 1 failed" in text
