"""Which Prometheus each object talks to: the operator's default, or a per-object Secret override."""

from __future__ import annotations

import json
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from urllib.parse import urlsplit

from ..api.common import PrometheusRef
from ..core.times import parse_duration
from .coalesce import CoalescingSource
from .source import MetricsSource, PrometheusConfig, PrometheusSource

SecretReader = Callable[[str, str], Mapping[str, bytes]]


class InvalidConnection(ValueError):
    """A Prometheus connection setting that cannot be used; the message names the field, never a value."""


def check_url(url: str, field: str) -> str:
    """Accept only absolute http(s) URLs, so a Secret cannot point the operator at file:// or similar."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidConnection(f"{field}: must be an absolute http(s) URL")
    return url


_Key = tuple[str, str, float | None]
"""(namespace, Secret name, timeout) of an override; ("", "", timeout) for a timeout alone."""


class Connections:
    """MetricsSources per connection, created once and reused (each owns a connection pool).

    Per-object overrides are read from the referenced Secret at most every ``ttl`` seconds. Identical
    queries on one connection within ``coalesce_seconds`` share one request (0 turns that off).
    """

    def __init__(
        self,
        default: PrometheusConfig,
        read_secret: SecretReader,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        coalesce_seconds: float = 0.0,
    ) -> None:
        self._coalesce_seconds = coalesce_seconds
        self._default = self._source(default)
        self._default_config = default
        self._read_secret = read_secret
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[_Key, tuple[float, MetricsSource]] = {}
        self._failures: dict[_Key, tuple[float, Exception]] = {}
        self._ca_files: dict[tuple[str, str], tempfile._TemporaryFileWrapper[bytes]] = {}
        self._retired: list[MetricsSource] = []

    def for_object(self, namespace: str, ref: PrometheusRef | None) -> MetricsSource:
        """The source for an object (blocking: may read a Secret). Raises InvalidConnection."""
        key = _key(namespace, ref)
        if key is None:
            return self._default
        return self._cached(key, lambda: self._config(key))

    def at_hand(self, namespace: str, ref: PrometheusRef | None) -> MetricsSource | None:
        """The object's source if known without I/O (safe on the event loop), else None."""
        key = _key(namespace, ref)
        if key is None:
            return self._default
        with self._lock:
            hit = self._cache.get(key)
            return hit[1] if hit and hit[0] > self._clock() else None

    def _config(self, key: _Key) -> PrometheusConfig:
        namespace, secret, timeout = key
        if secret:
            return self._from_secret(namespace, secret, timeout)
        return replace(self._default_config, timeout_seconds=timeout or self._default_config.timeout_seconds)

    def _cached(self, key: _Key, build: Callable[[], PrometheusConfig]) -> MetricsSource:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > now:
                return hit[1]
            failed = self._failures.get(key)
            if failed and failed[0] > now:
                raise failed[1]
        try:
            source = self._source(build())
        except Exception as exc:
            # A broken Secret is re-read at most every ttl seconds, not at every evaluation.
            with self._lock:
                self._failures[key] = (now + self._ttl, exc)
            raise
        with self._lock:
            self._failures.pop(key, None)
            old = self._cache.get(key)
            self._cache[key] = (now + self._ttl, source)
        if old is not None:
            # Closing is a coroutine and this may run in a worker: the loop closes it (release_retired).
            with self._lock:
                self._retired.append(old[1])
        return source

    async def release_retired(self) -> None:
        """Close the sources that refreshed overrides replaced (on the event loop)."""
        with self._lock:
            retired, self._retired = self._retired, []
        for source in retired:
            await source.aclose()

    async def aclose(self) -> None:
        """Close every source (at shutdown)."""
        with self._lock:
            sources = [self._default, *(source for _, source in self._cache.values())]
            self._cache.clear()
        await self.release_retired()
        for source in sources:
            await source.aclose()

    def _source(self, config: PrometheusConfig) -> MetricsSource:
        source = PrometheusSource(config)
        if self._coalesce_seconds <= 0:
            return source
        return CoalescingSource(source, self._coalesce_seconds)

    def _from_secret(self, namespace: str, name: str, timeout: float | None) -> PrometheusConfig:
        data = self._read_secret(namespace, name)
        base = self._default_config

        def text(key: str) -> str | None:
            value = data.get(key)
            return value.decode().strip() if value is not None else None

        url = text("url")
        headers = dict(base.headers or {})
        if (raw := text("headers")) is not None:
            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise InvalidConnection(f"Secret {name}: key 'headers' is not a JSON object") from exc
            if not isinstance(parsed, dict):
                raise InvalidConnection(f"Secret {name}: key 'headers' is not a JSON object")
            headers.update({str(k): str(v) for k, v in parsed.items()})
        username, password = text("username"), text("password")
        if (username is None) != (password is None):
            raise InvalidConnection(f"Secret {name}: 'username' and 'password' go together")
        ca_file = base.ca_file
        if (ca := data.get("ca.crt")) is not None:
            _check_ca(ca, f"Secret {name}: key 'ca.crt'")
            # The SSL context takes a CA bundle as a path; one file per Secret, rewritten on refresh.
            handle = self._ca_files.get((namespace, name))
            if handle is None:
                handle = tempfile.NamedTemporaryFile(prefix="prometheus-ca-", suffix=".crt")  # noqa: SIM115
                self._ca_files[(namespace, name)] = handle
            handle.seek(0)
            handle.truncate()
            handle.write(ca)
            handle.flush()
            ca_file = handle.name
        return PrometheusConfig(
            url=check_url(url, f"Secret {name}: key 'url'") if url else base.url,
            timeout_seconds=timeout or base.timeout_seconds,
            bearer_token=text("token") or base.bearer_token,
            basic_auth=(username, password) if username and password else base.basic_auth,
            ca_file=ca_file,
            headers=headers or None,
            pool_size=base.pool_size,
            batch_size=base.batch_size,
        )


def _check_ca(pem: bytes, field: str) -> None:
    # The source loads the bundle when it is built: say which key is wrong rather than fail there.
    try:
        ssl.create_default_context(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidConnection(f"{field}: not a PEM CA bundle") from exc


def _key(namespace: str, ref: PrometheusRef | None) -> _Key | None:
    # None: the default connection, shared by every object without an override.
    timeout = parse_duration(ref.timeout) if ref and ref.timeout else None
    if ref is not None and ref.secret_ref is not None:
        return (namespace, ref.secret_ref.name, timeout)
    return None if timeout is None else ("", "", timeout)
