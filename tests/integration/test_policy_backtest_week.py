"""A week of production-like history, backfilled into a real Prometheus, replayed with a burn-rate rule.

The history is written as OpenMetrics and turned into TSDB blocks by `promtool tsdb
create-blocks-from openmetrics` (Prometheus' own backfill), so `backtest` reads it through range queries
exactly as it reads a production server. The week holds a diurnal request rate, a 99.95 % baseline, a
fast burn (40 min at 3 % errors: the 14.4x pair), a slow burn (8 h at 0.9 %: the 6x pair), a 3-minute
spike that neither pair may act on, and a night without traffic (counters that stop growing).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from detection_operator.api.base import GROUP, VERSION
from detection_testing.prometheus import PrometheusServer

DAY, HOUR, MINUTE = 86400, 3600, 60
FAST_BURN = (1 * DAY + 10 * HOUR, 40 * MINUTE, 0.03)
SLOW_BURN = (4 * DAY + 12 * HOUR, 8 * HOUR, 0.009)
SPIKE = (6 * DAY + 15 * HOUR, 3 * MINUTE, 0.05)
NO_TRAFFIC = (3 * DAY + 2 * HOUR, 4 * HOUR)
BASELINE = 0.0005


def error_share(offset: int) -> float:
    for start, length, share in (FAST_BURN, SLOW_BURN, SPIKE):
        if start <= offset < start + length:
            return share
    return BASELINE


def request_rate(offset: int) -> float:
    start, length = NO_TRAFFIC
    if start <= offset < start + length:
        return 0.0
    return 100 + 50 * math.sin(2 * math.pi * offset / DAY)


def openmetrics(start: int, seconds: int, step: int = MINUTE) -> str:
    """Counters of one detector over ``seconds`` from Unix time ``start``, a sample per ``step``."""
    requests = errors = 0.0
    lines_requests, lines_errors = [], []
    labels = '{namespace="history"}'
    for offset in range(0, seconds + 1, step):
        served = request_rate(offset) * step
        requests += served
        errors += served * error_share(offset)
        lines_requests.append(f"week_requests_total{labels} {requests:.3f} {start + offset}")
        lines_errors.append(f"week_errors_total{labels} {errors:.3f} {start + offset}")
    return "\n".join(
        [
            "# TYPE week_requests counter",
            *lines_requests,
            "# TYPE week_errors counter",
            *lines_errors,
            "# EOF",
            "",
        ]
    )


def policy() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DetectionPolicy",
        "metadata": {"name": "slo-week", "namespace": "history"},
        "spec": {
            "interval": "30s",
            "defaultProfile": "balanced",
            "profiles": [{"name": "lean"}, {"name": "balanced"}],
            "rules": [
                {
                    "name": "error-budget",
                    "burnRate": {
                        "objective": 0.999,
                        "period": "30d",
                        "errors": 'sum(rate(week_errors_total{namespace="$namespace"}[$window]))',
                        "total": 'sum(rate(week_requests_total{namespace="$namespace"}[$window]))',
                    },
                    "profile": "lean",
                    "reason": "error budget burning",
                }
            ],
        },
    }


@pytest.fixture
def history(tmp_path: Path) -> tuple[PrometheusServer, int]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: Debian's prometheus package ships it (make deps installs it)")
    # Eight days, so the week replayed has full windows from its first evaluation; ends an hour ago.
    end = (int(time.time()) // HOUR - 1) * HOUR
    start = end - 8 * DAY
    source = tmp_path / "week.om"
    source.write_text(openmetrics(start, 8 * DAY))
    server = PrometheusServer(tmp_path / "prometheus", targets=[])
    server.data_path.mkdir(parents=True)
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(server.data_path)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return server, end


def test_a_week_with_a_burn_rate_rule_switches_on_the_two_burns_only(
    history: tuple[PrometheusServer, int], tmp_path: Path
) -> None:
    server, end = history
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy()))
    with server:
        server.wait_for_series('count_over_time(week_requests_total{namespace="history"}[9d])', timeout=60)
        started = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "detection_operator",
                "backtest",
                str(path),
                "--prometheus",
                server.url,
                "--since",
                "7d",
                "--until",
                str(end),
                "--step",
                "1m",
                "--output",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        wall = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    timeline = json.loads(result.stdout)
    switches = [(s["previous"], s["current"]) for s in timeline["switches"]]
    assert switches == [
        (None, "balanced"),
        ("balanced", "lean"),  # the fast burn
        ("lean", "balanced"),
        ("balanced", "lean"),  # the slow burn
        ("lean", "balanced"),
    ], timeline["switches"]
    fast_at = datetime.strptime(timeline["switches"][1]["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    fast_start = end - 8 * DAY + FAST_BURN[0]  # offsets are from the start of the generated history
    # The 1h window passes 14.4x after ~29 min of a 30x burn (the 5m one after a minute).
    assert fast_start + 20 * MINUTE <= fast_at.timestamp() <= fast_start + 35 * MINUTE
    assert timeline["evaluations"] == 7 * DAY // MINUTE + 1
    print(  # the numbers of the closing note: pytest -s shows them
        f"\nweek backtest: {timeline['evaluations']} evaluations, {len(switches)} switches, "
        f"Prometheus {timeline['query_seconds']:.2f} s, replay {timeline['replay_seconds']:.2f} s, "
        f"command {wall:.2f} s; lean {timeline['share'].get('lean', 0):.2%} of the week"
    )
