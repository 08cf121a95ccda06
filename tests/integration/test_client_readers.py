"""The Python client's readers following a ConfigMap through a real apiserver: signed documents, the last
good one kept, a watch resumed from its resourceVersion without replays, a relist after 410 Gone."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

from kubernetes import client

from detection_operator.api.contract import ProfileDocument
from detection_operator.client.readers import DocumentError, ProfileReader, RouteReader
from detection_operator.core.signing import sign
from detection_testing.kube import wait_for

CONFIG_MAP = "checkout-detection-profile"
KEY = b"profile-signing-key"


def profile_json(namespace: str, profile: str, revision: int) -> str:
    return ProfileDocument.model_validate(
        {
            "policy": {"namespace": namespace, "name": "checkout"},
            "profile": profile,
            "revision": revision,
            "decidedAt": datetime.now(UTC),
            "reason": "test",
            "contributors": [],
            "external": [],
            "expense": {},
            "reasons": [],
        }
    ).model_dump_json(by_alias=True)


class Seen:
    """What a reader's callbacks received, thread safe."""

    def __init__(self) -> None:
        self.documents: list[ProfileDocument] = []
        self.errors: list[Exception] = []
        self.lock = threading.Lock()

    def document(self, document: ProfileDocument) -> None:
        with self.lock:
            self.documents.append(document)

    def error(self, exc: Exception) -> None:
        with self.lock:
            self.errors.append(exc)

    def revisions(self) -> list[int]:
        with self.lock:
            return [d.revision for d in self.documents]


def publish(core: client.CoreV1Api, namespace: str, data: dict[str, str]) -> None:
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=CONFIG_MAP), data=data)
    try:
        core.replace_namespaced_config_map(CONFIG_MAP, namespace, body)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_config_map(namespace, body)


def signed(namespace: str, profile: str, revision: int, key: bytes = KEY) -> dict[str, str]:
    payload = profile_json(namespace, profile, revision)
    return {"profile.json": payload, "profile.json.sig": sign(key, payload.encode())}


def test_a_reader_follows_signed_documents_and_keeps_the_last_good(
    kube: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube)
    seen = Seen()
    reader = ProfileReader(key=KEY)
    watch = reader.follow(kube, namespace, CONFIG_MAP, seen.document, seen.error)
    try:
        publish(core, namespace, signed(namespace, "balanced", 1))  # created after the reader started
        wait_for(lambda: seen.revisions() == [1], timeout=10, what="the first document")
        publish(core, namespace, signed(namespace, "paranoid", 2))
        wait_for(lambda: seen.revisions() == [1, 2], timeout=10, what="the second document")

        publish(core, namespace, signed(namespace, "lean", 3, key=b"hand-edit"))  # not the operator's key
        wait_for(lambda: seen.errors, timeout=10, what="the forged document refused")
        assert isinstance(seen.errors[0], DocumentError) and "does not match its signature" in str(
            seen.errors[0]
        )
        publish(core, namespace, {"profile.json": profile_json(namespace, "lean", 3)})  # unsigned
        wait_for(lambda: len(seen.errors) >= 2, timeout=10, what="the unsigned document refused")
        assert "no signature" in str(seen.errors[1])

        core.delete_namespaced_config_map(CONFIG_MAP, namespace)
        publish(core, namespace, signed(namespace, "lean", 4))
        wait_for(lambda: seen.revisions() == [1, 2, 4], timeout=10, what="the document after a re-create")
        assert reader.current is not None and reader.current.profile == "lean"
        assert watch.lists == 1  # one list at the start, watches since
    finally:
        watch.stop()


def test_a_watch_resumes_from_its_resource_version_without_replaying(
    kube: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube)
    publish(core, namespace, signed(namespace, "balanced", 1))
    seen = Seen()
    watch = ProfileReader(key=KEY).follow(
        kube, namespace, CONFIG_MAP, seen.document, seen.error, watch_seconds=1
    )
    try:
        wait_for(lambda: seen.revisions() == [1], timeout=10, what="the first document")
        wait_for(lambda: watch.resumes >= 3, timeout=15, what="three watches ended by the server and resumed")
        publish(core, namespace, signed(namespace, "paranoid", 2))
        wait_for(lambda: seen.revisions() == [1, 2], timeout=10, what="the change after the resumes")
        assert watch.lists == 1 and seen.errors == []
    finally:
        watch.stop()


def test_a_reader_resumed_from_a_long_gone_version_gets_the_current_document(
    kube: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube)
    publish(core, namespace, signed(namespace, "balanced", 6))
    publish(core, namespace, signed(namespace, "balanced", 7))
    seen = Seen()
    # A version from long ago (a reader restarted with what it once saw). The apiserver either replays
    # from it or answers 410 Gone, and the watch lists again: either way the reader ends on the current
    # document and reports no error.
    watch = ProfileReader(key=KEY).follow(
        kube, namespace, CONFIG_MAP, seen.document, seen.error, resource_version="1"
    )
    try:
        wait_for(lambda: seen.revisions()[-1:] == [7], timeout=10, what="the current document")
        assert seen.errors == []
    finally:
        watch.stop()


def test_a_route_reader_follows_route_json(kube: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube)
    route = {
        "route": {"namespace": namespace, "name": "scoring"},
        "active": "backup1",
        "primary": "primary",
        "state": "FailedOver",
        "traffic": {"backup1": 95, "primary": 5},
        "fallbacks": ["backup2"],
        "reason": "test",
        "revision": 3,
        "decidedAt": datetime.now(UTC).isoformat(),
        "candidates": [],
    }
    body = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="scoring-route"), data={"route.json": json.dumps(route)}
    )
    core.create_namespaced_config_map(namespace, body)
    reader = RouteReader()
    watch = reader.follow(kube, namespace, "scoring-route", lambda document: None)
    try:
        wait_for(lambda: reader.current, timeout=10, what="route.json")
        picks = [reader.choose() for _ in range(100)]
        assert picks.count("primary") == 5 and reader.attempts(0.99) == ["primary", "backup1", "backup2"]
    finally:
        watch.stop()
