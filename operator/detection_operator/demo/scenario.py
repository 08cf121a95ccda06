"""The demo's scenario: named phases of simulated traffic, each with the switch it must cause.

The objects are the examples' (``examples/detection-policy.yaml`` and ``examples/model-route.yaml``), so
the series, contributors, service and models below are the ones their queries name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final, Literal

from detection_operator.testing.simulator import (
    ContributorLoad,
    DetectorLoad,
    ExternalLoad,
    ModelLoad,
    Traffic,
)

POLICY: Final = "bot-detector"
ROUTE: Final = "bot-classifier"
PRIMARY, BACKUP, LITE = "neuroweaver-v3", "neuroweaver-v2", "neuroweaver-lite"

Kind = Literal["dp", "mr"]

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
HEALTHY_MODEL: Final = ModelLoad()
# Both backups equally healthy: with no ready replicas anywhere (no nodes), the best score wins and a tie
# goes to priority order, so the failover target is neuroweaver-v2.
MODELS: Final = {PRIMARY: HEALTHY_MODEL, BACKUP: HEALTHY_MODEL, LITE: HEALTHY_MODEL}


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


def calm(namespace: str) -> Traffic:
    """Normal traffic: 90 ms detector latency, 5 % flagged, every model and the external service healthy."""
    return Traffic(
        namespace=namespace,
        detector=DetectorLoad(),
        contributors=CONTRIBUTORS,
        externals={"ip-intel": ExternalLoad()},
        models=MODELS,
    )


def scenario(namespace: str) -> list[Phase]:
    """Start → latency spike → bot surge → calm → model accuracy drop → recovery."""
    base = calm(namespace)
    spike = replace(base, detector=replace(base.detector, latency_seconds=0.28))
    surge = replace(base, detector=replace(base.detector, flagged_share=0.35))
    drop = replace(base, models={**MODELS, PRIMARY: replace(HEALTHY_MODEL, accuracy=0.6)})
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
            "5 % flagged again; every rule must stay clear for the stabilization window",
            base,
            (Expectation("dp", POLICY, "balanced"),),
        ),
        Phase(
            "model accuracy drop",
            f"{PRIMARY} accuracy 0.60 (critical below 0.75; 3 critical evaluations fail over)",
            drop,
            (Expectation("mr", ROUTE, BACKUP),),
        ),
        Phase(
            "recovery",
            f"{PRIMARY} accuracy back to 0.95 (rollback once healthy for rollback.stableFor)",
            base,
            (Expectation("mr", ROUTE, PRIMARY),),
        ),
    ]
