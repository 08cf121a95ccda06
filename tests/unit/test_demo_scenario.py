"""The demo's pure parts: the detector's series per profile against the examples' thresholds, the timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from detection_operator.tools.validate import validate
from detection_testing.demo.runner import demo_objects
from detection_testing.demo.scenario import (
    CALM,
    CONTRIBUTORS,
    EXTERNALS,
    LEAN_HELD,
    POLICY,
    ROUTE,
    TRICKLE_OFF,
    Expectation,
    scenario,
)
from detection_testing.demo.timeline import elapsed, event_line, transition_line, transitions
from detection_testing.detector import profile_traffic
from detection_testing.simulator import BUCKETS, DetectorLoad, Traffic, counter_increments, gauge_values

REPO = Path(__file__).resolve().parents[2]


EXAMPLE = yaml.safe_load((REPO / "examples/detection-policy.yaml").read_text())["spec"]
PROFILES = {p["name"]: p for p in EXAMPLE["profiles"]}


def running(profile: str, world: DetectorLoad) -> Traffic:
    """What the demo's detector emits while it runs the example's ``profile`` in ``world``."""
    contributors = PROFILES[profile]["contributors"]
    return profile_traffic("ns", world, CONTRIBUTORS, EXTERNALS, contributors, [])


def increments(traffic: Any, seconds: float) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in counter_increments(traffic, seconds)}


def p95_upper_bound_ms(latency_seconds: float) -> float:
    """histogram_quantile(0.95) of requests that all took ``latency`` lies in (lower, upper] of its bucket."""
    upper = next(b for b in BUCKETS if latency_seconds <= b)
    lower = max((b for b in BUCKETS if b < upper), default=0.0)
    return (lower + 0.95 * (upper - lower)) * 1000


def test_counters_grow_at_the_described_rates() -> None:
    series = increments(running("balanced", CALM), 10)
    ns = (("namespace", "ns"),)
    assert series[("detector_requests_total", ns)] == 1000
    assert series[("detector_flagged_requests_total", ns)] == 50
    cpu = series[("container_cpu_usage_seconds_total", (("container", "detector"), ("namespace", "ns")))]
    assert cpu == pytest.approx((0.6 + 0.027 * 100) * 10)  # base + balanced's contributors' work
    # 77 ms requests: none in the 50 ms bucket, all from the 100 ms bucket up (buckets are cumulative).
    assert series[("detector_request_duration_seconds_bucket", (("le", "0.05"), *ns))] == 0
    assert series[("detector_request_duration_seconds_bucket", (("le", "0.1"), *ns))] == 1000
    assert series[("detector_request_duration_seconds_bucket", (("le", "+Inf"), *ns))] == 1000
    assert not [name for name, _ in series if name.startswith("neuroweaver_")]  # models serve for real


def test_gauges_carry_the_cpu_limit() -> None:
    gauges = {(s.name, tuple(s.labels.values())): s.value for s in gauge_values(running("lean", CALM))}
    assert gauges[("kube_pod_container_resource_limits", ("ns", "detector", "cpu"))] == 16.0
    # Only the contributors lean runs report memory.
    assert {labels[0] for name, labels in gauges if name == "detector_contributor_memory_bytes"} == {
        "strict-rules",
        "ua-heuristics",
    }


def test_demo_objects_are_the_examples_with_demo_timing_and_pass_validate(tmp_path: Path) -> None:
    objects = {o["kind"]: o for o in demo_objects(REPO)}
    example = yaml.safe_load((REPO / "examples/detection-policy.yaml").read_text())
    policy = objects["DetectionPolicy"]
    assert policy["spec"]["interval"] == "1s" and policy["spec"]["stabilizationWindow"] == "8s"
    assert policy["spec"]["rules"] == example["spec"]["rules"]
    assert objects["ModelRoute"]["spec"]["rollback"] == {
        "stableFor": "6s",
        "scaleDownAfter": "5s",
        "trafficPercent": 20,
    }
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump_all(objects.values()))
    report = validate([str(path)])
    assert report.ok and report.checked == 2, report.findings


def p95_ms(traffic: Traffic) -> float:
    return p95_upper_bound_ms(traffic.detector.latency_seconds)


def cpu_share(traffic: Traffic) -> float:
    return traffic.detector.cpu_cores / traffic.detector.cpu_limit_cores


def test_each_phase_crosses_the_examples_thresholds_with_the_profile_it_runs() -> None:
    rules = {r["name"]: r for r in EXAMPLE["rules"]}
    phases = {p.name: p for p in scenario()}
    latency, cpu, surge = rules["high-latency"], rules["high-cpu"], rules["bot-surge"]
    calm, burst = phases["calm"].world, phases["load burst"].world
    # Calm: no profile's own cost trips a rule, so the policy rests on its default.
    for profile in PROFILES:
        assert p95_ms(running(profile, calm)) < latency["clearThreshold"], profile
        assert cpu_share(running(profile, calm)) < cpu["clearThreshold"], profile
        assert p95_ms(running(profile, calm)) <= PROFILES[profile]["latencyTargetMs"] or profile == "lean"
    # The burst: balanced crosses the threshold, and lean, which the rule chooses, clears it (the loop).
    assert p95_ms(running("balanced", burst)) > latency["threshold"]
    assert p95_ms(running("lean", burst)) < latency["clearThreshold"]
    assert cpu_share(running("balanced", burst)) < cpu["clearThreshold"]
    assert phases["lean hides the burst"].world == burst and phases["burst over"].world == calm
    # The surge: enough requests per window for the traffic floor (window 6 s in demo/timing.yaml).
    surge_world = phases["bot surge"].world
    assert surge_world.flagged_share > surge["threshold"] and calm.flagged_share < surge["clearThreshold"]
    assert surge_world.requests_per_second * 6 > surge["minSamples"]
    assert [p.models is not None for p in scenario()] == [False] * 6 + [True] * 4
    assert [e for p in scenario()[1:] for e in p.expect] == [
        Expectation("dp", POLICY, "lean"),
        Expectation("dp", POLICY, LEAN_HELD),
        Expectation("dp", POLICY, "balanced"),
        Expectation("dp", POLICY, "paranoid"),
        Expectation("dp", POLICY, "balanced"),
        Expectation("mr", ROUTE, "neuroweaver-v2"),
        Expectation("mr", ROUTE, "neuroweaver-v3"),
        Expectation("mr", ROUTE, "neuroweaver-v2"),
        Expectation("mr", ROUTE, TRICKLE_OFF),
    ]


def test_a_held_policy_gets_a_line_once_per_switch_with_what_its_rules_read() -> None:
    obj: dict[str, Any] = {
        "metadata": {"name": POLICY},
        "spec": {"rules": [{"name": "high-latency", "op": ">"}]},
        "status": {
            "profile": "lean",
            "heldBy": "stabilizationWindow",
            "reason": "rules clear, stabilizing before relaxing to balanced",
            "history": [{"from": "balanced", "to": "lean", "reason": "r", "at": "T2"}],
            "rules": [{"name": "high-latency", "value": 97.5, "threshold": 200, "active": False}],
        },
    }
    switch, held = transitions("dp", obj)
    assert held.matches(Expectation("dp", POLICY, LEAN_HELD)) and held.key != switch.key
    assert held.reason == "rules clear, stabilizing before relaxing to balanced (high-latency = 97.5)"
    obj["status"]["heldBy"] = None
    assert len(transitions("dp", obj)) == 1


def test_policy_history_becomes_transitions_with_the_active_rule_values() -> None:
    obj = {
        "metadata": {"name": POLICY},
        "spec": {"rules": [{"name": "high-latency", "op": ">"}]},
        "status": {
            "profile": "lean",
            "history": [
                {"to": "balanced", "reason": "Selected balanced profile: no rule holds", "at": "T1"},
                {
                    "from": "balanced",
                    "to": "lean",
                    "reason": "Switched to lean profile due to high latency",
                    "at": "T2",
                },
            ],
            "rules": [{"name": "high-latency", "value": 297.5, "threshold": 200, "active": True}],
        },
    }
    first, second = transitions("dp", obj)
    assert (first.from_, first.to, first.reason) == (
        None,
        "balanced",
        "Selected balanced profile: no rule holds",
    )
    assert second.reason == "Switched to lean profile due to high latency: high-latency = 298 > 200"
    assert second.matches(Expectation("dp", POLICY, "lean")) and not second.matches(
        Expectation("mr", POLICY, "lean")
    )
    line = transition_line(74, second)
    assert line.startswith("+01:14  dp/bot-detector ") and "balanced → lean " in line


def test_a_route_without_history_yields_its_first_pick_then_its_switches() -> None:
    obj: dict[str, Any] = {
        "metadata": {"name": ROUTE},
        "status": {"activeModel": "m1", "reason": "primary healthy"},
    }
    [first] = transitions("mr", obj)
    assert (first.from_, first.to, first.reason) == (None, "m1", "primary healthy")
    obj["status"]["switchHistory"] = [{"from": "m1", "to": "m2", "reason": "m1 critical", "at": "T"}]
    [switch] = transitions("mr", obj)
    assert (switch.from_, switch.to) == ("m1", "m2") and switch.key != first.key
    # The trickle gets a line, and the primary failing under it another.
    obj["status"]["models"] = [{"name": "m1", "trafficPercent": 5}, {"name": "m2", "trafficPercent": 95}]
    obj["status"]["probation"] = {"failures": 1, "stableForSeconds": 12, "trafficPausedUntil": "T2"}
    _, trickle, failed = transitions("mr", obj)
    assert (trickle.from_, trickle.to) == ("traffic", "m1 5 % · m2 95 %")
    assert failed.to == "m1 trickle off" and "next probation 12s" in failed.reason
    assert elapsed(-1) == "+00:00" and elapsed(3599) == "+59:59"


def test_notable_events_of_our_objects_get_a_line_others_do_not() -> None:
    def event(kind: str, reason: str) -> client.CoreV1Event:
        return client.CoreV1Event(
            metadata=client.V1ObjectMeta(name="e"),
            involved_object=client.V1ObjectReference(kind=kind, name="bot-classifier"),
            reason=reason,
            message="scaled Deployment neuroweaver-v2 to 2",
        )

    line = event_line(29, event("ModelRoute", "BackupScaled"))
    assert line == "+00:29  mr/bot-classifier  · BackupScaled: scaled Deployment neuroweaver-v2 to 2"
    assert event_line(29, event("ModelRoute", "ModelSwitched")) is None  # a switch: printed from status
    assert event_line(29, event("Deployment", "BackupScaled")) is None
