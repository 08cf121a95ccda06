"""A TCP proxy whose open connections can be severed at will: a broken watch stream, for reliability tests.

TLS passes through untouched (the apiserver's certificate is for 127.0.0.1, whatever the port), so a
kubeconfig pointing at the proxy works as one pointing at the apiserver. :meth:`sever` resets every open
connection, as a load balancer restart or a network blip would; new connections are accepted as before.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from .lifecycle import Started
from .ports import LOOPBACK, LoopbackServer


class TcpProxy(LoopbackServer, Started):
    """Forwards connections on 127.0.0.1:``port`` to ``upstream_host``:``upstream_port``."""

    def __init__(self, upstream_host: str, upstream_port: int, port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._port = port
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.severed = 0
        """How many connections :meth:`sever` has cut so far."""
        self.accepted = 0
        """How many connections clients have opened so far (a client reusing its connections opens few)."""

    def start(self) -> None:
        """Listen and forward in background threads."""
        listener = socket.create_server((LOOPBACK, self._port))
        self._port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="tcp-proxy", daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                downstream, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {downstream, upstream}
                self.accepted += 1
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def sever(self) -> int:
        """Reset every open connection; return how many sockets were cut."""
        with self._lock:
            cut = list(self._open)
        for sock in cut:
            # SO_LINGER 0: a RST, not an orderly FIN, so the client sees a broken stream.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._close(sock)
        self.severed += len(cut)
        return len(cut)

    def stop(self) -> None:
        """Stop accepting and cut what is open."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.sever()
