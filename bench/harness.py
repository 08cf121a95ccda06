"""Shared benchmark plumbing: timing statistics and the RESULTS.md writer (machine, date, commit)."""

from __future__ import annotations

import os
import platform
import queue
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from kubernetes import client, watch

from detection_testing.controlplane import LocalControlPlane
from detection_testing.exporter import MetricExporter
from detection_testing.kube import api_client, install_crds
from detection_testing.prometheus import PrometheusServer

RESULTS = Path(__file__).with_name("RESULTS.md")
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Stats:
    """Summary of a sample of durations (seconds)."""

    n: int
    median: float
    p90: float
    p99: float
    minimum: float
    maximum: float

    @classmethod
    def of(cls, samples: list[float]) -> Stats:
        ordered = sorted(samples)

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]

        return cls(len(ordered), statistics.median(ordered), pct(0.9), pct(0.99), ordered[0], ordered[-1])

    def row(self, unit: str = "ms") -> str:
        scale = {"ms": 1e3, "µs": 1e6, "s": 1.0}[unit]
        values = (self.median, self.p90, self.p99, self.minimum, self.maximum)
        return " | ".join(f"{v * scale:.3g} {unit}" for v in values) + f" | {self.n}"


def machine() -> str:
    """One line describing where the numbers were taken."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    python = platform.python_version()
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Python {python}"


def commit() -> str:
    """The commit benchmarked (with '+dirty' when the work tree has changes)."""
    root = Path(__file__).resolve().parents[1]
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout
    return sha.strip() + ("+dirty" if dirty.strip() else "")


def write_results(sections: list[str]) -> None:
    """Replace bench/RESULTS.md with this run's sections."""
    header = [
        "# Benchmark results",
        "",
        "Written by `make bench`; numbers from one run on a shared, noisy machine: compare medians and",
        "ratios within a run, not across runs.",
        "",
        f"- Machine: {machine()}",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Commit: {commit()}",
        "",
    ]
    RESULTS.write_text("\n".join(header + sections) + "\n")


class Seen(NamedTuple):
    """One ConfigMap event as a watch delivered it."""

    at: float
    """time.perf_counter() on arrival."""
    name: str
    """The ConfigMap's name."""
    text: str
    """The value of the watched key."""


def watch_config_map_key(
    api: client.ApiClient,
    namespace: str,
    key: str,
    seen: queue.Queue[Seen],
    stop: threading.Event,
) -> None:
    """Put a Seen on ``seen`` for each ConfigMap event in ``namespace`` carrying ``key``."""
    w = watch.Watch()
    for event in w.stream(client.CoreV1Api(api).list_namespaced_config_map, namespace, timeout_seconds=3600):
        if stop.is_set():
            w.stop()
            return
        text = (event["object"].data or {}).get(key)
        if text:
            seen.put(Seen(time.perf_counter(), event["object"].metadata.name, text))


@dataclass
class Stack:
    """The real parts a benchmark runs against, CRDs installed."""

    plane: LocalControlPlane
    exporter: MetricExporter
    prometheus: PrometheusServer
    api: client.ApiClient


@contextmanager
def control_plane(workdir: Path) -> Iterator[tuple[LocalControlPlane, client.ApiClient]]:
    """Local control plane with the CRDs installed, and an API client; stopped after."""
    with LocalControlPlane(workdir / "controlplane") as plane:
        api = api_client(plane.kubeconfig)
        try:
            install_crds(api, REPO / "crds")
            yield plane, api
        finally:
            api.close()


@contextmanager
def real_stack(workdir: Path) -> Iterator[Stack]:
    """Local control plane, an exporter, Prometheus scraping it, and an API client; all stopped after."""
    with (
        control_plane(workdir) as (plane, api),
        MetricExporter() as exporter,
        PrometheusServer(workdir / "prometheus", targets=[exporter.target]) as prom,
    ):
        yield Stack(plane, exporter, prom, api)


def create_namespace(api: client.ApiClient, name: str) -> None:
    """Create a namespace for one benchmark."""
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
