"""Reliability suite: faults, bad input, restarts and load on the real control plane and Prometheus.

Each test is marked `reliability`. What the tests observe (fault -> observed behaviour, fuzzed inputs,
churned objects, RSS) is collected in a report that pytest prints at the end of the run and writes to
`.cache/reliability/summary.md` (git-ignored), so the numbers can be quoted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from detection_testing.faultproxy import FaultProxy
from detection_testing.prometheus import PrometheusServer
from detection_testing.receiver import WebhookReceiver
from detection_testing.report import Report

REPO = Path(__file__).resolve().parents[2]
SUMMARY = REPO / ".cache" / "reliability" / "summary.md"
HOOK_KEY = "reliability-webhook-key"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.reliability)


_REPORT = pytest.StashKey[Report]()


@pytest.fixture(scope="session")
def report(request: pytest.FixtureRequest) -> Report:
    return request.config.stash.setdefault(_REPORT, Report())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    found = config.stash.get(_REPORT, None)
    if found is None or not (found.rows or found.numbers):
        return
    text = found.markdown()
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(text)
    terminalreporter.write_sep("-", f"reliability report (also in {SUMMARY.relative_to(REPO)})")
    terminalreporter.write(text)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as hook:
        yield hook


@pytest.fixture
def proxy(prometheus: PrometheusServer) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's real Prometheus; the operator's Prometheus URL."""
    with FaultProxy(prometheus.url) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def receivers_file(receiver: WebhookReceiver, tmp_path: Path) -> Path:
    """The operator's receivers file: one signed webhook named ``hook`` (quick retries)."""
    config = {
        "allowedHosts": ["127.0.0.1"],
        "receivers": [
            {
                "name": "hook",
                "type": "webhook",
                "url": receiver.url + "/hook",
                "hmacKey": HOOK_KEY,
                "timeoutSeconds": 1,
                "attempts": 3,
            }
        ],
    }
    path = tmp_path / "receivers.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture
def operator_env(proxy: FaultProxy, receivers_file: Path) -> dict[str, str]:
    return {
        "DETECTION_OPERATOR_PROMETHEUS_URL": proxy.url,
        "DETECTION_OPERATOR_RECEIVERS_FILE": str(receivers_file),
    }
