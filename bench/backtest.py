"""Backtest speed: 7 days at a 30 s step for one policy with 4 rules (20,160 evaluations).

History is backfilled into a real Prometheus with ``promtool tsdb create-blocks-from openmetrics``, so the
range queries are real; query time and replay time are reported apart.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import yaml

from detection_operator.tools import backtest
from detection_operator.tools.documents import Document
from detection_testing.prometheus import PrometheusServer

from .policy import benchmark_spec

DAYS = 7
STEP = 30


def _backfill(workdir: Path, end: int) -> Path:
    """Write 7 days of the 4 rule metrics (a sample every 15 s) as TSDB blocks."""
    lines = []
    for metric, base in (
        ("bench_latency_ms", 120),
        ("bench_cpu", 0.5),
        ("bench_memory", 0.5),
        ("bench_flagged", 0.1),
    ):
        lines.append(f"# TYPE {metric} gauge")
        for ts in range(end - DAYS * 86400, end + 1, 15):
            # A spike every 6 hours so the replay has switches to find.
            value = base * (3 if (ts // 3600) % 6 == 0 and (ts // 60) % 60 < 20 else 1)
            lines.append(f'{metric}{{namespace="bench"}} {value} {ts}')
    lines.append("# EOF")
    source = workdir / "history.om"
    source.write_text("\n".join(lines) + "\n")
    data = workdir / "prometheus" / "data"
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        check=True,
        capture_output=True,
    )
    return data


def backtest_speed(workdir: Path) -> tuple[float, float, int, int]:
    """(Prometheus seconds, replay seconds, evaluations, switches) for the reference 4-rule policy."""
    end = int(time.time()) // STEP * STEP - 3600
    _backfill(workdir, end)
    body = {
        "apiVersion": "detection.adaptive.io/v1alpha1",
        "kind": "DetectionPolicy",
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": benchmark_spec(expense=None, externalContributors=None),
    }
    # Keep blocks from the backfill: no retention cut-off inside the 7 days.
    with PrometheusServer(
        workdir / "prometheus", targets=[], extra_flags=["--storage.tsdb.retention.time=30d"]
    ) as prom:
        doc = Document("bench", 1, yaml.safe_load(yaml.safe_dump(body)))
        timeline = backtest.backtest_document(doc, prom.url, DAYS * 86400, STEP, until=float(end))
    return timeline.query_seconds, timeline.replay_seconds, timeline.evaluations, len(timeline.switches)
