"""A real external intelligence service on loopback: answers verdicts, signed or not, fast or slow.

What :class:`~detection_operator.client.external.ExternalContributor` calls in the integration tests:
``POST /`` with ``{"signals": {...}}`` gets ``{"score": ..., "verdict": ...}``, signed with ``key`` (the
operator's webhook scheme) when one is set. ``delay`` makes it slow, ``status`` makes it fail, ``body``
replaces the verdict (a broken answer), ``sign_with`` signs with another key (a forged verdict).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from detection_operator.core.signing import WEBHOOK_HEADER, sign_webhook

from .httpservice import HttpService, QuietHandler

__all__ = ["VerdictService"]


class VerdictService(HttpService):
    """Answers every POST with a verdict; records the signals it was sent."""

    def __init__(self, key: bytes | None = None, score: float = 0.9, verdict: str = "bot") -> None:
        self._port = 0
        self.key = key
        self.sign_with: bytes | None = None
        self.score, self.verdict = score, verdict
        self.delay = 0.0
        self.status = 200
        self.body: bytes | None = None
        self._received: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def received(self) -> list[dict[str, Any]]:
        """The request bodies so far, parsed."""
        with self._lock:
            return list(self._received)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        """Answer after ``delay`` with ``status`` and the (signed) verdict."""
        service = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                request = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with service._lock:
                    service._received.append(json.loads(request or b"{}"))
                if service.delay:
                    time.sleep(service.delay)
                body = service.body
                if body is None:
                    body = json.dumps({"score": service.score, "verdict": service.verdict}).encode()
                self.send_response(service.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                key = service.sign_with or service.key
                if key is not None:
                    self.send_header(WEBHOOK_HEADER, sign_webhook(key, body, int(time.time())))
                self.end_headers()
                self.wfile.write(body)

        return Handler
