"""The demo's scenario: named phases of simulated traffic, each with the switch it must cause.

The objects are the examples' (``examples/detection-policy.yaml`` and ``examples/model-route.yaml``), so
the series, contributors, service and models below are the ones their queries name.

The models are real model server processes behind a router that follows route.json (the closed loop):
a phase that kills one takes its series away, and a backup serves only when route.json sends it traffic.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, Literal

from detection_operator.testing.router import ModelFleet
from detection_operator.testing.simulator import (
    ContributorLoad,
    DetectorLoad,
    ExternalLoad,
    Traffic,
)

POLICY: Final = "bot-detector"
ROUTE: Final = "bot-classifier"
PRIMARY, BACKUP, LITE = "neuroweaver-v3", "neuroweaver-v2", "neuroweaver-lite"

Kind = Literal["dp", "mr"]
TRICKLE_OFF: Final = f"{PRIMARY} trickle off"
"""What the timeline calls the route's primary failing its probation (not a switch of the active model)."""

_MB: Final = 1e6
# Per-call cost: the light ones stay within the light class (5 ms, 64 MB), ip-reputation is medium and
# the LLM judge heavy, as the example declares them.
CONTRIBUTORS: Final = {
    "strict-rules": ContributorLoad(runtime_seconds=0.001, memory_bytes=20 * _MB),
    "ua-heuristics": ContributorLoad(runtime_seconds=0.002, memory_bytes=30 * _MB),
    "ip-reputation": ContributorLoad(runtime_seconds=0.02, memory_bytes=150 * _MB),
    "asn-geo": ContributorLoad(runtime_seconds=0.003, memory_bytes=40 * _MB),
    "header-sanity": ContributorLoad(runtime_seconds=0.001, memory_bytes=10 * _MB),
    "llm-judge": ContributorLoad(runtime_seconds=0.4, memory_bytes=2000 * _MB),
}
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
    """One step of the scenario: what the simulator serves and which switch must follow."""

    name: str
    description: str
    traffic: Traffic
    expect: tuple[Expectation, ...]
    models: ModelAction | None = None


def calm(namespace: str) -> Traffic:
    """Normal traffic: 90 ms detector latency, 5 % flagged, the external service healthy."""
    return Traffic(
        namespace=namespace,
        detector=DetectorLoad(),
        contributors=CONTRIBUTORS,
        externals={"ip-intel": ExternalLoad()},
    )


def _kill(fleet: ModelFleet) -> None:
    fleet.kill(PRIMARY)


def _revive(fleet: ModelFleet) -> None:
    fleet.revive(PRIMARY)


def _relapse(fleet: ModelFleet) -> None:
    """Back, healthy long enough to start its probation, then answering only errors."""
    fleet.revive(PRIMARY)
    threading.Timer(RELAPSE_AFTER, lambda: fleet.control(PRIMARY, errorShare=1.0)).start()


def scenario(namespace: str) -> list[Phase]:
    """Start → latency spike → bot surge → calm → primary dies → recovery through its trickle → dies again
    → back but failing under its trickle."""
    base = calm(namespace)
    spike = replace(base, detector=replace(base.detector, latency_seconds=0.28))
    surge = replace(base, detector=replace(base.detector, flagged_share=0.35))
    return [
        Phase(
            "start",
            "calm traffic; the operator picks the default profile and the primary model",
            base,
            (Expectation("dp", POLICY, "balanced"), Expectation("mr", ROUTE, PRIMARY)),
        ),
        Phase(
            "latency spike",
            "detector p95 latency ~300 ms (rule high-latency: > 200 ms for 2 evaluations)",
            spike,
            (Expectation("dp", POLICY, "lean"),),
        ),
        Phase(
            "bot surge",
            "latency back to ~100 ms, 35 % of requests flagged (rule bot-surge: > 20 %)",
            surge,
            (Expectation("dp", POLICY, "paranoid"),),
        ),
        Phase(
            "calm",
            "5 % flagged again; every rule must stay clear for the stabilization window; idle backups "
            "raise nothing",
            base,
            (Expectation("dp", POLICY, "balanced"),),
        ),
        Phase(
            "primary dies",
            f"{PRIMARY}'s process is killed: its series vanish while route.json still sends it traffic "
            "(failing for 3 evaluations fails over; the router retries each request on a fallback)",
            base,
            (Expectation("mr", ROUTE, BACKUP),),
            _kill,
        ),
        Phase(
            "recovery through the trickle",
            f"{PRIMARY} is back; route.json gives it a trickle, and it is rolled back to once it served "
            "minRequests and stayed healthy for rollback.stableFor",
            base,
            (Expectation("mr", ROUTE, PRIMARY),),
            _revive,
        ),
        Phase(
            "primary dies again",
            f"{PRIMARY} is killed once more",
            base,
            (Expectation("mr", ROUTE, BACKUP),),
            _kill,
        ),
        Phase(
            "failing under the trickle",
            f"{PRIMARY} comes back, starts its probation, then answers only errors: its trickle goes to 0 "
            "and the next probation is twice as long; no rollback",
            base,
            (Expectation("mr", ROUTE, TRICKLE_OFF),),
            _relapse,
        ),
    ]
