"""The demo's scenario: named phases of what the world does, each with the switch it must cause.

The objects are the examples' (``examples/detection-policy.yaml`` and ``examples/model-route.yaml``), so
the series, contributors, service and models below are the ones their queries name.

Both halves are closed loops. The bot detector
(:class:`~detection_testing.detector.ProfiledDetector`) runs the contributors of the
profile.json the operator publishes, so its latency, CPU and contributor cost follow that profile; a
phase changes only what the world sends (request rate, bot share, a load burst that saturates the
detector). The models are real model server processes behind a router that follows route.json: a phase
that kills one takes its series away, and a backup serves only when route.json sends it traffic.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, Literal

from ..router import ModelFleet
from ..simulator import ContributorLoad, DetectorLoad, ExternalLoad

POLICY: Final = "bot-detector"
ROUTE: Final = "bot-classifier"
PRIMARY, BACKUP, LITE = "neuroweaver-v3", "neuroweaver-v2", "neuroweaver-lite"

Kind = Literal["dp", "mr"]
TRICKLE_OFF: Final = f"{PRIMARY} trickle off"
"""What the timeline calls the route's primary failing its probation (not a switch of the active model)."""
LEAN_HELD: Final = "lean held by stabilizationWindow"
"""What the timeline calls the policy keeping lean while every rule is clear (not a switch)."""

_MB: Final = 1e6
# Per-call cost: the light ones stay within the light class (5 ms, 64 MB), ip-reputation is medium and
# the LLM judge heavy (over medium's 50 ms), as the example declares them. Per request lean runs 3 ms of
# contributors, balanced 27 ms, paranoid 87 ms.
CONTRIBUTORS: Final = {
    "strict-rules": ContributorLoad(runtime_seconds=0.001, memory_bytes=20 * _MB),
    "ua-heuristics": ContributorLoad(runtime_seconds=0.002, memory_bytes=30 * _MB),
    "ip-reputation": ContributorLoad(runtime_seconds=0.02, memory_bytes=150 * _MB),
    "asn-geo": ContributorLoad(runtime_seconds=0.003, memory_bytes=40 * _MB),
    "header-sanity": ContributorLoad(runtime_seconds=0.001, memory_bytes=10 * _MB),
    "llm-judge": ContributorLoad(runtime_seconds=0.06, memory_bytes=2000 * _MB),
}
EXTERNALS: Final = {"ip-intel": ExternalLoad()}
STARTUP: Final = ("strict-rules", "ua-heuristics", "ip-reputation", "asn-geo", "header-sanity")
"""What the detector runs before the first profile.json (its built-in default: balanced's contributors)."""
# Calm: 50 ms of parsing and I/O per request besides the contributors, so p95 is ~100 ms in lean and
# balanced and ~150 ms in paranoid (histogram buckets 50/100/150 ms), all below high-latency's 150 ms
# clearThreshold. The CPU limit is the Deployment's total (its replicas' limits): paranoid's 87 ms of
# contributor CPU per request at 100 req/s stays under the high-cpu rule's 80 %.
CALM: Final = DetectorLoad(latency_seconds=0.05, cpu_cores=0.6, cpu_limit_cores=16.0)
# A load burst saturates the detector: 150 req/s, 80 ms besides the contributors and every piece of
# contributor work queued 6x as long. Balanced: 80 + 6 x 27 = 242 ms, over high-latency's 200 ms; lean:
# 80 + 6 x 3 = 98 ms, under its 150 ms clearThreshold. So lean clears the rule that chose it.
BURST: Final = replace(CALM, requests_per_second=150.0, latency_seconds=0.08, contention=6.0)
SURGE: Final = replace(CALM, flagged_share=0.35)
MODELS: Final = (PRIMARY, BACKUP, LITE)
# Seconds after the primary comes back before it starts failing again: enough to begin its probation
# (healthy with requests served), far less than the window it needs before a rollback.
RELAPSE_AFTER: Final = 6.0

ModelAction = Callable[[ModelFleet], None]


@dataclass(frozen=True)
class Expectation:
    """The switch a phase must cause: object ``kind/name`` becomes ``to``."""

    kind: Kind
    name: str
    to: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} → {self.to}"


@dataclass(frozen=True)
class Phase:
    """One step of the scenario: what the world sends the detector and which switch must follow."""

    name: str
    description: str
    world: DetectorLoad
    expect: tuple[Expectation, ...]
    models: ModelAction | None = None


def _kill(fleet: ModelFleet) -> None:
    fleet.kill(PRIMARY)


def _revive(fleet: ModelFleet) -> None:
    fleet.revive(PRIMARY)


def _relapse(fleet: ModelFleet) -> None:
    """Back, healthy long enough to start its probation, then answering only errors."""
    fleet.revive(PRIMARY)
    threading.Timer(RELAPSE_AFTER, lambda: fleet.control(PRIMARY, errorShare=1.0)).start()


def scenario() -> list[Phase]:
    """Start → load burst (lean) → lean hides the burst (held) → burst over (balanced) → bot surge →
    calm → primary dies → recovery through its trickle → dies again → back but failing under its
    trickle."""
    return [
        Phase(
            "start",
            "calm traffic; the operator picks the default profile and the primary model",
            CALM,
            (Expectation("dp", POLICY, "balanced"), Expectation("mr", ROUTE, PRIMARY)),
        ),
        Phase(
            "load burst",
            "150 req/s saturate the detector: balanced's p95 ~250 ms (rule high-latency: > 200 ms for 2 "
            "evaluations)",
            BURST,
            (Expectation("dp", POLICY, "lean"),),
        ),
        Phase(
            "lean hides the burst",
            "the burst goes on, but lean's 3 ms of contributors bring p95 to ~100 ms: the rule clears, "
            "and only the stabilization window keeps lean from flipping back into the burst",
            BURST,
            (Expectation("dp", POLICY, LEAN_HELD),),
        ),
        Phase(
            "burst over",
            "100 req/s again; every rule stays clear for the stabilization window",
            CALM,
            (Expectation("dp", POLICY, "balanced"),),
        ),
        Phase(
            "bot surge",
            "35 % of requests flagged (rule bot-surge: > 20 % with at least 300 requests per window)",
            SURGE,
            (Expectation("dp", POLICY, "paranoid"),),
        ),
        Phase(
            "calm",
            "5 % flagged again; paranoid's p95 ~150 ms stays under high-latency's threshold; every rule "
            "must stay clear for the stabilization window; idle backups raise nothing",
            CALM,
            (Expectation("dp", POLICY, "balanced"),),
        ),
        Phase(
            "primary dies",
            f"{PRIMARY}'s process is killed: its series vanish while route.json still sends it traffic "
            "(failing for 3 evaluations fails over; the router retries each request on a fallback)",
            CALM,
            (Expectation("mr", ROUTE, BACKUP),),
            _kill,
        ),
        Phase(
            "recovery through the trickle",
            f"{PRIMARY} is back; route.json gives it a trickle, and it is rolled back to once it served "
            "minRequests and stayed healthy for rollback.stableFor",
            CALM,
            (Expectation("mr", ROUTE, PRIMARY),),
            _revive,
        ),
        Phase(
            "primary dies again",
            f"{PRIMARY} is killed once more",
            CALM,
            (Expectation("mr", ROUTE, BACKUP),),
            _kill,
        ),
        Phase(
            "failing under the trickle",
            f"{PRIMARY} comes back, starts its probation, then answers only errors: its trickle goes to 0 "
            "and the next probation is twice as long; no rollback",
            CALM,
            (Expectation("mr", ROUTE, TRICKLE_OFF),),
            _relapse,
        ),
    ]
