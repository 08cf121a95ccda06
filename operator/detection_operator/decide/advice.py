"""Recommendations of ``detection-operator report``: documented rules over scores and status. Pure.

Each rule has an id (R1.. for routes, P1.. for policies) that docs/sdk/scores.md describes, so a reader
can look up why a line was written and what would silence it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .scores import Scores

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}
GOOD_BANDS = frozenset({"Excellent", "Good"})
WEAK_BANDS = frozenset({"Fair", "Poor"})
RELIABILITY_FLOOR = 95.0
EFFICIENCY_GAP = 25.0
SPECIALIZATION_FLOOR = 20.0
SWITCHES_FLAPPING = 3


@dataclass(frozen=True)
class Recommendation:
    """Something concrete to do, about one subject, and the rule that said so."""

    rule: str
    severity: Severity
    subject: str
    message: str


@dataclass(frozen=True)
class RouteFacts:
    """What the route rules read: the route's status and spec, and its models' scores over the window."""

    name: str
    primary: str
    active: str | None
    scores: tuple[Scores, ...]
    """In priority order (the primary first)."""
    switches: int
    window: str
    metrics_available: bool | None = None
    metrics_message: str = ""
    degraded: str | None = None
    """The Degraded condition's reason while it is True (NoHealthyBackup, FailoverCapReached)."""
    backup_traffic_percent: int = 0
    failure_threshold: int = 3
    stable_for: str = "5m"


@dataclass(frozen=True)
class RuleFact:
    """One policy rule's latest verdict."""

    name: str
    verdict: str
    cause: str = ""


@dataclass(frozen=True)
class PolicyFacts:
    """What the policy rules read: its status and spec over the window."""

    name: str
    profile: str | None
    rules: tuple[RuleFact, ...]
    switches: int
    window: str
    latency_ms: float | None = None
    target_ms: float | None = None
    latency_breached: bool = False
    circuits: tuple[tuple[str, str, str], ...] = ()
    """(service, circuit, reason) of each external contributor."""
    held_by: str | None = None
    stabilization_window: str = "5m"
    min_dwell: str = "1m"


def _pct(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def route_advice(route: RouteFacts) -> list[Recommendation]:
    """The route rules R1-R9, most severe first."""
    found: list[Recommendation] = []

    def say(rule: str, severity: Severity, subject: str, message: str) -> None:
        found.append(Recommendation(rule, severity, subject, message))

    by_name = {s.name: s for s in route.scores}
    active = by_name.get(route.active or "")
    others = [s for s in route.scores if active is None or s.name != active.name]
    if route.degraded == "NoHealthyBackup":
        say(
            "R1",
            "critical",
            route.name,
            "no healthy backup to fail over to: add a candidate to spec.models, or "
            "bring a backup's Deployment back, before the active model fails",
        )
    elif route.degraded == "FailoverCapReached":
        say(
            "R1",
            "critical",
            route.name,
            "the failover cap (spec.maxFailoversPerHour) stopped a failover: the "
            "route stays on a critical model; find why the models keep failing before raising the cap",
        )
    if route.metrics_available is False:
        say(
            "R2",
            "warning",
            route.name,
            f"Prometheus did not answer every query ({route.metrics_message}): run "
            "`detection-operator validate --prometheus URL` on the route; decisions hold meanwhile",
        )
    if active is not None and active.band in WEAK_BANDS:
        better = [s for s in others if s.band in GOOD_BANDS and s.health is not None]
        if better:
            best = max(better, key=lambda s: s.health or 0.0)
            say(
                "R3",
                "warning",
                active.name,
                f"serves the route at health {_pct(active.health or 0)} "
                f"({active.band}) while {best.name} scored {_pct(best.health or 0)} ({best.band}) in the "
                f"window: fix {active.name}, or pin {best.name} with spec.override while you do",
            )
        else:
            say(
                "R3",
                "warning",
                active.name,
                f"serves the route at health {_pct(active.health or 0)} "
                f"({active.band}) and no candidate did better: look at its worst metric in "
                f"`detection-operator explain mr/{route.name}`",
            )
    if active is not None and active.trend == "degrading":
        say(
            "R4",
            "warning",
            active.name,
            "health is degrading compared with the previous window: "
            "check what changed (a deployment, traffic mix) before it reaches its thresholds",
        )
    for s in route.scores:
        if s.reliability is not None and s.reliability < RELIABILITY_FLOOR:
            say(
                "R5",
                "warning",
                s.name,
                f"{_pct(100 - s.reliability)} % of its requests failed in the window "
                f"(reliability {_pct(s.reliability)}): look at its error types (neuroweaver_errors_total)",
            )
    if active is not None and active.efficiency is not None:
        for s in others:
            gap = (s.efficiency or 0.0) - active.efficiency
            if s.band in GOOD_BANDS and s.efficiency is not None and gap >= EFFICIENCY_GAP:
                say(
                    "R6",
                    "info",
                    s.name,
                    f"is {_pct(gap)} points more efficient than {active.name} (latency, "
                    f"cost, tokens, memory) at health {_pct(s.health or 0)}: consider it as the primary "
                    "(first in spec.models)",
                )
    for s in route.scores:
        if s.specialization is not None and s.specialization >= SPECIALIZATION_FLOOR and s.worst_source:
            worst = s.worst_source
            peers = [p for p in route.scores if p.name != s.name and worst in p.accuracy_by_source]
            stronger = [p for p in peers if p.accuracy_by_source[worst] > s.accuracy_by_source[worst]]
            message = (
                f"accuracy is uneven across sources: {s.best_source} "
                f"{s.accuracy_by_source[s.best_source or '']:.2f}, {worst} {s.accuracy_by_source[worst]:.2f}"
            )
            if stronger:
                best = max(stronger, key=lambda p: p.accuracy_by_source[worst])
                message += (
                    f"; {best.name} scores {best.accuracy_by_source[worst]:.2f} on {worst}: route it there"
                )
            say("R7", "info", s.name, message)
    if route.switches >= SWITCHES_FLAPPING:
        say(
            "R8",
            "warning",
            route.name,
            f"{route.switches} switches in {route.window}: the route is flapping; raise "
            f"spec.failureThreshold (now {route.failure_threshold}) or spec.rollback.stableFor (now "
            f"{route.stable_for})",
        )
    backups = route.scores[1:]
    if route.backup_traffic_percent == 0 and backups and not any(b.requests for b in backups):
        say(
            "R9",
            "info",
            route.name,
            "the backups served nothing in the window, so a failover would go to a model "
            "nobody has verified lately: set spec.backupTrafficPercent (e.g. 2) to keep the first "
            "warm-verified",
        )
    return sorted(found, key=lambda r: SEVERITY_RANK[r.severity])


def policy_advice(policy: PolicyFacts) -> list[Recommendation]:
    """The policy rules P1-P5, most severe first."""
    found: list[Recommendation] = []

    def say(rule: str, severity: Severity, subject: str, message: str) -> None:
        found.append(Recommendation(rule, severity, subject, message))

    for rule in policy.rules:
        if rule.verdict == "unknown":
            say(
                "P1",
                "warning",
                rule.name,
                f"the rule's result is unknown ({rule.cause or 'no answer'}): check "
                "its query with `detection-operator validate --prometheus URL`, or set whenEmpty / "
                "ignoreWhenMissing if the metric is optional",
            )
    if policy.held_by == "holdFor":
        say(
            "P2",
            "warning",
            policy.name,
            "metrics are unknown and the profile is held (holdFor): the fallback "
            "profile follows if they stay unknown",
        )
    if policy.latency_breached and policy.latency_ms is not None and policy.target_ms is not None:
        say(
            "P3",
            "warning",
            policy.name,
            f"detector latency {_pct(policy.latency_ms)} ms is above the "
            f"{policy.profile} target of {_pct(policy.target_ms)} ms: lower the profile's maxExpense or move "
            "heavy contributors out of it",
        )
    for service, circuit, reason in policy.circuits:
        if circuit == "open":
            say(
                "P4",
                "warning",
                service,
                f"circuit open ({reason or 'unhealthy'}): the detector runs without it; "
                "check the service, or lower its weight if it stays unreliable",
            )
    if policy.switches >= SWITCHES_FLAPPING:
        say(
            "P5",
            "warning",
            policy.name,
            f"{policy.switches} profile switches in {policy.window}: the policy is "
            f"flapping; raise spec.stabilizationWindow (now {policy.stabilization_window}), spec.minDwell "
            f"(now {policy.min_dwell}) or the rules' clearThreshold gap",
        )
    return sorted(found, key=lambda r: SEVERITY_RANK[r.severity])


def worst(recommendations: Sequence[Recommendation]) -> Severity | None:
    """The most severe recommendation's severity (None: nothing to do)."""
    return min((r.severity for r in recommendations), key=SEVERITY_RANK.__getitem__, default=None)
