"""A real HTTP receiver on loopback that records what it is sent: the webhook end of alerting tests.

It can answer with a chosen status, answer slowly, and be stopped and restarted on the same port (a
receiver that is down, then up again).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from .httpservice import HttpService, QuietHandler


@dataclass(frozen=True)
class Request:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    status: int = 200
    """The status it was answered with."""

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


class WebhookReceiver(HttpService):
    """Records POSTs; ``status`` and ``delay`` set how it answers."""

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self.status = 200
        self.delay = 0.0
        self._requests: list[Request] = []
        self._lock = threading.Lock()

    @property
    def requests(self) -> list[Request]:
        """Every request so far (answered with any status), oldest first."""
        with self._lock:
            return list(self._requests)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        """Record each POST, then answer after ``delay`` with ``status``."""
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver._requests.append(
                        Request(self.path, dict(self.headers), body, time.time(), receiver.status)
                    )
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler
