"""A small HTTP server on loopback, served from a daemon thread: the base of every test server we write."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .lifecycle import Started
from .ports import LOOPBACK, LoopbackServer


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that does not print a line per request on stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        return


class HttpService(LoopbackServer, Started):
    """Serves ``handler()`` on 127.0.0.1; the port chosen by the first start is kept for restarts.

    Subclasses set ``_port`` (0 to pick one) and implement :meth:`handler`.
    """

    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        """The request handler class (typically closing over the service)."""
        raise NotImplementedError

    def start(self) -> None:
        """Bind the port and serve in a daemon thread. No-op if already running."""
        if self._server is not None:
            return
        server = ThreadingHTTPServer((LOOPBACK, self._port), self.handler())
        server.daemon_threads = True
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{type(self).__name__}-{self._port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port (connections are then refused)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
