"""Scores, the health band and the report's recommendations: the pure functions of docs/sdk/scores.md."""

from __future__ import annotations

import json

import pytest

from detection_operator.decide import advice, scores
from detection_operator.decide.scores import Usage
from detection_operator.tools import report


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (100, "Excellent"),
        (90, "Excellent"),
        (89.96, "Excellent"),
        (89.9, "Good"),
        (70, "Good"),
        (69.9, "Fair"),
        (50, "Fair"),
        (49.9, "Poor"),
        (0, "Poor"),
        (None, None),
    ],
)
def test_health_band_boundaries(score: float | None, band: str | None) -> None:
    assert scores.health_band(score) == band


def test_reliability_is_the_success_share_once_it_served() -> None:
    assert scores.reliability(Usage("m", requests=200, success_rate=0.955)) == 95.5
    assert scores.reliability(Usage("m", requests=0, success_rate=1.0)) is None  # served nothing
    assert scores.reliability(Usage("m", requests=10, success_rate=None)) is None


def test_efficiency_is_relative_to_the_best_peer_per_dimension() -> None:
    cheap = Usage("cheap", requests=100, latency_p95_ms=50, cost_per_request=0.001, tokens_per_request=100)
    dear = Usage("dear", requests=100, latency_p95_ms=100, cost_per_request=0.004, tokens_per_request=100)
    idle = Usage("idle", requests=None, latency_p95_ms=1, cost_per_request=0.0001)
    peers = [cheap, dear, idle]
    assert scores.efficiency(cheap, peers) == 100.0  # an idle peer's stale values do not count
    # latency 50/100 (weight 40), cost 1/4 (30), tokens 1 (15) over 85
    assert scores.efficiency(dear, peers) == round(100 * (40 * 0.5 + 30 * 0.25 + 15) / 85, 1)
    assert scores.efficiency(Usage("alone", requests=5, latency_p95_ms=900), [Usage("alone")]) == 100.0
    assert scores.efficiency(Usage("nothing", requests=5), []) is None  # recorded no dimension


def test_a_dimension_not_recorded_is_left_out_not_scored_zero() -> None:
    free = Usage("free", requests=100, latency_p95_ms=100, cost_per_request=0.0)
    paid = Usage("paid", requests=100, latency_p95_ms=100, cost_per_request=0.01)
    assert scores.efficiency(paid, [free, paid]) == 100.0


def test_specialization_is_the_accuracy_spread_over_sources() -> None:
    usage = Usage("m", accuracy_by_source={"web": 0.97, "api": 0.62, "batch": 0.9})
    assert scores.specialization(usage) == (35.0, "web", "api")
    assert scores.specialization(Usage("m", accuracy_by_source={"web": 0.9})) == (None, None, None)


def test_score_group_carries_health_band_and_trend() -> None:
    group = scores.score_group(
        [Usage("a", requests=10, success_rate=1.0, health=72.5, trend="degrading"), Usage("b")]
    )
    assert (group[0].band, group[0].trend, group[0].reliability) == ("Good", "degrading", 100.0)
    assert (group[1].band, group[1].health, group[1].efficiency) == (None, None, None)


def test_policy_health_weighs_the_components_it_has() -> None:
    assert scores.policy_health([], None, None, []).score is None
    healthy = scores.policy_health(["clear", "holds", "insufficient"], 80, 150, ["closed"])
    assert (healthy.score, healthy.band) == (100.0, "Excellent")
    sick = scores.policy_health(["unknown", "clear"], 300, 150, ["open", "half-open"])
    # rules 0.5 (50), latency 0.5 (30), external 0.25 (20)
    assert sick.score == round((50 * 0.5 + 30 * 0.5 + 20 * 0.25), 1) and sick.band == "Poor"
    assert scores.policy_health(["clear"], None, 150, []).components == {"rules": 1.0}


def s(name: str, **fields: object) -> scores.Scores:
    base: dict[str, object] = dict(
        name=name,
        kind="model",
        requests=100.0,
        reliability=99.0,
        efficiency=80.0,
        specialization=None,
        best_source=None,
        worst_source=None,
        health=95.0,
        band="Excellent",
        trend="stable",
    )
    base.update(fields)
    return scores.Scores(**base)  # type: ignore[arg-type]


def facts(*group: scores.Scores, **fields: object) -> advice.RouteFacts:
    base: dict[str, object] = dict(
        name="r",
        primary=group[0].name,
        active=group[0].name,
        scores=group,
        switches=0,
        window="1h",
        backup_traffic_percent=2,
    )
    base.update(fields)
    return advice.RouteFacts(**base)  # type: ignore[arg-type]


def rules(found: list[advice.Recommendation]) -> list[str]:
    return [r.rule for r in found]


def test_a_healthy_route_gets_no_recommendation() -> None:
    assert advice.route_advice(facts(s("a"), s("b", requests=5.0))) == []


def test_a_weak_active_model_with_a_better_candidate_is_named() -> None:
    found = advice.route_advice(facts(s("a", health=55.0, band="Fair"), s("b", health=92.0)))
    assert rules(found) == ["R3"] and "b scored 92 (Excellent)" in found[0].message
    assert "spec.override" in found[0].message


def test_route_rules_fire_on_what_they_describe() -> None:
    group = (
        s("a", reliability=90.0, trend="degrading", efficiency=50.0),
        s(
            "b",
            efficiency=90.0,
            specialization=30.0,
            best_source="web",
            worst_source="api",
            accuracy_by_source={"web": 0.95, "api": 0.65},
        ),
        s("c", requests=0.0, efficiency=None, accuracy_by_source={"api": 0.9}),
    )
    found = advice.route_advice(
        facts(*group, switches=4, degraded="NoHealthyBackup", metrics_available=False)
    )
    assert rules(found) == ["R1", "R2", "R4", "R5", "R8", "R6", "R7"]  # most severe first
    r7 = next(r for r in found if r.rule == "R7")
    assert "c scores 0.90 on api" in r7.message
    assert "10 % of its requests failed" in next(r for r in found if r.rule == "R5").message


def test_idle_unverified_backups_are_pointed_out() -> None:
    found = advice.route_advice(facts(s("a"), s("b", requests=None), backup_traffic_percent=0))
    assert rules(found) == ["R9"] and "backupTrafficPercent" in found[0].message


def test_policy_rules() -> None:
    quiet = advice.PolicyFacts("p", "balanced", (advice.RuleFact("x", "clear"),), 0, "1h")
    assert advice.policy_advice(quiet) == []
    loud = advice.PolicyFacts(
        "p",
        "lean",
        (advice.RuleFact("lat", "unknown", "the query returned no series"),),
        5,
        "1h",
        latency_ms=320,
        target_ms=50,
        latency_breached=True,
        circuits=(("ip-intel", "open", "p95 900 ms"),),
        held_by="holdFor",
    )
    found = advice.policy_advice(loud)
    assert rules(found) == ["P1", "P2", "P3", "P4", "P5"]
    assert "320 ms is above the lean target of 50 ms" in found[2].message
    assert advice.worst(found) == "warning" and advice.worst([]) is None


@pytest.mark.parametrize(("text", "seconds"), [("1h", 3600), ("90m", 5400), ("1h30m", 5400), ("7d", 604800)])
def test_report_since(text: str, seconds: float) -> None:
    assert report.parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "1.5h", "1w", "30m1h", "-1h", "h"])
def test_report_since_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="--since"):
        report.parse_since(text)


def test_report_renders_markdown_and_json() -> None:
    entry = report.Entry(
        "ModelRoute",
        "r",
        health=55.0,
        band="Fair",
        trend="degrading",
        state="Primary",
        reason="a: primary healthy",
        models=[report._scores_row(s("a|b"), {"state": "healthy"})],
        alerts=[{"severity": "warning", "summary": "latency high", "fingerprint": "0123456789"}],
        recommendations=[{"rule": "R3", "severity": "warning", "subject": "a", "message": "m"}],
    )
    built = report.Report(
        "ns",
        "1h",
        "2026-12-01T00:00:00Z",
        "http://p",
        routes=[entry],
        policies=[report.Entry("DetectionPolicy", "bad", error="invalid spec: x")],
    )
    text = report.render(built, "md")
    assert "## ModelRoute r" in text and "health Fair (55), trend degrading" in text
    assert "| a\\|b | 95 | Excellent |" in text  # a pipe in a name does not break the table
    assert "- [warning] latency high (01234567)" in text and "- **warning** R3 a: m" in text
    assert "## DetectionPolicy bad\n\ninvalid spec: x." in text
    assert "No agent recorded runs in the window." in text
    assert json.loads(report.render(built, "json"))["routes"][0]["models"][0]["band"] == "Excellent"
