"""profile.json / scorecard.json: revisions, messages, signatures, and the consumer helper."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from detection_operator.client.readers import ProfileReader
from detection_operator.core.signing import sign, verify
from detection_operator.decide.policy import PolicyDecision, PolicyMemory, decide_policy
from detection_operator.decide.publish import publication, switch_message
from detection_operator.observe.source import Missing, Value

from .test_decide_policy import make_spec

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = make_spec(
    externalContributors={
        "services": [
            {
                "name": "intel",
                "endpoint": "https://intel.example",
                "signals": ["ip"],
                "verificationKeyRef": {"name": "intel-key", "key": "pub"},
            }
        ],
        "queries": {"accuracy": "acc"},
    }
)


def decide(
    latency: float | Missing, memory: PolicyMemory | None = None, now: datetime = T0
) -> PolicyDecision:
    memory = memory or PolicyMemory()
    reading = latency if isinstance(latency, Missing) else Value(latency)
    return decide_policy(SPEC, {("rule", "latency"): reading, ("rule", "surge"): Value(0)}, memory, now)


def test_documents_match_their_json_schemas() -> None:
    decision = decide(100)
    pub = publication(SPEC, decision, "ns", "bot", None, 0, T0)
    jsonschema.validate(
        json.loads(pub.profile_json), json.loads((REPO / "docs/schemas/profile.schema.json").read_text())
    )
    jsonschema.validate(
        json.loads(pub.scorecard_json), json.loads((REPO / "docs/schemas/scorecard.schema.json").read_text())
    )
    profile = json.loads(pub.profile_json)
    assert profile["external"][0]["verificationKeyRef"] == {"name": "intel-key", "key": "pub"}
    assert profile["revision"] == 1 and pub.changed


def test_revision_moves_only_when_content_changes() -> None:
    first = decide(100)
    pub1 = publication(SPEC, first, "ns", "bot", None, 0, T0)
    again = decide(110, first.memory, T0 + timedelta(seconds=30))
    pub2 = publication(SPEC, again, "ns", "bot", pub1.digest, pub1.revision, T0 + timedelta(seconds=30))
    assert not pub2.changed and pub2.revision == 1
    assert json.loads(pub2.profile_json)["decidedAt"] != json.loads(pub1.profile_json)["decidedAt"]


def test_switch_messages() -> None:
    first = decide(100)
    assert switch_message(SPEC, first) == "Selected balanced profile: no rule holds"
    memory, now = first.memory, T0
    for _ in range(3):
        now += timedelta(minutes=1)
        decision = decide(300, memory, now)
        memory = decision.memory
    assert switch_message(SPEC, decision) == "Switched to lean profile due to high latency"
    for _ in range(12):
        now += timedelta(minutes=1)
        decision = decide(Missing("timeout"), memory, now)
        memory = decision.memory
        if decision.switched:
            break
    assert switch_message(SPEC, decision).startswith(
        "Switched to balanced profile: metrics unavailable for 2m"
    )


def test_signature_round_trip_and_tamper() -> None:
    assert verify(b"k", b"payload", sign(b"k", b"payload"))
    assert not verify(b"k", b"payload!", sign(b"k", b"payload"))
    assert not verify(b"other", b"payload", sign(b"k", b"payload"))


def test_reader_verifies_reloads_and_keeps_the_last_good(tmp_path: Path) -> None:
    key = b"secret"
    pub = publication(SPEC, decide(100), "ns", "bot", None, 0, T0)
    (tmp_path / "profile.json").write_text(pub.profile_json)
    (tmp_path / "profile.json.sig").write_text(sign(key, pub.profile_json.encode()))
    reader = ProfileReader(tmp_path, key=key)
    assert reader.load().profile == "balanced"
    assert reader.reload_if_changed() is None
    changes, errors = [], []
    stop = threading.Event()
    thread = reader.watch(changes.append, stop, interval=0.01, on_error=errors.append)
    (tmp_path / "profile.json").write_text(pub.profile_json.replace('"balanced"', '"lean"'))
    deadline = threading.Event()
    for _ in range(500):
        if errors:
            break
        deadline.wait(0.01)
    stop.set()
    thread.join(timeout=2)
    assert changes == [] and errors and "signature" in str(errors[0])


def test_reader_without_signature_file_refuses_when_a_key_is_set(tmp_path: Path) -> None:
    pub = publication(SPEC, decide(100), "ns", "bot", None, 0, T0)
    (tmp_path / "profile.json").write_text(pub.profile_json)
    with pytest.raises(ValueError, match="no signature"):
        ProfileReader(tmp_path, key=b"k").load()
    assert ProfileReader(tmp_path).load().revision == 1
