"""Load: objects churned (created, edited, deleted) in cycles for a few minutes against one operator.

Each cycle creates `CYCLE` objects (half DetectionPolicies, half ModelRoutes), edits each once (a new
generation, so a re-evaluation), deletes them all, and waits until the garbage collector has removed every
owned ConfigMap. Cycles repeat until `RELIABILITY_CHURN_SECONDS` (default 180) have passed and at least
1,000 objects were churned. A leak would grow the operator's RSS, threads or open files from cycle to
cycle: the first cycle warms up, and the last must end close to it. The operator's log must hold no
traceback and no failed handler.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from detection_operator.act.outputs import MANAGED_BY, MANAGED_BY_LABEL
from detection_operator.api.base import GROUP, VERSION
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.report import Report
from detection_testing.specs import latency_policy, simple_route

CHURN_SECONDS = float(os.environ.get("RELIABILITY_CHURN_SECONDS", "180"))
MIN_OBJECTS = 1000
CYCLE = 250
WORKERS = 8
# Evaluations on create and edit only: the interval is the maximum, so the load is the churn itself.
POLICY = {k: v for k, v in latency_policy(interval="1h").items() if k != "alerts"}
ROUTE = simple_route(interval="1h")


def process_numbers(pid: int) -> dict[str, int]:
    """RSS (KiB), threads and open file descriptors of a process, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def owned_config_maps(core: client.CoreV1Api, namespace: str) -> int:
    selector = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
    return len(core.list_namespaced_config_map(namespace, label_selector=selector).items)


def run_cycle(objects: client.CustomObjectsApi, namespace: str, cycle: int, pool: ThreadPoolExecutor) -> None:
    """Create, edit and delete ``CYCLE`` objects, ``WORKERS`` requests at a time."""
    names = [(("detectionpolicies", "DetectionPolicy", POLICY), f"c{cycle}-p{i}") for i in range(CYCLE // 2)]
    names += [(("modelroutes", "ModelRoute", ROUTE), f"c{cycle}-r{i}") for i in range(CYCLE // 2)]

    def create(item: tuple[tuple[str, str, dict[str, Any]], str]) -> None:
        (plural, kind, spec), name = item
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)

    def edit(item: tuple[tuple[str, str, dict[str, Any]], str]) -> None:
        (plural, _, _), name = item
        patch = (
            {"spec": {"minDwell": "2s"}}
            if plural == "detectionpolicies"
            else {"spec": {"failureThreshold": 4}}
        )
        objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, patch)

    def delete(item: tuple[tuple[str, str, dict[str, Any]], str]) -> None:
        (plural, _, _), name = item
        objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)

    step: Callable[[tuple[tuple[str, str, dict[str, Any]], str]], None]
    for step in (create, edit, delete):
        list(pool.map(step, names))


@pytest.mark.timeout(CHURN_SECONDS + 600)
def test_churned_objects_leak_nothing_and_orphan_no_config_map(
    kube: client.ApiClient, namespace: str, operator: OperatorProcess, report: Report
) -> None:
    assert operator.pid is not None
    objects, core = client.CustomObjectsApi(kube), client.CoreV1Api(kube)
    samples = [process_numbers(operator.pid)]
    churned, cycle, started = 0, 0, time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        while cycle < 4 or churned < MIN_OBJECTS or time.monotonic() - started < CHURN_SECONDS:
            run_cycle(objects, namespace, cycle, pool)
            churned += CYCLE
            cycle += 1
            wait_for(
                lambda: owned_config_maps(core, namespace) == 0 or None,
                timeout=120,
                interval=1,
                what="no owned ConfigMap left after the deletes",
            )
            samples.append(process_numbers(operator.pid))
    elapsed = time.monotonic() - started
    assert operator.alive(), operator.log_tail()
    log = operator.log_file.read_text()
    assert "Traceback" not in log and "failed with an exception" not in log, operator.log_tail()

    # Warm after two cycles: the first ones grow the thread pool's stacks, the allocator's arenas to the
    # peak of a 250-object burst (a namespace's objects are evaluated together) and the query table.
    warm, last = samples[2], samples[-1]
    # A per-object leak of tens of KiB would add several MiB a cycle; allow 10 % over the warm state.
    assert last["rss_kib"] <= warm["rss_kib"] * 1.10, samples
    assert last["threads"] <= warm["threads"] + 4, samples
    assert last["fds"] <= warm["fds"] + 10, samples
    report.numbers["churn"] = {
        "objects": churned,
        "cycles": cycle,
        "seconds": round(elapsed),
        "rss_mib_start_then_after_each_cycle": [round(s["rss_kib"] / 1024, 1) for s in samples],
        "threads_start_warm_end": [s["threads"] for s in (samples[0], warm, last)],
        "fds_start_warm_end": [s["fds"] for s in (samples[0], warm, last)],
    }
    report.fault(
        f"load: {churned} objects created, edited, deleted in {cycle} cycles over {elapsed:.0f} s",
        "no growth in RSS/threads/fds after warm-up, no orphaned ConfigMap, no handler error",
        f"RSS {samples[0]['rss_kib'] / 1024:.0f} MiB at start, {warm['rss_kib'] / 1024:.0f} after cycle 2, "
        f"{last['rss_kib'] / 1024:.0f} at the end; threads {warm['threads']}->{last['threads']}, "
        f"fds {warm['fds']}->{last['fds']}; 0 owned ConfigMaps after each cycle; no traceback",
    )
