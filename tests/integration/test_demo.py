"""`make demo` end to end: the demo runner as a user starts it, on real parts, exiting after the scenario.

The demo brings its own control plane, Prometheus and operator (that is what it shows), so this test does
not use the shared fixtures; it checks the timeline the user sees and that nothing is left running.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# The five switches of the scenario, in the order they must happen, with the operator's own reason text.
SWITCHES = [
    r"dp/bot-detector\s+balanced → lean\s+Switched to lean profile due to high latency: high-latency = \d+",
    r"dp/bot-detector\s+lean → paranoid\s+Switched to paranoid profile due to bot surge",
    r"dp/bot-detector\s+paranoid → balanced\s+Switched to balanced profile: every rule clear for 8s",
    r"mr/bot-classifier\s+neuroweaver-v3 → neuroweaver-v2\s+neuroweaver-v3 critical for 3 evaluations",
    r"mr/bot-classifier\s+neuroweaver-v2 → neuroweaver-v3\s+primary neuroweaver-v3 healthy for 6s: rolled",
]


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=2, verify=False, trust_env=False)
    except httpx.ConnectError:
        return True
    return False


@pytest.mark.timeout(420)
def test_demo_plays_the_scenario_and_tears_down(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = subprocess.run(
        [sys.executable, "-m", "detection_operator.demo", "--no-wait", "--state-dir", str(state)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    out = result.stdout
    assert result.returncode == 0, f"demo failed:\n{out}\n{result.stderr}"
    positions = []
    for pattern in SWITCHES:
        match = re.search(rf"^\+\d\d:\d\d  {pattern}", out, re.MULTILINE)
        assert match, f"no line matching {pattern!r} in:\n{out}"
        positions.append(match.start())
    assert positions == sorted(positions), f"switches out of order:\n{out}"
    phases = re.findall(r"▶ phase \d/6 ([a-z ]+):", out)
    assert phases == ["start", "latency spike", "bot surge", "calm", "model accuracy drop", "recovery"]
    assert "Scenario complete" in out
    # The pre-warm happens before the failover, and the failover alert reached the webhook receiver.
    assert re.search(r"BackupScaled: scaled Deployment neuroweaver-v2 to 2 \(pre-warm", out)
    assert re.search(r"Alerts received by platform-webhook .*model-switched firing", out)

    # Torn down: Prometheus and the apiserver no longer answer.
    prometheus = re.search(r"^Prometheus (http://127\.0\.0\.1:\d+) ", out, re.MULTILINE)
    assert prometheus, out
    kubeconfig = yaml.safe_load((state / "controlplane" / "kubeconfig").read_text())
    apiserver = kubeconfig["clusters"][0]["cluster"]["server"]
    assert refused(f"{prometheus[1]}/-/ready") and refused(f"{apiserver}/healthz")
