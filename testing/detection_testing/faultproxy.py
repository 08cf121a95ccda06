"""An HTTP proxy in front of the real Prometheus that can be switched into a fault: reliability tests.

In ``pass`` mode it forwards every request to the real server and returns its answer unchanged. The
faults answer the Prometheus query API the way a broken or overloaded server (or a bad query) would:
late, with a 5xx, with malformed JSON, with an empty vector, NaN, +Inf, or many series.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Literal

import httpx

from .httpservice import HttpService, QuietHandler

Mode = Literal["pass", "delay", "error", "malformed", "empty", "nan", "inf", "many"]
MODES: tuple[Mode, ...] = ("pass", "delay", "error", "malformed", "empty", "nan", "inf", "many")


def _vector(values: list[str]) -> bytes:
    now = time.time()
    result = [{"metric": {"series": str(i)}, "value": [now, value]} for i, value in enumerate(values)]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def fault_answer(mode: Mode, series: int) -> tuple[int, bytes]:
    """The status and body a fault mode answers a query with (``pass`` and ``delay`` forward instead)."""
    if mode == "error":
        return 503, b'{"status":"error","errorType":"unavailable","error":"injected by the fault proxy"}'
    if mode == "malformed":
        return 200, b'{"status":"success","data":{"resultType":"vector","result":[{"metric":'
    if mode == "empty":
        return 200, _vector([])
    if mode == "nan":
        return 200, _vector(["NaN"])
    if mode == "inf":
        return 200, _vector(["+Inf"])
    if mode == "many":
        return 200, _vector([str(i) for i in range(series)])
    raise ValueError(f"mode {mode!r} forwards; it has no fixed answer")


class FaultProxy(HttpService):
    """Forwards to ``upstream`` (e.g. ``http://127.0.0.1:9090``) unless ``mode`` says otherwise."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self._port = port
        self.mode: Mode = "pass"
        self.delay = 0.0
        """Seconds ``delay`` mode waits before forwarding."""
        self.series = 500
        """How many series ``many`` mode returns."""
        self._requests = 0
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=60, trust_env=False)

    @property
    def requests(self) -> int:
        """How many requests the proxy has received."""
        with self._lock:
            return self._requests

    def _answer(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        with self._lock:
            self._requests += 1
        mode = self.mode
        if mode not in ("pass", "delay"):
            status, payload = fault_answer(mode, self.series)
            return status, payload, "application/json"
        if mode == "delay":
            time.sleep(self.delay)
        forwarded = {k: v for k, v in headers.items() if k.lower() in ("content-type", "accept")}
        try:
            response = self._http.request(method, self.upstream + path, content=body, headers=forwarded)
        except httpx.TransportError as exc:
            return 502, f"upstream unreachable: {exc}".encode(), "text/plain"
        return response.status_code, response.content, response.headers.get("content-type", "text/plain")

    def handler(self) -> type[BaseHTTPRequestHandler]:
        """Answer every request through :meth:`_answer`."""
        proxy = self

        class Handler(QuietHandler):
            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, payload, content_type = proxy._answer(
                    self.command, self.path, body, dict(self.headers)
                )
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): exactly what a slow server causes

            do_GET = _handle
            do_POST = _handle

        return Handler

    def start(self) -> None:
        """Listen (on the same port as before, after a stop)."""
        if self._http.is_closed:  # stopped before: forward through a fresh connection pool
            self._http = httpx.Client(timeout=60, trust_env=False)
        super().start()

    def stop(self) -> None:
        """Stop listening and close the upstream connections."""
        super().stop()
        self._http.close()
