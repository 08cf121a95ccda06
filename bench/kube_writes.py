"""The Kubernetes client's cost per write on the evaluation's hot path (status, ConfigMap apply, Event).

CPU seconds of this process per call (the client's own work: serialising the body, urllib3, decoding the
answer), and wall time per call, against the real apiserver, with and without decoding the answer. The
status write, the one on every evaluation's path, both ways the operator could make it: the Kubernetes
client in a worker thread awaited from the event loop (the operator before), and `act/status_client.py`'s
aiohttp session on the loop, in alternating rounds; the status is one a real evaluation of the scale
benchmark's policy wrote (policy_status.json).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client

from detection_operator.act import kube
from detection_operator.act.status_client import StatusClient
from detection_operator.api.base import GROUP, VERSION
from detection_operator.core.identity import ObjectRef
from detection_testing.specs import latency_policy

from .harness import control_plane, create_namespace

CALLS = 200
ROUNDS = 5
STATUS: dict[str, Any] = json.loads(Path(__file__).with_name("policy_status.json").read_text())


def _per_call(call: Callable[[int], object], calls: int = CALLS) -> tuple[float, float]:
    call(-1)  # warm the connection
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(calls):
        call(i)
    return (time.process_time() - cpu) / calls, (time.perf_counter() - wall) / calls


def _per_call_async(
    call: Callable[[int], Awaitable[object]],
    calls: int = CALLS,
    close: Callable[[], Awaitable[None]] | None = None,
) -> tuple[float, float]:
    """:func:`_per_call` of a coroutine, on a new event loop; ``close`` is awaited on it at the end."""

    async def run() -> tuple[float, float]:
        try:
            await call(-1)  # warm the connection
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(calls):
                await call(i)
            return (time.process_time() - cpu) / calls, (time.perf_counter() - wall) / calls
        finally:
            if close is not None:
                await close()

    return asyncio.run(run())


def _status_writes(api: client.ApiClient, ref: ObjectRef) -> list[tuple[str, float, float]]:
    """Both status writes, median of alternating rounds."""
    custom = client.CustomObjectsApi(api)
    pool = ThreadPoolExecutor(max_workers=4)
    patch = [{"op": "add", "path": "/status", "value": STATUS}]

    def write_with_client() -> object:
        return custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, ref.namespace, "detectionpolicies", ref.name, patch,
            _content_type="application/json-patch+json",
        )  # fmt: skip

    async def threaded(_: int) -> object:
        return await asyncio.get_running_loop().run_in_executor(pool, write_with_client)

    def on_loop() -> tuple[float, float]:
        writer = StatusClient(api.configuration, 4, 30.0)
        return _per_call_async(lambda _: writer.write_status(ref, STATUS), close=writer.aclose)

    rounds: dict[str, list[tuple[float, float]]] = {"client": [], "loop": []}
    try:
        for _ in range(ROUNDS):
            rounds["client"].append(_per_call_async(threaded))
            rounds["loop"].append(on_loop())
    finally:
        pool.shutdown()

    def median(key: str) -> tuple[float, float]:
        return statistics.median(c for c, _ in rounds[key]), statistics.median(w for _, w in rounds[key])

    return [
        ("status write, Kubernetes client in a worker thread (before)", *median("client")),
        ("status write, act/status_client.py on the event loop", *median("loop")),
    ]


def measure(workdir: Path) -> list[tuple[str, float, float]]:
    """(what, CPU s per call, wall s per call) for each write, with the answer decoded and without."""
    with control_plane(workdir) as (_plane, api):
        namespace = "kube-writes"
        create_namespace(api, namespace)
        custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DetectionPolicy",
            "metadata": {"name": "p"},
            "spec": latency_policy(),
        }
        created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "detectionpolicies", body)
        ref = ObjectRef("DetectionPolicy", namespace, "p", created["metadata"]["uid"])
        data = {"profile.json": '{"profile": "balanced", "revision": 1}' * 20}

        def apply(i: int, decode: bool = True) -> object:
            manifest = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "p-out", "namespace": namespace, "annotations": {"r": str(i)}},
                "data": data,
            }
            answer = core.patch_namespaced_config_map(
                "p-out",
                namespace,
                manifest,
                field_manager=kube.FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
                _preload_content=decode,
            )
            if not decode:
                answer.read()
                answer.release_conn()
            return answer

        rows = [
            *_status_writes(api, ref),
            (
                "ConfigMap apply (act/kube.py: answer decoded to V1ConfigMap)",
                *_per_call(lambda i: kube.apply_config_map(api, ref, "p-out", data, {"r": str(i)})),
            ),
            ("the same apply, answer not decoded", *_per_call(lambda i: apply(i, decode=False))),
            (
                "Event (answer decoded to CoreV1Event)",
                *_per_call(lambda i: kube.post_event(api, ref, "Normal", "Bench", f"m{i}", "bench"), 100),
            ),
        ]
        return rows


def section(workdir: Path) -> list[str]:
    """RESULTS.md lines."""
    rows = measure(workdir)
    return [
        "## Kubernetes writes: the client's cost per call",
        "",
        f"{CALLS} sequential calls each against the real apiserver on loopback; CPU = this process's CPU",
        "time per call (the client: body serialisation, HTTP, decoding the answer), wall = per call",
        f"including the apiserver. Status writes: a {len(json.dumps(STATUS)) / 1e3:.1f} KB status a real",
        f"evaluation wrote, median of {ROUNDS} alternating rounds of each way.",
        "",
        "| write | client CPU per call | wall per call |",
        "|---|---|---|",
        *(f"| {what} | {cpu * 1e3:.2f} ms | {wall * 1e3:.2f} ms |" for what, cpu, wall in rows),
        "",
    ]
