"""Run a real Prometheus server as a child process for tests, benchmarks and the demo."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import httpx

from detection_operator.testing.ports import free_port

__all__ = ["PrometheusNotFoundError", "PrometheusServer", "Sample", "find_prometheus"]

_FALLBACK_BINARY = "/usr/bin/prometheus"
_LOG_TAIL_LINES = 40
_POLL_INTERVAL = 0.1
_HTTP_TIMEOUT = 5.0
_PORT_ATTEMPTS = 3

# Every Prometheus we started and have not reaped yet; killed at interpreter exit so a failing or
# interrupted test run never leaves servers (and their ports and data dirs) behind.
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _kill_leftovers() -> None:
    with _LIVE_LOCK:
        leftovers = list(_LIVE)
        _LIVE.clear()
    for proc in leftovers:
        if proc.poll() is None:
            proc.kill()  # SIGKILL also ends a SIGSTOPped (paused) process
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


class PrometheusNotFoundError(FileNotFoundError):
    """No usable Prometheus binary was found."""


class Sample(NamedTuple):
    """One element of an instant-query result."""

    labels: dict[str, str]
    value: float


def find_prometheus(binary: str | None = None) -> str:
    """Resolve the Prometheus binary: ``binary`` → ``$PROMETHEUS_BIN`` → ``$PATH`` → /usr/bin.

    An explicitly given binary or ``$PROMETHEUS_BIN`` that does not resolve is an error rather than
    a reason to fall through, so a typo never silently tests against a different Prometheus.
    """
    for source, candidate in (
        ("binary argument", binary),
        ("PROMETHEUS_BIN", os.environ.get("PROMETHEUS_BIN")),
    ):
        if candidate:
            resolved = shutil.which(candidate)
            if resolved is None:
                raise PrometheusNotFoundError(
                    f"Prometheus binary from {source} not found or not executable: {candidate}"
                )
            return resolved
    resolved = shutil.which("prometheus") or shutil.which(_FALLBACK_BINARY)
    if resolved is None:
        raise PrometheusNotFoundError(
            "prometheus binary not found: run `make test` (its `deps` step installs it), or"
            " `apt-get install prometheus`, or point PROMETHEUS_BIN at a binary"
        )
    return resolved


def _pdeathsig_prefix() -> list[str]:
    """Return an argv prefix that makes the child get SIGKILL when its parent thread dies.

    ``setpriv`` (util-linux) sets PR_SET_PDEATHSIG and execs, which avoids ``preexec_fn``: that
    runs Python in the forked child and can deadlock when other threads (e.g. a MetricExporter)
    hold locks. The kernel fires the signal when the *thread* that forked exits, so it is only
    used from the main thread; starting from a short-lived worker thread would kill Prometheus as
    soon as that thread finished. The atexit handler still covers that case on normal exit.
    """
    if threading.current_thread() is not threading.main_thread():
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


class PrometheusServer:
    """A Prometheus process scraping ``targets`` under job ``exporter``, listening on 127.0.0.1.

    Files live in ``workdir``: ``prometheus.yml``, ``prometheus.log`` (appended across restarts)
    and the TSDB in ``data/``, which survives :meth:`restart`.
    """

    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        scrape_interval: str = "1s",
        binary: str | None = None,
        port: int = 0,
        extra_flags: list[str] | None = None,
    ) -> None:
        """Prepare (but do not start) a server; raises PrometheusNotFoundError without a binary."""
        self.workdir = Path(workdir)
        self.binary = find_prometheus(binary)
        self.scrape_interval = scrape_interval
        self.extra_flags = list(extra_flags or [])
        self._targets = list(targets)
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    # -- paths and properties ------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        """The generated ``prometheus.yml``."""
        return self.workdir / "prometheus.yml"

    @property
    def data_path(self) -> Path:
        """The TSDB directory (``--storage.tsdb.path``)."""
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        """Where Prometheus' stdout and stderr go."""
        return self.workdir / "prometheus.log"

    @property
    def port(self) -> int:
        """The listen port; chosen on first :meth:`start` when constructed with ``port=0``."""
        if self._port == 0:
            raise RuntimeError("PrometheusServer has no port yet: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9090``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def targets(self) -> list[str]:
        """The current scrape targets."""
        return list(self._targets)

    @property
    def running(self) -> bool:
        """Whether the process is alive (a paused process counts as running)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        return self._proc.pid if self.running and self._proc is not None else None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> None:
        """Start Prometheus and wait until ``/-/ready`` answers 200; no-op if already running.

        Raises RuntimeError with the end of the log if the process exits or is not ready in time.
        """
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_path.mkdir(exist_ok=True)
        self._write_config()
        deadline = time.monotonic() + timeout
        # Only a port we picked ourselves may be swapped: free_port() can lose a race with another
        # process, but a fixed or already-used port (restart) is part of what the caller relies on.
        retry_port = self._port == 0
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            if self._port == 0:
                self._port = free_port()
            exit_code = self._spawn_and_wait(deadline)
            if exit_code is None:
                return
            log_tail = self._log_tail()
            if retry_port and attempt < _PORT_ATTEMPTS and "address already in use" in log_tail:
                self._port = 0
                continue
            raise RuntimeError(f"Prometheus exited with code {exit_code} during startup{log_tail}")

    def _spawn_and_wait(self, deadline: float) -> int | None:
        """Spawn the process and wait for readiness; return its exit code if it died first."""
        argv = [
            *_pdeathsig_prefix(),
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_path}",
            f"--web.listen-address=127.0.0.1:{self._port}",
            "--web.enable-lifecycle",
            "--web.enable-admin-api",
            "--log.level=warn",
            *self.extra_flags,
        ]
        with self.log_path.open("ab") as log:
            log.write(f"=== starting: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        with _LIVE_LOCK:
            _LIVE.add(proc)
        self._proc = proc
        self._paused = False

        with self._client() as client:
            while True:
                if proc.poll() is not None:
                    self._reap()
                    return proc.returncode
                try:
                    if client.get(f"{self.url}/-/ready").status_code == 200:
                        return None
                except httpx.TransportError:
                    pass  # not listening yet
                if time.monotonic() >= deadline:
                    self.stop()
                    raise RuntimeError(f"Prometheus not ready in time on {self.url}{self._log_tail()}")
                time.sleep(_POLL_INTERVAL)

    def stop(self, timeout: float = 10) -> None:
        """Terminate with SIGTERM (clean TSDB shutdown), SIGKILL after ``timeout``, and reap."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            if self._paused:
                # A stopped process only acts on SIGTERM once continued.
                proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._reap()

    def restart(self, timeout: float = 30) -> None:
        """Stop and start again on the same port with the same data directory."""
        self.stop()
        self.start(timeout=timeout)

    def pause(self) -> None:
        """Freeze the process with SIGSTOP: connections are accepted by the kernel but never answered."""
        self._require_proc().send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Continue a process frozen by :meth:`pause`."""
        self._require_proc().send_signal(signal.SIGCONT)
        self._paused = False

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- configuration -------------------------------------------------------------------------

    def set_targets(self, targets: Sequence[str]) -> None:
        """Replace the scrape targets and hot-reload the config (``POST /-/reload``)."""
        self._targets = list(targets)
        self._write_config()
        if not self.running:
            return
        with self._client() as client:
            # The reload handler answers only after the new config is applied, or with 500 on error.
            response = client.post(f"{self.url}/-/reload")
        if response.status_code != 200:
            raise RuntimeError(f"Prometheus reload failed ({response.status_code}): {response.text}")

    # -- queries -------------------------------------------------------------------------------

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """Run an instant query (at Unix time ``at``, default now); a scalar result is one sample."""
        params: dict[str, str] = {"query": promql}
        if at is not None:
            params["time"] = repr(at)
        with self._client() as client:
            response = client.get(f"{self.url}/api/v1/query", params=params)
        return _parse_query_response(response)

    def wait_for_series(
        self,
        query: str,
        timeout: float = 30,
        predicate: Callable[[float], bool] | None = None,
    ) -> float:
        """Poll until ``query`` returns exactly one sample (satisfying ``predicate``) and return its value.

        Raises TimeoutError carrying the last response (or transport error) on timeout.
        """
        deadline = time.monotonic() + timeout
        last = "no response yet"
        with self._client() as client:
            while True:
                try:
                    response = client.get(f"{self.url}/api/v1/query", params={"query": query})
                    last = f"HTTP {response.status_code}: {response.text}"
                    if response.status_code == 400:
                        # A PromQL syntax error never heals; fail now rather than at the deadline.
                        raise ValueError(f"bad query {query!r}: {response.text}")
                    samples = _parse_query_response(response)
                except (httpx.TransportError, RuntimeError) as exc:
                    # Transient during restart/reload; the deadline bounds how long we tolerate it.
                    last = f"{type(exc).__name__}: {exc}"
                    samples = []
                if len(samples) == 1 and (predicate is None or predicate(samples[0].value)):
                    return samples[0].value
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"query {query!r} did not yield one matching sample in {timeout}s; last: {last}"
                    )
                time.sleep(_POLL_INTERVAL)

    def wait_for_absent(self, query: str, timeout: float = 30) -> None:
        """Poll until ``query`` returns no samples (e.g. after a series went stale)."""
        deadline = time.monotonic() + timeout
        while True:
            samples = self.query(query)
            if not samples:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"query {query!r} still returns {samples} after {timeout}s")
            time.sleep(_POLL_INTERVAL)

    # -- internals -----------------------------------------------------------------------------

    def _write_config(self) -> None:
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": [
                {
                    "job_name": "exporter",
                    "honor_labels": True,
                    "static_configs": [{"targets": self._targets}],
                }
            ],
        }
        # JSON is valid YAML, and writing it avoids hand-quoting YAML or depending on a YAML library.
        tmp = self.config_path.with_suffix(".yml.tmp")
        tmp.write_text(json.dumps(config, indent=2) + "\n")
        # Atomic replace: a reload racing the write must never read a half-written file.
        tmp.replace(self.config_path)

    def _client(self) -> httpx.Client:
        # trust_env=False: an HTTP(S)_PROXY in the environment must not capture loopback requests.
        return httpx.Client(timeout=_HTTP_TIMEOUT, trust_env=False)

    def _require_proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError("Prometheus is not running")
        return self._proc

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        self._paused = False
        if proc is not None:
            with _LIVE_LOCK:
                _LIVE.discard(proc)

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        except OSError as exc:
            return f"\n(could not read {self.log_path}: {exc})"
        return f"\nlast {len(lines)} lines of {self.log_path}:\n" + "\n".join(lines)


def _parse_query_response(response: httpx.Response) -> list[Sample]:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
        raise RuntimeError(f"query failed: HTTP {response.status_code}: {response.text}")
    data = body["data"]
    if data["resultType"] == "scalar":
        return [Sample({}, _to_float(data["result"][1]))]
    if data["resultType"] != "vector":
        raise RuntimeError(f"expected an instant vector, got {data['resultType']}: {response.text}")
    return [Sample(dict(item["metric"]), _to_float(item["value"][1])) for item in data["result"]]


def _to_float(raw: str) -> float:
    # The API spells special values the Go way ("NaN", "+Inf", "-Inf"); float() accepts all three.
    return float(raw)
