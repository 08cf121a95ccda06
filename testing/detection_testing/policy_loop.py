"""A DetectionPolicy in the closed loop: a load burst raises latency, `lean` lowers it, relaxing raises it.

The detector (:class:`~detection_testing.detector.ProfiledDetector`) runs what profile.json
names. `balanced` runs the LLM judge (100 ms per request), `lean` does not. In calm traffic balanced's
p95 sits under the high-latency rule's clearThreshold; during a burst (the detector saturates: +70 ms)
balanced is over the threshold and lean far under it. So once the rule chose lean, its own reading
clears at once: without a stabilization window the policy relaxes, the latency returns, and the loop
oscillates for as long as the burst lasts. A stabilization window longer than the burst keeps lean until
the burst is over: one escalation, one relaxation. Used by the integration test and by `make bench`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Final

from detection_operator.api.base import GROUP, VERSION

from .detector import ProfiledDetector
from .simulator import ContributorLoad, DetectorLoad

NAME: Final = "looped"
CONFIG_MAP: Final = f"{NAME}-detection-profile"
COSTS: Final = {
    "strict-rules": ContributorLoad(runtime_seconds=0.005, memory_bytes=20e6),
    "ip-reputation": ContributorLoad(runtime_seconds=0.02, memory_bytes=150e6),
    "llm-judge": ContributorLoad(runtime_seconds=0.1, memory_bytes=900e6),
}
CALM: Final = DetectorLoad(requests_per_second=50, latency_seconds=0.02)
BURST: Final = DetectorLoad(requests_per_second=50, latency_seconds=0.09)
P95_MS: Final = (
    "histogram_quantile(0.95, sum by (le) "
    '(rate(detector_request_duration_seconds_bucket{namespace="$namespace"}[$window]))) * 1000'
)


def loop_policy(stabilization: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The looped policy with ``stabilization`` as its stabilizationWindow (1 s evaluations, 5 s window)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DetectionPolicy",
        "metadata": {"name": NAME},
        "spec": {
            "interval": "1s",
            "window": "5s",
            "minDwell": "1s",
            "stabilizationWindow": stabilization,
            "defaultProfile": "balanced",
            "profiles": [
                {"name": "lean", "latencyTargetMs": 50, "contributors": ["strict-rules"]},
                {
                    "name": "balanced",
                    "latencyTargetMs": 150,
                    "contributors": ["strict-rules", "ip-reputation", "llm-judge"],
                },
            ],
            "rules": [
                {
                    "name": "high-latency",
                    "query": P95_MS,
                    "op": ">",
                    "threshold": 200,
                    "clearThreshold": 150,
                    "for": 2,
                    "profile": "lean",
                    "reason": "high latency",
                }
            ],
            "contributors": [{"name": name} for name in COSTS],
            **(overrides or {}),
        },
    }


def switches(status: Mapping[str, Any]) -> list[str]:
    """The profiles the policy switched to, in order (the first decision included)."""
    return [entry["to"] for entry in status.get("history", [])]


class ProfilesRun:
    """The profiles a detector actually ran, in order, sampled every 100 ms until :meth:`stop`."""

    def __init__(self, detector: ProfiledDetector) -> None:
        """Start sampling ``detector``."""
        self.detector, self.profiles = detector, list[str]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            current = self.detector.profile
            if current is not None and (not self.profiles or self.profiles[-1] != current.profile):
                self.profiles.append(current.profile)

    def stop(self) -> list[str]:
        """Stop sampling; the profiles seen."""
        self._stop.set()
        self._thread.join()
        return self.profiles
