"""Status writes on the event loop: one keep-alive aiohttp session to the apiserver, built from the
Kubernetes client's configuration (the same server, CA, client certificate, token and its refresh hook).

The status write is the only Kubernetes write on every evaluation's path (~30 a second at 2,000 objects at
the 60 s refresh floor). Through the Kubernetes client in a worker thread a write of a real 6.2 KB status
cost 2.54 ms of CPU, hand-offs included; on this session 1.51 ms (bench/RESULTS.md "Kubernetes writes").
Every other Kubernetes call stays on the client: they are rare (decisions, Secret reads), and the
election keeps its own threads so a loaded loop never delays a renewal.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from typing import Any

import aiohttp
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..api.base import GROUP, VERSION
from ..api.kinds import by_kind
from ..core.identity import ObjectRef

_JSON_PATCH = "application/json-patch+json"
_KEEPALIVE_SECONDS = 75.0
"""How long an idle connection is kept for the next write. aiohttp's default (15 s) is shorter than the
gap between a replica's status bursts (a namespace's objects are written together, each at most every
60 s by default): every replica reopened 16 TLS connections a minute (bench/RESULTS.md "Active-active").
Below the apiserver's own idle timeout (90 s, k8s.io/apiserver secure_serving.go), so the server never
closes a connection the pool is about to reuse."""


def _ssl_context(configuration: client.Configuration) -> ssl.SSLContext | bool:
    if not configuration.verify_ssl:
        return False
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


class StatusClient:
    """Writes an object's whole status with a JSON patch on the loop.

    A failed answer raises the Kubernetes client's :class:`ApiException` (status, reason and body), so
    callers handle a 404 or a 409 exactly as before; a broken connection raises aiohttp's errors, which,
    like urllib3's, end this one evaluation (the next is the retry).
    """

    def __init__(self, configuration: client.Configuration, pool_size: int, timeout_seconds: float) -> None:
        self._configuration = configuration
        self._host = configuration.host.rstrip("/")
        self._pool_size = pool_size
        # Built here, where a bad bundle or key fails at start-up; the session is made on the event loop.
        self._ssl = _ssl_context(configuration)
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds, sock_connect=min(10.0, timeout_seconds))
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._pool_size, ssl=self._ssl, keepalive_timeout=_KEEPALIVE_SECONDS
                ),
                timeout=self._timeout,
                trust_env=False,
                raise_for_status=False,
            )
        return self._session

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": _JSON_PATCH, "Accept": "application/json"}
        c = self._configuration
        # Asked at every request, as the Kubernetes client does: in a Pod the hook rereads the projected
        # ServiceAccount token, which the kubelet rotates.
        token = c.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            headers["Authorization"] = token
        elif c.username or c.password:
            headers["Authorization"] = aiohttp.BasicAuth(c.username or "", c.password or "").encode()
        return headers

    async def write_status(
        self, ref: ObjectRef, status: dict[str, Any], before_send: Callable[[], None] = lambda: None
    ) -> dict[str, Any]:
        """Replace the whole status (without a resourceVersion precondition); the object as stored.

        ``before_send`` runs right before the request is made, on the loop, with no thread hand-off in
        between: the ownership check, which raises to stop the write.
        """
        path = (
            f"/apis/{GROUP}/{VERSION}/namespaces/{ref.namespace}/{by_kind(ref.kind).plural}/{ref.name}/status"
        )
        body = json.dumps([{"op": "add", "path": "/status", "value": status}], separators=(",", ":"))
        headers = self._headers()
        session = self._client()
        proxy = self._configuration.proxy or None
        before_send()
        # A kubeconfig's tls-server-name: the name the certificate is checked against, as the client does.
        server_name = self._configuration.tls_server_name or None
        async with session.patch(
            self._host + path, data=body, headers=headers, proxy=proxy, server_hostname=server_name
        ) as response:
            text = await response.read()
            if response.status >= 400:
                error = ApiException(status=response.status, reason=response.reason)
                error.body = text.decode(errors="replace")
                error.headers = response.headers
                raise error
        result: dict[str, Any] = json.loads(text)
        return result

    async def aclose(self) -> None:
        """Close the session (at shutdown)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
