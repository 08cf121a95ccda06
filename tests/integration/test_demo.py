"""`make demo` end to end: the demo runner as a user starts it, on real parts, exiting after the scenario.

The demo brings its own control plane, Prometheus and operator (that is what it shows), so this test does
not use the shared fixtures; it checks the timeline the user sees and that nothing is left running.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# The switches of the scenario, in the order they must happen, with the operator's own reason text.
SWITCHES = [
    r"dp/bot-detector\s+balanced → lean\s+Switched to lean profile due to high latency: high-latency = \d+",
    # Still in the burst, lean's own latency clears the rule: only the stabilization window keeps lean.
    r"dp/bot-detector\s+held → lean held by stabilizationWindow rules clear, stabilizing before relaxing "
    r"to balanced \(high-latency = \d+(\.\d+)?,",
    r"dp/bot-detector\s+lean → balanced\s+Switched to balanced profile: every rule clear for 8s "
    r"\(from lean\)",
    r"dp/bot-detector\s+balanced → paranoid\s+Switched to paranoid profile due to bot surge",
    r"dp/bot-detector\s+paranoid → balanced\s+Switched to balanced profile: every rule clear for 8s",
    r"mr/bot-classifier\s+neuroweaver-v3 → neuroweaver-v2\s+neuroweaver-v3 failing for 3 evaluations: "
    r"no data for 3 evaluations while [\d.]+ req/s \(100 %\) were routed to it",
    r"mr/bot-classifier\s+traffic → neuroweaver-v3 20 % · neuroweaver-v2 80 %",
    r"mr/bot-classifier\s+neuroweaver-v2 → neuroweaver-v3\s+primary neuroweaver-v3 healthy for \d+s with "
    r"\d+ requests served under its trickle: rolled back",
    r"mr/bot-classifier\s+neuroweaver-v3 → neuroweaver-v2\s+neuroweaver-v3 failing",
    r"mr/bot-classifier\s+probation → neuroweaver-v3 trickle off\s+failed under its trickle 1 time\(s\)",
]
OBJECT = "(dp/bot-detector|mr/bot-classifier)"


def demo(state: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "detection_testing.demo", "--state-dir", str(state), *args]


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=2, verify=False, trust_env=False)
    except httpx.ConnectError:
        return True
    return False


def assert_torn_down(out: str, state: Path) -> None:
    """Prometheus and the apiserver the demo started no longer answer."""
    prometheus = re.search(r"^Prometheus (http://127\.0\.0\.1:\d+) ", out, re.MULTILINE)
    assert prometheus, out
    kubeconfig = yaml.safe_load((state / "controlplane" / "kubeconfig").read_text())
    apiserver = kubeconfig["clusters"][0]["cluster"]["server"]
    assert refused(f"{prometheus[1]}/-/ready") and refused(f"{apiserver}/healthz")


@pytest.mark.timeout(420)
def test_demo_plays_the_scenario_and_tears_down(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = subprocess.run(demo(state, "--no-wait"), cwd=REPO, capture_output=True, text=True, timeout=400)
    out = result.stdout
    assert result.returncode == 0, f"demo failed:\n{out}\n{result.stderr}"
    position = 0
    for pattern in SWITCHES:  # each after the one before: the order is part of the story
        match = re.compile(rf"^\+\d\d:\d\d  {pattern}", re.MULTILINE).search(out, position)
        assert match, f"no line matching {pattern!r} after the previous switch in:\n{out}"
        position = match.end()
    # While the stabilization window holds lean, no rule holds: high-latency cleared (below its 150 ms
    # clearThreshold) at an earlier evaluation, and the value shown with the hold may have risen since, up to
    # the 200 ms threshold (under load, lean's p95 reaches the 150 ms bucket edge). And the hold prevented
    # the flip back into the burst: lean was chosen once.
    held = re.search(r"lean held by stabilizationWindow .*\(high-latency = ([\d.]+),", out)
    assert held and float(held[1]) <= 200, out
    assert len(re.findall(r"dp/bot-detector\s+balanced → lean ", out)) == 1, out
    phases = re.findall(r"▶ phase \d+/10 ([a-z ]+):", out)
    assert phases == [
        "start",
        "load burst",
        "lean hides the burst",
        "burst over",
        "bot surge",
        "calm",
        "primary dies",
        "recovery through the trickle",
        "primary dies again",
        "failing under the trickle",
    ]
    assert "Scenario complete" in out
    # The pre-warm happens before the failover, and the failover alert reached the webhook receiver.
    assert re.search(
        r"BackupScaled: scaled Deployment neuroweaver-v2 to 2 \(pre-warm: neuroweaver-v3 is failing", out
    )
    alerts = re.search(r"^Alerts received by platform-webhook .*$", out, re.MULTILINE)
    assert alerts and "model-switched firing" in alerts[0] and "model-failure firing" in alerts[0], out
    # Idle backups and Prometheus answering raise nothing: no metric or availability alert at all.
    assert "metrics-unavailable" not in alerts[0] and "performance-degradation" not in alerts[0]
    served = re.search(r"^Requests the router sent, by the model that served them: (.*)$", out, re.MULTILINE)
    assert served and "neuroweaver-lite" not in served[1], out  # the second backup was never needed
    assert_torn_down(out, state)


@pytest.mark.timeout(300)
def test_a_switch_that_does_not_come_fails_the_demo_with_the_phase_and_state(tmp_path: Path) -> None:
    # One second per phase is too short for the scenario (the calm phase alone needs the 8 s window).
    state = tmp_path / "state"
    result = subprocess.run(
        demo(state, "--no-wait", "--phase-timeout", "1"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(
        rf"^demo failed: phase '[a-z ]+': {OBJECT} → \S+(, {OBJECT} → \S+)* did not happen within 1s\n"
        rf"  {OBJECT} is (not evaluated yet|\S+: .+)$",
        result.stderr,
        re.MULTILINE,
    ), result.stderr
    assert f"operator log: {state / 'operator.log'}" in result.stderr
    assert_torn_down(result.stdout, state)


@pytest.mark.timeout(300)
def test_ctrl_c_tears_everything_down(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(demo(state), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # the test's timeout bounds this if the demo hangs
        seen.append(line)
        if "▶ phase 1/" in line:
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted: everything is torn down" in err, "".join(seen) + out + err
    assert_torn_down("".join(seen) + out, state)
