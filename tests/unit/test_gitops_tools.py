"""validate and backtest's replay, without a cluster (replay is pure over given series)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from detection_operator.api.detection_policy import DetectionPolicySpec
from detection_operator.observe.source import Missing, Value
from detection_operator.tools import backtest, validate
from detection_testing.documents import edited

REPO = Path(__file__).resolve().parents[2]
MALFORMED: list[dict[str, Any]] = yaml.safe_load((REPO / "tests/data/malformed.yaml").read_text())


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "detection_operator", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_examples_directory_is_valid() -> None:
    result = cli("validate", str(REPO / "examples"))
    assert result.returncode == 0 and "3 object(s) checked" in result.stdout


@pytest.mark.parametrize("case", MALFORMED, ids=lambda c: c["name"])
def test_every_malformed_case_is_reported_with_file_document_and_field(
    case: dict[str, Any], tmp_path: Path
) -> None:
    doc = edited(yaml.safe_load((REPO / case["base"]).read_text()), case.get("set"), case.get("delete", ()))
    path = tmp_path / "bad.yaml"
    path.write_text("kind: ConfigMap\napiVersion: v1\n---\n" + yaml.safe_dump(doc))
    report = validate.validate([str(path)])
    assert not report.ok and report.checked == 1 and report.skipped == 1
    finding = report.findings[0]
    assert finding.document == 2 and finding.file == str(path)
    assert any(f.field.startswith(case["field"]) for f in report.findings), report.findings


def test_exit_codes_json_and_stdin() -> None:
    bad = yaml.safe_dump(
        edited(yaml.safe_load((REPO / "examples/model-route.yaml").read_text()), {"spec.minRequests": -1})
    )
    result = cli("validate", "-", "--output", "json", stdin=bad)
    assert result.returncode == 1
    body = json.loads(result.stdout)
    assert body["ok"] is False and body["findings"][0]["field"] == "spec.minRequests"
    assert cli("validate", "/no/such/file").returncode == 2
    assert cli("validate", "-", stdin="a: [unclosed").returncode == 1  # a finding, not an unreadable file
    assert cli("validate", "-", stdin="kind: ConfigMap\n").returncode == 1  # nothing of ours to check


SPEC = DetectionPolicySpec.model_validate(
    {
        "defaultProfile": "balanced",
        "minDwell": "0s",
        "stabilizationWindow": "60s",
        "profiles": [{"name": "lean"}, {"name": "balanced"}],
        "rules": [
            {
                "name": "latency",
                "query": "q",
                "op": ">",
                "threshold": 200,
                "profile": "lean",
                "reason": "high latency",
            }
        ],
    }
)


def test_replay_switches_time_shares_and_missing_samples() -> None:
    values = {float(t): Value(300.0 if 600 <= t < 1200 else 100.0) for t in range(0, 3600, 30)}
    del values[1800.0]  # a gap in the data is unknown, never 0
    series = {("rule", "latency"): values}
    timeline = backtest.replay(SPEC, "DetectionPolicy", "ns", "p", series, 0, 3570, 30)
    assert [(s.previous, s.current) for s in timeline.switches] == [
        (None, "balanced"),
        ("balanced", "lean"),
        ("lean", "balanced"),
    ]
    assert timeline.switches[2].at == "1970-01-01T00:21:00Z"  # cleared at 1200 s, relaxed 60 s later
    assert timeline.evaluations == 120
    assert timeline.share()["lean"] == pytest.approx(660 / 3600)
    assert (
        timeline.alerts["firing:metrics-unavailable"] == 1
        and timeline.alerts["resolved:metrics-unavailable"] == 1
    )
    text = backtest.render(timeline, "text")
    assert "balanced -> lean" in text and "Switches: 3" in text


def test_many_series_in_history_is_unknown() -> None:
    reading = backtest.normalise([{"value": [0, "1"]}, {"value": [0, "2"]}])
    assert isinstance(reading, Missing) and reading.cause == "many-series"


@pytest.mark.parametrize(("text", "seconds"), [("7d", 604800), ("12h", 43200), ("90m", 5400), ("30s", 30)])
def test_parse_since(text: str, seconds: float) -> None:
    assert backtest.parse_since(text) == seconds
