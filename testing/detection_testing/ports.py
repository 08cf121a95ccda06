"""Loopback addresses for local test servers: free port selection and the port/target/url properties."""

from __future__ import annotations

import socket
from typing import Final

__all__ = ["LOOPBACK", "LoopbackServer", "free_port"]

LOOPBACK: Final = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The socket is closed before returning, so another process could grab the port before the
    caller binds it; that race is accepted because the servers we start (Prometheus, kube-apiserver)
    only take a port number, not an already-bound socket.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class LoopbackServer:
    """Mixin for a server on 127.0.0.1 whose port, when given as 0, is chosen by its first ``start()``.

    The subclass sets ``_port`` (0 until chosen) and keeps it across restarts, so that URLs and
    scrape targets handed out earlier stay valid.
    """

    _port: int

    @property
    def port(self) -> int:
        """The TCP port; known before the first ``start()`` only if it was given explicitly."""
        if self._port == 0:
            raise RuntimeError(f"{type(self).__name__} has no port yet: call start() first")
        return self._port

    @property
    def target(self) -> str:
        """``127.0.0.1:PORT``, as written in a Prometheus ``static_configs`` target list."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9090``."""
        return f"http://{self.target}"
