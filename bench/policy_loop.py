"""DetectionPolicy in the closed loop, 10 minutes: switch counts with and without stabilization.

Three policies side by side, each with its own closed-loop detector (testing/policy_loop.py): the same
world (calm, a 6-minute load burst, calm), stabilizationWindow 0s, 30s and 5m, 1 s evaluations over a 5 s
window. Counted: the profile changes each detector actually ran.
"""

from __future__ import annotations

import time
from pathlib import Path

from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_testing.detector import ProfiledDetector
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.policy_loop import BURST, CALM, CONFIG_MAP, COSTS, ProfilesRun, loop_policy

from .harness import create_namespace, real_stack

WINDOWS = {"loop-none": "0s", "loop-30s": "30s", "loop-5m": "5m"}
PHASES = ((60.0, CALM), (360.0, BURST), (180.0, CALM))  # 10 minutes


def run(workdir: Path) -> list[str]:
    """Play the phases against the three policies; the RESULTS.md section."""
    with real_stack(workdir) as stack:
        for namespace in WINDOWS:
            create_namespace(stack.api, namespace)
        env = {"DETECTION_OPERATOR_PROMETHEUS_URL": stack.prometheus.url}
        detectors = {
            ns: ProfiledDetector(stack.api, ns, CONFIG_MAP, stack.exporter, base=CALM, costs=COSTS)
            for ns in WINDOWS
        }
        with OperatorProcess(
            stack.plane.kubeconfig, workdir / "operator.log", list(WINDOWS), env, verbose=False
        ):
            for detector in detectors.values():
                detector.start()
            try:
                for ns, window in WINDOWS.items():
                    client.CustomObjectsApi(stack.api).create_namespaced_custom_object(
                        GROUP, VERSION, ns, "detectionpolicies", loop_policy(window)
                    )
                for detector in detectors.values():
                    wait_for(lambda d=detector: d.profile is not None, timeout=60, what="a first profile")
                runs = {ns: ProfilesRun(d) for ns, d in detectors.items()}
                for seconds, load in PHASES:
                    for detector in detectors.values():
                        detector.world(load)
                    time.sleep(seconds)  # the phase's length is the scenario
                seen = {ns: r.stop() for ns, r in runs.items()}
            finally:
                for detector in detectors.values():
                    detector.stop()
    lines = [
        "## DetectionPolicy closed loop: stabilization vs oscillation (10 minutes)",
        "",
        "Calm 1 min, load burst 6 min (balanced p95 ~250 ms, lean ~100 ms), calm 3 min; 1 s evaluations,",
        "5 s window, `for: 2`, minDwell 1s. Switches = profile changes the closed-loop detector ran.",
        "",
        "| stabilizationWindow | switches | to lean | profiles run |",
        "|---|---|---|---|",
    ]
    for ns, window in WINDOWS.items():
        profiles = seen[ns]
        shown = " → ".join(profiles) if len(profiles) <= 7 else " → ".join(profiles[:6]) + " → …"
        lines.append(f"| {window} | {len(profiles) - 1} | {profiles.count('lean')} | {shown} |")
    return [*lines, ""]
