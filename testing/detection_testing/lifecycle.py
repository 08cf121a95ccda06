"""`with` support for everything the tests start: the block starts it, leaving the block stops it."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self

from kubernetes import client
from urllib3.exceptions import HTTPError


class Started:
    """Mixin for a part with ``start()`` and ``stop()``: ``with part:`` starts it and always stops it."""

    def start(self) -> None:
        """Start the part; subclasses implement it (with optional arguments of their own)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the part; subclasses implement it (with optional arguments of their own)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Looping(Started):
    """A part whose work is one daemon thread running ``_run`` until ``_stop`` is set."""

    _stop: threading.Event
    _thread: threading.Thread | None

    def _run(self) -> None:
        raise NotImplementedError

    def _start_loop(self, name: str) -> bool:
        """Start the thread; False (and nothing done) if it is running already."""
        if getattr(self, "_thread", None) is not None:
            return False
        self._stop = getattr(self, "_stop", None) or threading.Event()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        return True

    def _stop_loop(self, timeout: float | None = None) -> bool:
        """Ask the thread to end and wait for it; False if it was not running."""
        thread, self._thread = getattr(self, "_thread", None), None
        if thread is None:
            return False
        self._stop.set()
        thread.join(timeout)
        return True


class PollingPods(Looping):
    """A part that re-reads the cluster's Pods every ``_interval`` seconds in ``_sync``, from a thread.

    An apiserver restart (an ApiException, or urllib3 losing its connection) skips a round: the next one
    catches up, so a test that restarts the apiserver does not kill the thread.
    """

    _interval: float

    def _sync(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._sync()
            except (client.ApiException, HTTPError, OSError):
                continue
