"""The Kubernetes client's cost per write on the evaluation's hot path (status, ConfigMap apply, Event).

CPU seconds of this process per call (the client's own work: serialising the body, urllib3, decoding the
answer), and wall time per call, against the real apiserver, with and without decoding the answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from kubernetes import client

from detection_operator.act import kube
from detection_operator.api.base import GROUP, VERSION
from detection_operator.core.identity import ObjectRef
from detection_testing.specs import latency_policy

from .harness import control_plane, create_namespace

CALLS = 200


def _per_call(call: Callable[[int], object], calls: int = CALLS) -> tuple[float, float]:
    call(-1)  # warm the connection
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(calls):
        call(i)
    return (time.process_time() - cpu) / calls, (time.perf_counter() - wall) / calls


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
        status = {"profile": "balanced", "revision": 1, "observedGeneration": 1}

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
            (
                "status write (JSON patch, answer as dict)",
                *_per_call(lambda i: kube.write_status(api, ref, status)),
            ),
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
        "time per call (the Python client: body serialisation, urllib3, decoding the answer), wall = per",
        "call including the apiserver.",
        "",
        "| write | client CPU per call | wall per call |",
        "|---|---|---|",
        *(f"| {what} | {cpu * 1e3:.2f} ms | {wall * 1e3:.2f} ms |" for what, cpu, wall in rows),
        "",
    ]
