"""Run a real Prometheus server as a child process for tests, benchmarks and the demo."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import bcrypt
import httpx

from .lifecycle import Started
from .ports import LOOPBACK, LoopbackServer, free_port
from .processes import ManagedProcess

__all__ = ["PrometheusNotFoundError", "PrometheusServer", "Sample", "WebSecurity", "find_prometheus"]

_FALLBACK_BINARY = "/usr/bin/prometheus"
_POLL_INTERVAL = 0.1
_HTTP_TIMEOUT = 5.0
_PORT_ATTEMPTS = 3


class PrometheusNotFoundError(FileNotFoundError):
    """No usable Prometheus binary was found."""


class Sample(NamedTuple):
    """One element of an instant-query result."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class WebSecurity:
    """Prometheus' own TLS and basic authentication (``--web.config.file``), as a secured server has."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    """The CA that signed ``cert_file``: what clients must trust."""
    username: str
    password: str


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


class PrometheusServer(LoopbackServer, Started):
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
        rule_files: Sequence[Path] = (),
        alertmanagers: Sequence[str] = (),
        *,
        listen_host: str = LOOPBACK,
        scrape_configs: Sequence[dict[str, Any]] = (),
        web: WebSecurity | None = None,
    ) -> None:
        """Prepare (but do not start) a server; raises PrometheusNotFoundError without a binary.

        ``rule_files`` are loaded as recording/alerting rules; firing alerts go to ``alertmanagers``
        (``host:port`` targets). ``listen_host`` ``0.0.0.0`` makes it reachable from Pods on a local
        node too (``url`` stays the loopback one); ``scrape_configs`` are added after the ``exporter``
        job (e.g. Kubernetes service discovery of Pods). With ``web`` it serves HTTPS only and answers
        only requests with its basic credentials (this class's own requests carry them).
        """
        self.workdir = Path(workdir)
        self.binary = find_prometheus(binary)
        self.scrape_interval = scrape_interval
        self.extra_flags = list(extra_flags or [])
        self.rule_files = [str(path) for path in rule_files]
        self.alertmanagers = list(alertmanagers)
        self.listen_host = listen_host
        self.scrape_configs = [dict(c) for c in scrape_configs]
        self.web = web
        self._targets = list(targets)
        self._port = port
        self._process: ManagedProcess | None = None

    # -- paths and properties ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:9090`` (``https://`` with :attr:`web`)."""
        return f"{'https' if self.web else 'http'}://{self.target}"

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
    def targets(self) -> list[str]:
        """The current scrape targets."""
        return list(self._targets)

    @property
    def running(self) -> bool:
        """Whether the process is alive (a paused process counts as running)."""
        return self._process is not None and self._process.running()

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        return self._process.pid if self.running and self._process is not None else None

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
            process = self._process = ManagedProcess("Prometheus", self._argv(), self.log_path)
            process.start()
            if self._wait_ready(process, deadline):
                return
            if retry_port and attempt < _PORT_ATTEMPTS and process.lost_port_race():
                process.stop()
                self._port = 0
                continue
            message = process.describe("exited during startup")
            process.stop()
            raise RuntimeError(message)

    def stop(self, timeout: float = 10) -> None:
        """Terminate with SIGTERM (clean TSDB shutdown), SIGKILL after ``timeout``, and reap."""
        if self._process is not None:
            self._process.stop(timeout)

    def restart(self, timeout: float = 30) -> None:
        """Stop and start again on the same port with the same data directory."""
        self.stop()
        self.start(timeout=timeout)

    def pause(self) -> None:
        """Freeze the process with SIGSTOP: connections are accepted by the kernel but never answered."""
        self._require_process().send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Continue a process frozen by :meth:`pause`."""
        self._require_process().send_signal(signal.SIGCONT)

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

    def raw_samples(self, selector: str, seconds: float) -> list[tuple[float, float]]:
        """The stored (timestamp, value) samples of one series over the last ``seconds``, oldest first.

        Timestamps are when Prometheus scraped (or a rule evaluated), in Unix seconds.
        """
        with self._client() as client:
            response = client.get(f"{self.url}/api/v1/query", params={"query": f"{selector}[{seconds:g}s]"})
        series = _success_data(response)["result"]
        if len(series) != 1:
            raise RuntimeError(f"{selector} matched {len(series)} series, expected 1")
        return [(float(ts), _to_float(value)) for ts, value in series[0]["values"]]

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
        config: dict[str, Any] = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": [
                {
                    "job_name": "exporter",
                    "honor_labels": True,
                    "static_configs": [{"targets": self._targets}],
                },
                *self.scrape_configs,
            ],
        }
        if self.rule_files:
            config["rule_files"] = self.rule_files
        if self.alertmanagers:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": self.alertmanagers}]}]}
        # JSON is valid YAML, and writing it avoids hand-quoting YAML or depending on a YAML library.
        tmp = self.config_path.with_suffix(".yml.tmp")
        tmp.write_text(json.dumps(config, indent=2) + "\n")
        # Atomic replace: a reload racing the write must never read a half-written file.
        tmp.replace(self.config_path)
        if self.web is not None:
            # The fewest rounds bcrypt allows: Prometheus checks the hash at every request.
            hashed = bcrypt.hashpw(self.web.password.encode(), bcrypt.gensalt(rounds=4)).decode()
            web = {
                "tls_server_config": {
                    "cert_file": str(self.web.cert_file),
                    "key_file": str(self.web.key_file),
                },
                "basic_auth_users": {self.web.username: hashed},
            }
            self._web_config_path.write_text(json.dumps(web, indent=2) + "\n")

    @property
    def _web_config_path(self) -> Path:
        return self.workdir / "web.yml"

    def _argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_path}",
            f"--web.listen-address={self.listen_host}:{self.port}",
            "--web.enable-lifecycle",
            "--web.enable-admin-api",
            "--log.level=warn",
            *([f"--web.config.file={self._web_config_path}"] if self.web else []),
            *self.extra_flags,
        ]

    def _wait_ready(self, process: ManagedProcess, deadline: float) -> bool:
        """Wait until ``/-/ready`` answers 200 (True) or the process exits (False); stop it on timeout."""
        with self._client() as client:
            while process.running():
                try:
                    if client.get(f"{self.url}/-/ready").status_code == 200:
                        return True
                except httpx.TransportError:
                    pass  # not listening yet
                if time.monotonic() >= deadline:
                    message = process.describe(f"not ready in time on {self.url}")
                    process.stop()
                    raise RuntimeError(message)
                time.sleep(_POLL_INTERVAL)
        return False

    def _client(self) -> httpx.Client:
        secured: dict[str, Any] = {}
        if self.web is not None:
            secured["verify"] = ssl.create_default_context(cafile=str(self.web.ca_file))
            secured["auth"] = (self.web.username, self.web.password)
        # trust_env=False: an HTTP(S)_PROXY in the environment must not capture loopback requests.
        return httpx.Client(timeout=_HTTP_TIMEOUT, trust_env=False, **secured)

    def _require_process(self) -> ManagedProcess:
        if self._process is None:
            raise RuntimeError("Prometheus is not running")
        return self._process


def _success_data(response: httpx.Response) -> Any:
    """The ``data`` of a successful API response; RuntimeError with the body otherwise."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
        raise RuntimeError(f"query failed: HTTP {response.status_code}: {response.text}")
    return body["data"]


def _parse_query_response(response: httpx.Response) -> list[Sample]:
    data = _success_data(response)
    if data["resultType"] == "scalar":
        return [Sample({}, _to_float(data["result"][1]))]
    if data["resultType"] != "vector":
        raise RuntimeError(f"expected an instant vector, got {data['resultType']}: {response.text}")
    return [Sample(dict(item["metric"]), _to_float(item["value"][1])) for item in data["result"]]


def _to_float(raw: str) -> float:
    # The API spells special values the Go way ("NaN", "+Inf", "-Inf"); float() accepts all three.
    return float(raw)
