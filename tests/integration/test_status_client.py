"""The status writer on the event loop (act/status_client.py) against the real apiserver: what it stores
and returns, and the errors callers rely on (404 on a deleted object, 422 naming the field, the ownership
check stopping a write before it is sent)."""

from __future__ import annotations

import asyncio
import copy
from typing import Any
from urllib.parse import urlparse

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from detection_operator.act.status_client import StatusClient
from detection_operator.api.base import GROUP, VERSION
from detection_operator.core.errors import NotLeader
from detection_operator.core.identity import ObjectRef
from detection_testing.specs import latency_policy
from detection_testing.tcpproxy import TcpProxy

pytestmark = pytest.mark.usefixtures("crds")


def _create(kube: client.ApiClient, namespace: str, name: str) -> ObjectRef:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DetectionPolicy",
        "metadata": {"name": name},
        "spec": latency_policy(),
    }
    created = client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "detectionpolicies", body
    )
    return ObjectRef("DetectionPolicy", namespace, name, created["metadata"]["uid"])


def _stored(kube: client.ApiClient, ref: ObjectRef) -> dict[str, Any]:
    obj = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, ref.namespace, "detectionpolicies", ref.name
    )
    return dict(obj.get("status") or {})


def test_writes_the_whole_status_and_returns_the_stored(kube: client.ApiClient, namespace: str) -> None:
    ref = _create(kube, namespace, "p")
    writer = StatusClient(kube.configuration, 2, 30.0)

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            first = await writer.write_status(ref, {"profile": "paranoid", "revision": 3, "reason": "breach"})
            # The whole status is replaced: a field left out of the next write is gone.
            second = await writer.write_status(ref, {"profile": "lean", "revision": 4})
            return first, second
        finally:
            await writer.aclose()

    first, second = asyncio.run(run())
    assert first["metadata"]["uid"] == ref.uid
    assert first["status"]["profile"] == "paranoid"
    assert second["status"]["profile"] == "lean"
    stored = _stored(kube, ref)
    assert stored["profile"] == "lean" and stored["revision"] == 4
    assert "reason" not in stored


def test_errors_are_api_exceptions_with_status_and_body(kube: client.ApiClient, namespace: str) -> None:
    ref = _create(kube, namespace, "p")
    gone = ObjectRef("DetectionPolicy", namespace, "no-such-policy")
    writer = StatusClient(kube.configuration, 2, 30.0)

    async def failure(target: ObjectRef, status: dict[str, Any]) -> ApiException:
        with pytest.raises(ApiException) as caught:
            await writer.write_status(target, status)
        return caught.value

    async def run() -> tuple[ApiException, ApiException]:
        try:
            return await failure(gone, {"profile": "lean"}), await failure(ref, {"revision": "third"})
        finally:
            await writer.aclose()

    missing, invalid = asyncio.run(run())
    assert missing.status == 404
    assert invalid.status == 422
    assert "status.revision" in (invalid.body or "")
    assert "revision" not in _stored(kube, ref)


def test_a_failed_ownership_check_sends_nothing(kube: client.ApiClient, namespace: str) -> None:
    ref = _create(kube, namespace, "p")
    writer = StatusClient(kube.configuration, 2, 30.0)

    def not_owner() -> None:
        raise NotLeader()

    async def run() -> None:
        try:
            with pytest.raises(NotLeader):
                await writer.write_status(ref, {"profile": "paranoid"}, before_send=not_owner)
        finally:
            await writer.aclose()

    asyncio.run(run())
    assert "profile" not in _stored(kube, ref)


IDLE_GAP_SECONDS = 20.0
"""Longer than aiohttp's default keep-alive (15 s), shorter than the apiserver's idle timeout (90 s)."""


def test_writes_an_idle_gap_apart_reuse_one_connection(kube: client.ApiClient, namespace: str) -> None:
    # What a replica holding one namespace does: its objects' statuses are written together, then nothing
    # for up to the status refresh. Each burst used to pay a new TLS handshake per connection.
    ref = _create(kube, namespace, "p")
    server = urlparse(kube.configuration.host)
    assert server.hostname and server.port
    with TcpProxy(server.hostname, server.port) as proxy:
        configuration = copy.copy(kube.configuration)
        configuration.host = f"https://{server.hostname}:{proxy.port}"
        writer = StatusClient(configuration, 2, 30.0)

        async def run() -> None:
            try:
                await writer.write_status(ref, {"revision": 1})
                await asyncio.sleep(IDLE_GAP_SECONDS)  # the idle gap is the scenario, not a wait
                await writer.write_status(ref, {"revision": 2})
            finally:
                await writer.aclose()

        asyncio.run(run())
        assert proxy.accepted == 1
    assert _stored(kube, ref)["revision"] == 2
