"""Run the real operator (`detection-operator run`) as a child process, for tests, benchmarks and the demo.

A separate process rather than an in-process runner, so tests can kill it (SIGKILL mid-switch), restart it
and see exactly what a user's Deployment would do.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from .ports import free_port
from .processes import ManagedProcess, log_tail


class OperatorProcess:
    """One `detection-operator run` process against the cluster in ``kubeconfig``."""

    def __init__(
        self,
        kubeconfig: Path,
        log_file: Path,
        namespaces: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_file = log_file
        self.namespaces = tuple(namespaces)
        self.env = dict(env or {})
        self.extra_args = tuple(extra_args)
        self.liveness_port = free_port()
        self._process: ManagedProcess | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running process, if any."""
        return self._process.pid if self._process else None

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self._process is not None and self._process.running()

    def start(self, timeout: float = 60) -> None:
        """Start the operator and wait until its liveness endpoint answers."""
        argv = [sys.executable, "-m", "detection_operator", "run", "--log-format", "plain", "--verbose"]
        argv += [f"--namespace={ns}" for ns in self.namespaces]
        argv += [f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz", *self.extra_args]
        env = {**os.environ, **self.env, "KUBECONFIG": str(self.kubeconfig)}
        self._process = ManagedProcess("operator", argv, self.log_file, env=env)
        self._process.start()
        deadline = time.monotonic() + timeout
        # trust_env=False: an HTTP(S)_PROXY in the environment must not capture loopback requests.
        with httpx.Client(timeout=2, trust_env=False) as client:
            while True:
                if not self.alive():
                    raise RuntimeError(f"operator exited during start-up:\n{self.log_tail()}")
                try:
                    if client.get(f"http://127.0.0.1:{self.liveness_port}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"operator not live after {timeout}s:\n{self.log_tail()}")
                time.sleep(0.1)

    def stop(self, timeout: float = 20) -> None:
        """Stop gracefully (SIGTERM, as the kubelet does); SIGKILL if it does not exit in time."""
        if self._process is not None:
            self._process.stop(timeout)

    def kill(self) -> None:
        """SIGKILL the process, as an OOM kill or node loss would."""
        if self._process is not None:
            self._process.kill()

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the operator's log."""
        return log_tail(self.log_file, lines)

    def __enter__(self) -> OperatorProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
