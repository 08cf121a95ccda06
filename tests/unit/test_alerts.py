"""Alert lifecycle, payloads, receivers, signatures, and delivery to a real loopback receiver."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from detection_operator.api.common import AlertRecord
from detection_operator.core.identity import ObjectRef
from detection_operator.core.readings import Value
from detection_operator.core.signing import ReplayGuard, SignatureError, sign_webhook, verify_webhook
from detection_operator.decide.alerts import Alert, acknowledged_prefixes, plan_alerts, route_alerts
from detection_operator.decide.route import RouteMemory, decide_route
from detection_operator.notify.delivery import Deliverer
from detection_operator.notify.payloads import alertmanager_alerts, webhook_body
from detection_operator.notify.receivers import ReceiverConfig
from detection_operator.record.audit import Origin, alert_records
from detection_testing.receiver import WebhookReceiver

from .test_decide_route import CRITICAL, SPEC, obs

T0 = datetime(2026, 1, 1, tzinfo=UTC)
OBJ = ObjectRef("ModelRoute", "prod", "classifier")
COOLDOWN = timedelta(minutes=15)
ORIGIN = Origin(OBJ, 1, "op-0", T0)
LATENCY = Alert("latency", "warning", "m1/latencyP95Ms", "p95 high", value=3000, threshold=2000, window="10m")


def run(
    steps: list[tuple[list[Alert], set[str]]], start: datetime = T0, gap: timedelta = timedelta(minutes=5)
):  # type: ignore[no-untyped-def]
    records: tuple[AlertRecord, ...] = ()
    sent = []
    now = start
    for alerts, acks in steps:
        plan = plan_alerts(OBJ, alerts, records, acks, COOLDOWN, now)
        sent.append([(o.alert.subject, o.status, o.repeat) for o in plan.outgoing])
        records = plan.records
        now += gap
    return sent, records


def test_fingerprint_is_stable_and_distinct() -> None:
    fp = LATENCY.fingerprint(OBJ)
    assert fp == Alert("latency", "critical", "m1/latencyP95Ms", "other text").fingerprint(OBJ)
    assert fp != LATENCY.fingerprint(ObjectRef("ModelRoute", "prod", "other"))
    assert len(fp) == 16


def test_firing_repeats_only_after_cooldown_then_resolves_once() -> None:
    sent, records = run([([LATENCY], set())] * 5 + [([], set()), ([], set())])
    assert sent[0] == [("m1/latencyP95Ms", "firing", False)]
    assert sent[1] == sent[2] == [] and sent[4] == []
    assert sent[3] == [("m1/latencyP95Ms", "firing", True)]  # 15 minutes after the first send
    assert sent[5] == [("m1/latencyP95Ms", "resolved", False)]
    assert sent[6] == []
    assert records[0].state == "resolved"


def test_escalation_is_sent_at_once() -> None:
    critical = Alert("latency", "critical", "m1/latencyP95Ms", "p95 very high")
    sent, _ = run([([LATENCY], set()), ([critical], set())])
    assert sent[1] == [("m1/latencyP95Ms", "firing", False)]


def test_ack_silences_repeats_until_resolved() -> None:
    prefix = LATENCY.fingerprint(OBJ)[:8]
    acks = acknowledged_prefixes({f"detection.adaptive.io/ack-{prefix}": "alice", "other": "x"})
    assert acks == {prefix}
    sent, records = run([([LATENCY], set())] + [([LATENCY], acks)] * 5 + [([], acks)])
    assert all(s == [] for s in sent[1:6])
    assert records[0].acknowledged
    assert sent[6] == [("m1/latencyP95Ms", "resolved", False)]
    assert acknowledged_prefixes({"detection.adaptive.io/ack-ab": "too short"}) == set()


def test_notices_go_out_once_and_are_not_tracked() -> None:
    notice = Alert("model-switched", "warning", "a->b", "switched", notice=True)
    plan = plan_alerts(OBJ, [notice, LATENCY], (), set(), COOLDOWN, T0)
    assert [o.alert.type for o in plan.outgoing] == ["model-switched", "latency"]  # one grouped notification
    assert [r.type for r in plan.records] == ["latency"]


def test_route_alerts_use_the_alert_defaults_when_the_catalog_gives_no_thresholds() -> None:
    memory, now = RouteMemory(), T0
    for _ in range(SPEC.failure_threshold):  # a breach raises an alert once it has held this long
        decision = decide_route(SPEC, obs(primary=CRITICAL), memory, now)
        memory, now = decision.memory, now + timedelta(seconds=30)
    alerts = route_alerts(SPEC, decision, OBJ)
    accuracy = next(a for a in alerts if a.subject == "primary/accuracy")
    assert (accuracy.type, accuracy.severity, accuracy.threshold) == (
        "performance-degradation",
        "critical",
        0.70,  # the alert default, not the failover default 0.75
    )
    assert "model primary accuracy = 0.6 past critical threshold 0.7 over 10m" in accuracy.summary


def test_default_alert_thresholds_apply_to_metrics_without_thresholds() -> None:
    from .test_decide_route import make_spec

    spec = make_spec(
        metrics=[*SPEC.model_dump(by_alias=True)["metrics"], {"name": "memoryMb", "query": "mem"}]
    )
    observation = obs() | {("model", m, "memoryMb"): Value(2048) for m in ("primary", "backup1", "backup2")}
    memory_, now = RouteMemory(), T0
    for _ in range(spec.failure_threshold):
        decision = decide_route(spec, observation, memory_, now)
        memory_, now = decision.memory, now + timedelta(seconds=30)
    alerts = route_alerts(spec, decision, OBJ)
    memory = [a for a in alerts if a.subject.endswith("/memoryMb")]
    assert len(memory) == 3 and memory[0].severity == "critical" and memory[0].threshold == 1024


def test_payloads() -> None:
    records = alert_records(ORIGIN, plan_alerts(OBJ, [LATENCY], (), set(), COOLDOWN, T0), (), "15m")
    body = webhook_body(records, T0)
    assert body["groupKey"] == "ModelRoute/prod/classifier" and body["alerts"][0]["recommendation"]
    assert body["alerts"][0]["id"] == records[0].id and body["alerts"][0]["value"] == 3000
    am = alertmanager_alerts(records)[0]
    assert am["labels"]["alertname"] == "DetectionLatency" and am["labels"]["severity"] == "warning"
    assert am["endsAt"] == "2026-01-01T00:20:00Z" and am["annotations"]["recordId"] == records[0].id


def test_webhook_signature_verification_and_replay() -> None:
    body = b'{"alerts": []}'
    header = sign_webhook(b"k", body, 1000)
    assert verify_webhook(b"k", body, header, now=1010) == 1000
    with pytest.raises(SignatureError, match="does not match"):
        verify_webhook(b"k", body + b" ", header, now=1010)
    with pytest.raises(SignatureError, match="tolerance"):
        verify_webhook(b"k", body, header, now=2000)
    with pytest.raises(SignatureError, match="malformed"):
        verify_webhook(b"k", body, "v1=abc", now=1000)
    guard = ReplayGuard()
    guard.verify(b"k", body, header, now=1010)
    with pytest.raises(SignatureError, match="replayed"):
        guard.verify(b"k", body, header, now=1020)


def test_receiver_config_validation() -> None:
    good = ReceiverConfig.model_validate(
        {
            "allowedHosts": ["127.0.0.1"],
            "receivers": [{"name": "w", "type": "webhook", "url": "http://127.0.0.1:1/x"}],
        }
    )
    assert good.get("w") is not None and good.get("nope") is None
    with pytest.raises(ValueError, match="not in allowedHosts"):
        ReceiverConfig.model_validate(
            {
                "allowedHosts": ["hooks.example"],
                "receivers": [{"name": "w", "type": "webhook", "url": "http://evil"}],
            }
        )
    with pytest.raises(ValueError, match="absolute http"):
        ReceiverConfig.model_validate({"receivers": [{"name": "w", "type": "webhook", "url": "file:///etc"}]})
    assert "s3cret" not in repr(
        ReceiverConfig.model_validate(
            {"receivers": [{"name": "w", "type": "webhook", "url": "http://x", "hmacKey": "s3cret"}]}
        )
    )


def test_delivery_signs_retries_and_reports_to_a_real_receiver() -> None:
    async def scenario() -> tuple[list[bytes], dict[str, str], dict[str, str | None], list[str]]:
        with WebhookReceiver() as receiver:
            config = ReceiverConfig.model_validate(
                {
                    "receivers": [
                        {"name": "hook", "type": "webhook", "url": receiver.url + "/hook", "hmacKey": "key"},
                        {"name": "broken", "type": "webhook", "url": receiver.url + "/x", "attempts": 2},
                    ]
                }
            )

            async def no_wait(seconds: float) -> None:
                receiver.status = 200  # the receiver recovers between tries of the hook's round

            deliverer = Deliverer.from_config(config, sleep=no_wait)
            records = alert_records(ORIGIN, plan_alerts(OBJ, [LATENCY], (), set(), COOLDOWN, T0), (), "15m")
            receiver.status = 503
            deliverer.start(OBJ, {"hook": records})
            await deliverer.drain()
            receiver.status = 404
            deliverer.start(OBJ, {"broken": records})
            assert deliverer.busy(OBJ) == {"hook", "broken"}  # hook: done, but not settled yet
            await deliverer.drain()
            results = deliverer.take(OBJ)
            routes = deliverer.sinks_of(["hook", "missing"])(records[0])
            hook_requests = [r for r in receiver.requests if r.path == "/hook"]
            await deliverer.close()
            errors = {name: result.error for name, result in results.items()}
            return [r.body for r in hook_requests], hook_requests[-1].headers, errors, routes

    bodies, headers, errors, routes = asyncio.run(scenario())
    assert len(bodies) == 2  # 503, then delivered on the retry
    verify_webhook(b"key", bodies[-1], headers["X-Signature-SHA256"], now=datetime.now(UTC).timestamp())
    assert json.loads(bodies[-1])["alerts"][0]["fingerprint"] == LATENCY.fingerprint(OBJ)
    assert errors == {"hook": None, "broken": "HTTP 404 after 1 attempt(s)"}  # a 4xx ends the round
    assert routes == ["hook"]  # a receiver the settings lack gets nothing (the condition names it)


def test_policy_alerts_metrics_unavailable_escalates_on_fallback_and_switch_notice() -> None:
    from detection_operator.core.readings import Missing
    from detection_operator.decide.alerts import policy_alerts
    from detection_operator.decide.policy import PolicyMemory, decide_policy

    from .test_decide_policy import SPEC as POLICY

    obj = ObjectRef("DetectionPolicy", "prod", "bot")
    missing = {("rule", "latency"): Missing("timeout"), ("rule", "surge"): Missing("timeout")}
    first = decide_policy(
        POLICY, {("rule", "latency"): Value(100), ("rule", "surge"): Value(0)}, PolicyMemory(), T0
    )
    held = decide_policy(POLICY, missing, first.memory, T0 + timedelta(minutes=5))
    [alert] = policy_alerts(POLICY, held, obj)
    assert (alert.type, alert.severity) == ("metrics-unavailable", "warning")
    later = decide_policy(POLICY, missing, held.memory, T0 + timedelta(minutes=8))
    assert [a.severity for a in policy_alerts(POLICY, later, obj)] == ["critical"]
    lean = decide_policy(
        POLICY, {("rule", "latency"): Value(300), ("rule", "surge"): Value(0)}, PolicyMemory(), T0
    )
    assert policy_alerts(POLICY, lean, obj) == []  # the first decision is not a switch
