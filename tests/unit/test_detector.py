"""The closed-loop detector's traffic: what running a profile costs (pure part)."""

from __future__ import annotations

import pytest

from detection_testing.detector import profile_traffic
from detection_testing.simulator import ContributorLoad, DetectorLoad, ExternalLoad

COSTS = {
    "strict-rules": ContributorLoad(runtime_seconds=0.005, memory_bytes=20e6),
    "llm-judge": ContributorLoad(runtime_seconds=0.3, memory_bytes=900e6),
}
BASE = DetectorLoad(requests_per_second=10, latency_seconds=0.05, cpu_cores=0.2)


def test_latency_and_cpu_grow_with_the_contributors_run() -> None:
    lean = profile_traffic("ns", BASE, COSTS, {}, ["strict-rules"], [])
    paranoid = profile_traffic("ns", BASE, COSTS, {}, ["strict-rules", "llm-judge"], [])
    assert lean.detector.latency_seconds == pytest.approx(0.055)
    assert paranoid.detector.latency_seconds == pytest.approx(0.355)
    assert lean.detector.cpu_cores == pytest.approx(0.2 + 0.005 * 10)
    assert paranoid.detector.cpu_cores == pytest.approx(0.2 + 0.305 * 10)
    assert set(lean.contributors) == {"strict-rules"}


def test_only_enabled_known_externals_are_called_and_unknown_contributors_cost_nothing() -> None:
    externals = {"ip-intel": ExternalLoad()}
    traffic = profile_traffic("ns", BASE, COSTS, externals, ["header-sanity"], ["ip-intel", "gone"])
    assert set(traffic.externals) == {"ip-intel"}
    assert traffic.contributors["header-sanity"].runtime_seconds == 0
    assert traffic.detector.latency_seconds == BASE.latency_seconds
