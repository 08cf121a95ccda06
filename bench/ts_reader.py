"""Published document -> the TypeScript reader's callback, through the API watch and a mounted directory.

The clock starts just before the ConfigMap is written (API) or the ``..data`` link is swapped (directory)
and stops at the monotonic time the Node.js reader printed after verifying and validating the document.
The directory case swaps the link here, as the kubelet does, so it measures the reader's own reaction;
on a real node the kubelet's sync period (up to a minute by default) comes first.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from kubernetes import client

from detection_operator.core.signing import sign
from detection_testing.kube import wait_for
from detection_testing.node_client import DocumentFollower

from .harness import REPO, Stats, control_plane, create_namespace

SAMPLES = 40
KEY = b"bench-signing-key"
NAMESPACE = "bench-ts-reader"
CONFIG_MAP = "policy-detection-profile"


def _profile(revision: int) -> dict[str, str]:
    """A signed profile.json (the shared vectors' full profile at ``revision``) as ConfigMap data."""
    vectors = json.loads((REPO / "clients/vectors/documents.json").read_text())["vectors"]
    document = json.loads(
        next(v["payload"] for v in vectors if v["document"] == "profile.json" and v["valid"])
    )
    payload = json.dumps({**document, "revision": revision}, indent=2) + "\n"
    return {"profile.json": payload, "profile.json.sig": sign(KEY, payload.encode())}


def _measure(follower: DocumentFollower, publish: Callable[[dict[str, str]], None]) -> list[float]:
    samples = []
    for revision in range(2, SAMPLES + 2):
        data = _profile(revision)
        started = time.monotonic()
        publish(data)
        seen = wait_for(
            lambda r=revision: next(
                (f for f in follower.seen() if f.document and f.document["revision"] == r), None
            ),  # type: ignore[misc]
            timeout=10,
            interval=0.005,
            what=f"revision {revision}",
        )
        samples.append(seen.at - started)
        time.sleep(0.05)  # apart, so each sample is one change
    return samples


def _swap(directory: Path, generation: list[int]) -> Callable[[dict[str, str]], None]:
    """Publish into ``directory`` as the kubelet does: a new snapshot, then an atomic rename of ``..data``."""

    def publish(data: dict[str, str]) -> None:
        generation[0] += 1
        snapshot = directory / f"..snapshot.{generation[0]}"
        snapshot.mkdir()
        for name, text in data.items():
            (snapshot / name).write_text(text)
        os.symlink(snapshot.name, directory / "..data_tmp")
        os.replace(directory / "..data_tmp", directory / "..data")
        for name in data:
            if not (directory / name).is_symlink():
                os.symlink(f"..data/{name}", directory / name)

    return publish


def section() -> list[str]:
    """Markdown rows: API watch and directory, median / p90 / p99 / min / max."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with control_plane(work) as (_, api):
            create_namespace(api, NAMESPACE)
            core = client.CoreV1Api(api)
            meta = client.V1ObjectMeta(name=CONFIG_MAP)
            core.create_namespaced_config_map(NAMESPACE, client.V1ConfigMap(metadata=meta, data=_profile(1)))
            source = (api, NAMESPACE, CONFIG_MAP)
            with DocumentFollower(work / "api", key=KEY, config_map=source) as follower:
                wait_for(lambda: follower.seen(), timeout=15, what="the first document")
                through_api = _measure(
                    follower,
                    lambda data: core.patch_namespaced_config_map(CONFIG_MAP, NAMESPACE, {"data": data}),
                )
        mounted = work / "mounted"
        mounted.mkdir()
        publish = _swap(mounted, [0])
        publish(_profile(1))
        with DocumentFollower(work / "dir", key=KEY, directory=mounted) as follower:
            wait_for(lambda: follower.seen(), timeout=15, what="the first document")
            through_directory = _measure(follower, publish)
    return [
        "| TypeScript reader (node) | median | p90 | p99 | min | max | n |",
        "|---|---|---|---|---|---|---|",
        f"| ConfigMap write -> callback, API watch | {Stats.of(through_api).row()} |",
        f"| `..data` swap -> callback, directory watch (no kubelet) | {Stats.of(through_directory).row()} |",
    ]
