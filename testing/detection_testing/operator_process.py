"""Run the real operator (`detection-operator run`) as a child process, for tests, benchmarks and the demo.

A separate process rather than an in-process runner, so tests can kill it (SIGKILL mid-switch), restart it
and see exactly what a user's Deployment would do.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .lifecycle import Started
from .ports import free_port
from .processes import ManagedProcess, log_tail


class OperatorProcess(Started):
    """One `detection-operator run` process against the cluster in ``kubeconfig``.

    ``pod_name`` is its leader-election identity, stable across restarts like a StatefulSet pod's, so a
    restarted operator re-acquires its own Lease at once. The Lease lives in the first watched namespace
    (each test has its own), so tests never wait for a Lease a previous test's operator still holds.
    """

    def __init__(
        self,
        kubeconfig: Path,
        log_file: Path,
        namespaces: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        pod_name: str = "operator-0",
        log_format: str = "plain",
        verbose: bool = True,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_file = log_file
        self.namespaces = tuple(namespaces)
        self.env = {
            "POD_NAME": pod_name,
            "DETECTION_OPERATOR_LEASE_NAMESPACE": self.namespaces[0] if self.namespaces else "default",
            **(env or {}),
        }
        self.extra_args = tuple(extra_args)
        self.log_format = log_format
        self.verbose = verbose
        """Debug logging, as tests want it; benchmarks turn it off to measure what production runs."""
        self.http_port = free_port()
        self._process: ManagedProcess | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running process, if any."""
        return self._process.pid if self._process else None

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self._process is not None and self._process.running()

    @property
    def url(self) -> str:
        """Base URL of its HTTP endpoints (/healthz, /readyz, /metrics)."""
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 60) -> None:
        """Start the operator and wait until its liveness endpoint answers."""
        argv = [
            sys.executable,
            "-m",
            "detection_operator",
            "run",
            "--log-format",
            self.log_format,
            *(["--verbose"] if self.verbose else []),
        ]
        argv += [f"--namespace={ns}" for ns in self.namespaces]
        argv += self.extra_args
        env = {
            **os.environ,
            **self.env,
            "KUBECONFIG": str(self.kubeconfig),
            "DETECTION_OPERATOR_HTTP_PORT": str(self.http_port),
        }
        self._process = ManagedProcess("operator", argv, self.log_file, env=env)
        self._process.start()
        deadline = time.monotonic() + timeout
        # trust_env=False: an HTTP(S)_PROXY in the environment must not capture loopback requests.
        with httpx.Client(timeout=2, trust_env=False) as client:
            while True:
                if not self.alive():
                    raise RuntimeError(f"operator exited during start-up:\n{self.log_tail()}")
                try:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"operator not live after {timeout}s:\n{self.log_tail()}")
                time.sleep(0.1)

    def metrics(self) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
        """Its /metrics, parsed: sample name -> {frozenset of (label, value)} -> value."""
        with httpx.Client(timeout=10, trust_env=False) as client:
            text = client.get(f"{self.url}/metrics").raise_for_status().text
        samples: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = frozenset(sample.labels.items())
                samples.setdefault(sample.name, {})[labels] = sample.value
        return samples

    def stop(self, timeout: float = 20) -> None:
        """Stop gracefully (SIGTERM, as the kubelet does); SIGKILL if it does not exit in time."""
        if self._process is not None:
            self._process.stop(timeout)

    def kill(self) -> None:
        """SIGKILL the process, as an OOM kill or node loss would."""
        if self._process is not None:
            self._process.kill()

    def pause(self) -> None:
        """SIGSTOP the process, as a frozen node or a long GC pause would look from outside."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused process."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the operator's log."""
        return log_tail(self.log_file, lines)
