"""Active-active replicas: the same objects at a 10 s interval evaluated by 1, 2 and 3 operator processes.

Each run starts fresh replicas (default 12 buckets, default Lease timings 15 / 10 / 2 s), waits until the
buckets have spread and every object has been evaluated, then measures a window: each replica's cores
(from /proc), evaluations/s of all replicas together, schedule lag p50/p95 (the replicas' histograms
summed). Then it SIGKILLs the replica holding the most load and times until the survivors hold every
bucket Lease (the bound: lease duration + retry period). Double evaluations are counted from the replicas'
JSON logs (a line per status write, DETECTION_OPERATOR_LOG_WRITES; see detection_testing.ownership).

Before them, one replica alone on 1/N of the objects for each N: what the busiest of N replicas would
cost if holding its share were all it did, the part of the gap to 1/N that is one process's own cost.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from detection_operator.runtime.buckets import settled, weights
from detection_operator.runtime.settings import LeaderElection
from detection_testing import ownership
from detection_testing.operator_process import OperatorProcess

from .harness import Stack, real_stack
from .scale import (
    INTERVAL_S,
    PER_NAMESPACE,
    Samples,
    _cpu_seconds,
    _histogram_quantile,
    _scrape,
    _total,
    create,
    feed_contributors,
)
from .scale import _evaluated as evaluated

OBJECTS = 600
"""Fewer than the issue's example 1,000: on this shared machine a list of 1,000 objects times out."""
ELECTION = LeaderElection()
LEASE_NAMESPACE = "default"
TAKEOVER_BOUND = ELECTION.lease_duration + ELECTION.retry_period


@dataclass(frozen=True)
class Run:
    """What one replica count measured."""

    replicas: int
    objects: int
    cores: list[float]
    achieved_per_s: float
    lag_p50_s: float
    lag_p95_s: float
    takeover_s: float | None
    settled_s: float | None
    doubles: int
    writes: int

    def row(self, baseline: float, alone: float | None = None) -> str:
        """A RESULTS.md table row; ``baseline`` is one replica's cores on every object, ``alone`` one
        replica's on 1/N of them."""
        cores = " / ".join(f"{c:.3f}" for c in self.cores)
        ideal = self.objects / OBJECTS / self.replicas
        # Before one replica on every object has run (the progress lines of the runs alone), no ratio.
        share = f"{max(self.cores) / baseline:.2f}" if baseline else "-"
        of_alone = f"{max(self.cores) / alone:.2f}" if alone else "-"
        who = f"{self.replicas}" if self.objects == OBJECTS else f"1 alone on {self.objects}"
        takeover = f"{self.takeover_s:.1f} s" if self.takeover_s is not None else "-"
        settled = f"{self.settled_s:.1f} s" if self.settled_s is not None else "-"
        per_evaluation = sum(self.cores) / self.achieved_per_s * 1e3 if self.achieved_per_s else float("nan")
        return (
            f"| {who} | {cores} | {share} (ideal {ideal:.2f}) | "
            f"{of_alone} | {per_evaluation:.1f} ms | "
            f"{self.achieved_per_s:.1f} / {self.objects / INTERVAL_S:.1f} | {self.lag_p50_s * 1e3:.0f} ms | "
            f"{self.lag_p95_s * 1e3:.0f} ms | {takeover} | {settled} | "
            f"{self.doubles} of {self.writes} writes |"
        )


def _holders(api: client.ApiClient) -> dict[int, str | None]:
    """Each existing bucket Lease's holder, by bucket index."""
    try:
        leases = client.CoordinationV1Api(api).list_namespaced_lease(LEASE_NAMESPACE).items
    except ApiException:
        return {}
    index = {name: i for i, name in enumerate(ELECTION.bucket_leases())}
    return {
        index[le.metadata.name]: le.spec.holder_identity or None for le in leases if le.metadata.name in index
    }


def _wait(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout:.0f} s")
        time.sleep(interval)


def _evaluated(api: client.ApiClient) -> int:
    """Objects with a status, or 0 when the apiserver is too busy to answer this poll."""
    try:
        return evaluated(api)
    except ApiException:
        return 0


def _weights(objects: int) -> tuple[int, ...]:
    """What each bucket weighs to the replicas: every namespace's objects at the benchmark's interval."""
    return weights(
        {f"scale-{n}": PER_NAMESPACE * 3600 / INTERVAL_S for n in range(-(-objects // PER_NAMESPACE))},
        ELECTION.buckets,
    )


def _taken_over(api: client.ApiClient, survivors: list[str]) -> bool:
    holders = _holders(api)
    return len(holders) == ELECTION.buckets and set(holders.values()) <= set(survivors)


def _spread(api: client.ApiClient, names: list[str], weighed: tuple[int, ...]) -> bool:
    holders = _holders(api)
    return len(holders) == ELECTION.buckets and settled(holders, weighed, names)


def _sum(samples: list[Samples]) -> Samples:
    total: Samples = {}
    for s in samples:
        for key, value in s.items():
            total[key] = total.get(key, 0.0) + value
    return total


def measure(
    stack: Stack, workdir: Path, replicas: int, window: float, settle: float, objects: int = OBJECTS
) -> Run:
    """Start ``replicas`` operators on the first ``objects`` objects (all created), measure the window,
    SIGKILL one, count double evaluations."""
    names = [f"replicas{replicas}-{i}-of-{objects}" for i in range(replicas)]
    weighed = _weights(objects)
    env = {
        "DETECTION_OPERATOR_PROMETHEUS_URL": stack.prometheus.url,
        "DETECTION_OPERATOR_LEASE_NAMESPACE": LEASE_NAMESPACE,
        "DETECTION_OPERATOR_LOG_WRITES": "true",
        "DETECTION_OPERATOR_STATUS_REFRESH_SECONDS": "60",
    }
    processes = {
        n: OperatorProcess(
            stack.plane.kubeconfig,
            workdir / f"{n}.log",
            env=env,
            pod_name=n,
            log_format="json",
            verbose=False,
        )
        for n in names
    }
    try:
        for process in processes.values():
            process.start()
        _wait(lambda: _spread(stack.api, names, weighed), 120, f"buckets spread over {replicas} replica(s)")
        started = time.time()
        _wait(lambda: _evaluated(stack.api) >= objects, 900, f"{objects} objects evaluated", interval=5)
        # Evaluated by these replicas, not only by the previous run's: every object's due once more.
        time.sleep(settle)  # let the start-up burst leave the window
        urls = {n: f"{p.url}/metrics" for n, p in processes.items()}
        pids = {n: p.pid or 0 for n, p in processes.items()}
        before = {n: _scrape(u) for n, u in urls.items()}
        cpu_before = {n: _cpu_seconds(pid) for n, pid in pids.items()}
        t0 = time.monotonic()
        time.sleep(window)  # a measurement window, not a wait for a condition
        elapsed = time.monotonic() - t0
        after = {n: _scrape(u) for n, u in urls.items()}
        cores = [(_cpu_seconds(pids[n]) - cpu_before[n]) / elapsed for n in names]
        merged_before, merged_after = _sum(list(before.values())), _sum(list(after.values()))
        evaluations = _total(merged_after, "detection_operator_evaluations_total") - _total(
            merged_before, "detection_operator_evaluations_total"
        )
        lag = "detection_operator_schedule_lag_seconds"
        takeover: float | None = None
        settled_after: float | None = None
        if replicas > 1:
            loads: Counter[str | None] = Counter()
            for i, holder in _holders(stack.api).items():
                loads[holder] += weighed[i]
            victim = max(names, key=lambda n: loads.get(n, 0))
            killed_at = time.monotonic()
            processes[victim].kill()
            survivors = [n for n in names if n != victim]
            _wait(
                lambda: _taken_over(stack.api, survivors),
                TAKEOVER_BOUND + 60,
                "the survivors holding every bucket",
            )
            takeover = time.monotonic() - killed_at
            # Then their placement settles by load (a bucket may move once more between them).
            _wait(lambda: _spread(stack.api, survivors, weighed), 60, "the survivors' placement settling")
            settled_after = time.monotonic() - killed_at
            # Let the survivors evaluate the victim's objects before the logs are read.
            time.sleep(INTERVAL_S)
        found = ownership.read({n: p.log_file for n, p in processes.items()}, ELECTION.buckets)
        writes = [w for w in found.writes if w.at >= started]
        return Run(
            replicas=replicas,
            objects=objects,
            cores=cores,
            achieved_per_s=evaluations / elapsed,
            lag_p50_s=_histogram_quantile(merged_before, merged_after, lag, 0.5),
            lag_p95_s=_histogram_quantile(merged_before, merged_after, lag, 0.95),
            takeover_s=takeover,
            settled_s=settled_after,
            doubles=found.double_evaluations(),
            writes=len(writes),
        )
    finally:
        for process in processes.values():
            process.stop()


def section(workdir: Path, counts: tuple[int, ...] = (1, 2, 3), window: float = 60.0) -> list[str]:
    """RESULTS.md lines for the active-active benchmark."""
    alone: dict[int, Run] = {}
    runs = []
    with real_stack(workdir) as stack:
        feed_contributors(stack.exporter)
        created = 0
        for objects, n in sorted((OBJECTS // n, n) for n in counts if n > 1):
            create(stack.api, stack.exporter, created, objects)
            created = objects
            alone[n] = measure(stack, workdir, 1, window, settle=2 * INTERVAL_S, objects=objects)
            print(alone[n].row(0.0), flush=True)
        create(stack.api, stack.exporter, created, OBJECTS)
        for replicas in counts:
            run = measure(stack, workdir, replicas, window, settle=2 * INTERVAL_S)
            baseline = runs[0].cores[0] if runs else run.cores[0]
            print(run.row(baseline, alone[replicas].cores[0] if replicas in alone else None), flush=True)
            runs.append(run)
    baseline = runs[0].cores[0]
    timings = f"{ELECTION.lease_duration:g} / {ELECTION.renew_deadline:g} / {ELECTION.retry_period:g}"
    return [
        f"## Active-active replicas: {OBJECTS:,} objects at a 10 s interval, 1 / 2 / 3 replicas",
        "",
        f"The scale benchmark's objects ({OBJECTS // 20} namespaces of 20), status refresh 60 s, default",
        f"{ELECTION.buckets} buckets and Lease timings ({timings} s). Cores per replica from /proc over a",
        f"{window:.0f} s window after every object was evaluated; lag from the replicas' summed",
        "`schedule_lag_seconds` histograms. Takeover: SIGKILL of the replica holding the most load",
        "until the survivors hold every bucket Lease; settled: until their placement by load is at rest",
        f"(goal: <= lease duration + retry period = {TAKEOVER_BOUND:g} s). Double evaluations: status",
        "writes of an object made inside another replica's tenure of its bucket, or by a replica not",
        "holding it, from every replica's log over the whole run (goal: 0). First, one replica alone on the",
        "first 1/N of the objects (created before the rest): the busiest of N replicas against it is what",
        "being one of N costs on top of holding a share. This machine has 2 cores and is shared with the",
        "apiserver, etcd and Prometheus: the replicas compete for the same 2 cores, so cores per replica is",
        "the figure that matters, not lag.",
        "",
        "| replicas | cores per replica | busiest / one replica | busiest / one alone on 1/N "
        "| CPU per evaluation (all replicas) | evaluations/s achieved / expected | lag p50 | lag p95 "
        "| takeover after SIGKILL | settled by load | double evaluations |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(run.row(baseline) for _, run in sorted(alone.items(), reverse=True)),
        *(run.row(baseline, alone[run.replicas].cores[0] if run.replicas in alone else None) for run in runs),
        "",
    ]
