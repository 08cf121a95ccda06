"""The closed loop around a ModelRoute: model servers that report only what they served, and a router
that sends each request where route.json says.

:class:`ModelFleet` runs one :mod:`~detection_testing.model_server` process per model on
loopback; :meth:`ModelFleet.kill` is a dead model (SIGKILL: the process and its series are gone, the next
scrape fails and Prometheus marks them stale), :meth:`ModelFleet.control` makes one fail or slow down.

:class:`Router` follows the route's ConfigMap through the Kubernetes API into a
:class:`~detection_operator.client.readers.RouteReader`, and sends requests at a steady rate: to the model
``choose()`` picks by the ``traffic`` weights, retrying along the ``fallbacks`` when a model errors or
does not answer. Every request is logged (when, which models it tried, who served it), so a test or a
benchmark can tell when the router stopped sending to a dead model. Its endpoints are a fixed map (the
fleet's loopback ports) or a function that resolves a model to its current URLs (the Ready Pods of its
Deployment, :class:`~detection_testing.pod_endpoints.ReadyPods`): a model that resolves to no
URL is a model with no healthy upstream, and the request goes on along the fallbacks.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from kubernetes import client

from detection_operator.client.readers import RouteReader

from . import model_server
from .configmap_watch import ConfigMapWatch
from .lifecycle import Looping, Started
from .ports import LOOPBACK, free_port
from .processes import ManagedProcess

__all__ = ["ModelFleet", "Router", "Sent"]

_START_TIMEOUT = 15.0
# Generous: a dead model refuses at once; only a loaded machine makes a live one this slow, and a
# timeout would send the request to a fallback that should have stayed idle.
_REQUEST_TIMEOUT = 10.0

Resolve = Callable[[str], Sequence[str]]
"""Model -> the base URLs that serve it now (empty: none does)."""


def on_this_machine(url: str) -> bool:
    """Whether ``url`` is plain HTTP to loopback or to a private address (a Pod network of this machine's
    node): the router's load never leaves the machine."""
    parts = urlsplit(url)
    try:
        address = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        return False
    return parts.scheme == "http" and (address.is_loopback or address.is_private)


class ModelFleet(Started):
    """One model server process per model, each on its own loopback port (kept across restarts)."""

    def __init__(
        self, models: Iterable[str], log_dir: Path, namespace: str | None = None, **settings: Any
    ) -> None:
        """Prepare stopped servers; ``settings`` (``latency_ms=...``) become their command-line options."""
        self.namespace = namespace
        self.ports = {model: free_port() for model in models}
        self.log_dir = log_dir
        self.settings = settings
        self._processes: dict[str, ManagedProcess] = {}
        self._http = httpx.Client(timeout=_REQUEST_TIMEOUT)

    @property
    def targets(self) -> list[str]:
        """Prometheus scrape targets (``host:port``), dead models included: a failed scrape is how
        Prometheus learns that a model's series are gone."""
        return [f"{LOOPBACK}:{port}" for port in self.ports.values()]

    @property
    def endpoints(self) -> dict[str, str]:
        """Model -> base URL."""
        return {model: f"http://{LOOPBACK}:{port}" for model, port in self.ports.items()}

    def start(self) -> None:
        """Start every model server that is not running."""
        for model in self.ports:
            if model not in self._processes or not self._processes[model].running():
                self.revive(model)

    def stop(self) -> None:
        """Stop every model server."""
        for process in self._processes.values():
            process.stop(grace=5)
        self._http.close()

    def kill(self, model: str) -> None:
        """SIGKILL one model server, as an OOM kill or a lost node would."""
        self._processes[model].kill()

    def revive(self, model: str) -> None:
        """Start (again) one model server on its port, with fresh counters (a new Pod)."""
        argv = [model_server.__file__, "--port", str(self.ports[model]), "--model", model]
        if self.namespace:
            argv += ["--namespace", self.namespace]
        for key, value in self.settings.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        process = ManagedProcess(f"model {model}", [sys.executable, *argv], self.log_dir / f"{model}.log")
        process.start()
        self._processes[model] = process
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if self._http.get(f"{self.endpoints[model]}/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if not process.running():
                raise RuntimeError(process.describe("exited at start"))
            time.sleep(0.05)
        raise RuntimeError(process.describe(f"did not answer within {_START_TIMEOUT}s"))

    def control(self, model: str, **settings: float | bool) -> dict[str, Any]:
        """Change how one model behaves (``errorShare=1.0``, ``latencyMs=800``) and return its settings."""
        response = self._http.post(f"{self.endpoints[model]}/control", content=json.dumps(settings))
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def alive(self, model: str) -> bool:
        """Whether the model's process is running."""
        return model in self._processes and self._processes[model].running()


@dataclass(frozen=True)
class Sent:
    """One request as the router saw it: when (monotonic), the models tried in order, who served it."""

    at: float
    tried: tuple[str, ...]
    served_by: str | None
    revision: int | None


class Router(Looping):
    """Send ``rate`` requests per second (loopback only, bounded) by route.json, retrying along fallbacks.

    Requests stop after ``max_requests`` or ``max_seconds``, whichever comes first, so a forgotten router
    cannot load the machine for long.
    """

    def __init__(
        self,
        kube: client.ApiClient,
        namespace: str,
        config_map: str,
        endpoints: Mapping[str, str] | Resolve,
        rate: float = 20.0,
        *,
        workers: int = 8,
        max_requests: int = 200_000,
        max_seconds: float = 1800.0,
    ) -> None:
        """Prepare a stopped router for the route whose route.json is in ``config_map``; ``endpoints``
        maps each model to its URL, or resolves a model to its current URLs at each request."""
        if isinstance(endpoints, Mapping):
            for url in endpoints.values():
                if not on_this_machine(url):
                    raise ValueError(f"the router only sends to this machine, not {url}")
            fixed = dict(endpoints)
            self.resolve: Resolve = lambda model: [fixed[model]] if model in fixed else []
        else:
            self.resolve = endpoints
        self._turn = itertools.count()  # round robin over a model's URLs
        self.rate = rate
        self.reader = RouteReader()
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.rejected = 0
        self._log: list[Sent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="router")
        self._http = httpx.Client(timeout=_REQUEST_TIMEOUT, limits=httpx.Limits(max_connections=workers * 2))
        self._watch = ConfigMapWatch(kube, namespace, config_map, self._on_data)

    def _on_data(self, data: Mapping[str, str] | None) -> None:
        payload = (data or {}).get("route.json")
        if payload is None:
            return
        try:
            self.reader.accept(payload.encode())
        except ValueError:
            with self._lock:
                self.rejected += 1

    def start(self) -> None:
        """Follow the ConfigMap and start sending."""
        self._watch.start()
        self._start_loop("router")

    def stop(self) -> None:
        """Stop sending (in-flight requests finish) and following."""
        self._stop_loop()
        self._pool.shutdown(wait=True)
        self._watch.stop()
        self._http.close()

    def log(self, since: float = 0.0) -> list[Sent]:
        """Requests sent at or after ``since`` (monotonic seconds)."""
        with self._lock:
            return [s for s in self._log if s.at >= since]

    def _run(self) -> None:
        started = time.monotonic()
        sent = 0
        next_at = started
        while not self._stop.is_set() and sent < self.max_requests:
            now = time.monotonic()
            if now - started > self.max_seconds:
                break
            if now < next_at:
                self._stop.wait(next_at - now)
                continue
            next_at += 1.0 / self.rate  # read each time: a test may change the rate while running
            if now - next_at > 1.0:
                next_at = now  # fell behind (a loaded machine): do not burst to catch up
            attempts = self.reader.attempts()
            if not attempts:
                continue  # no route.json yet: nothing to send to
            document = self.reader.current
            self._pool.submit(self._send, now, attempts, document.revision if document else None)
            sent += 1

    def _send(self, at: float, attempts: list[str], revision: int | None) -> None:
        tried: list[str] = []
        served_by = None
        for model in attempts:
            urls = [u for u in self.resolve(model) if on_this_machine(u)]
            tried.append(model)
            if not urls:
                continue  # no healthy upstream: on along the fallbacks
            url = urls[next(self._turn) % len(urls)]
            try:
                if self._http.post(f"{url}/infer", content=b"{}").status_code == 200:
                    served_by = model
                    break
            except httpx.HTTPError:
                continue
        with self._lock:
            self._log.append(Sent(at, tuple(tried), served_by, revision))
