"""The standalone model server: stdlib only, reports only what it served, fails and slows on command."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from detection_testing import model_server
from detection_testing.exporter import parse_sample_line

SCRIPT = Path(model_server.__file__)


def test_imports_only_the_standard_library() -> None:
    tree = ast.parse(SCRIPT.read_text())
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert imported - {"__future__"} <= sys.stdlib_module_names


def test_spread_gives_exact_shares() -> None:
    spread = model_server.Spread()
    assert [spread.take(0.25) for _ in range(8)] == [False, False, False, True] * 2
    assert not any(model_server.Spread().take(0.0) for _ in range(10))


@pytest.fixture
def server() -> Iterator[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            str(SCRIPT),
            "--port",
            "0",
            "--model",
            "m1",
            "--namespace",
            "ns",
            "--latency-ms",
            "1",
            "--accuracy",
            "0.5",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening "), line
        yield f"http://127.0.0.1:{line.rsplit(':', 1)[1].strip()}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post(url: str, body: object) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _series(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = _get(f"{url}/metrics")
    assert status == 200
    result = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, labels, value = parse_sample_line(line)
            assert value is not None
            result[(name, tuple(sorted(labels.items())))] = value
    return result


def test_reports_nothing_before_the_first_request(server: str) -> None:
    assert _series(server) == {}
    assert _get(f"{server}/healthz")[0] == 200


def test_counts_served_requests_and_fails_on_command(server: str) -> None:
    for _ in range(4):
        assert _post(f"{server}/infer", {})[0] == 200
    assert _post(f"{server}/control", {"errorShare": 0.5})[0] == 200
    assert [_post(f"{server}/infer", {})[0] for _ in range(4)] == [200, 503, 200, 503]
    series = _series(server)
    labels = (("model", "m1"), ("namespace", "ns"))
    assert series[("neuroweaver_requests_total", (*labels, ("outcome", "success")))] == 6
    assert series[("neuroweaver_requests_total", (*labels, ("outcome", "error")))] == 2
    assert series[("neuroweaver_request_duration_seconds_count", labels)] == 8
    assert series[("neuroweaver_accuracy_ratio", labels)] == 0.5
    assert series[("neuroweaver_cost_total", labels)] == pytest.approx(6 * 0.002)


def test_control_rejects_unknown_or_mistyped_settings(server: str) -> None:
    status, body = _post(f"{server}/control", {"latency": 5})
    assert status == 400 and b"unknown settings ['latency']" in body
    assert _post(f"{server}/control", {"ready": "yes"})[0] == 400
    assert _post(f"{server}/control", {"ready": False})[0] == 200
    assert _get(f"{server}/healthz")[0] == 503
