"""A real Prometheus Alertmanager (Debian's ``prometheus-alertmanager``) that forwards to a webhook.

Grouping is made immediate by default (group_wait 0s, group_interval 1s) so tests see what Alertmanager would
route within a second.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from .lifecycle import Started
from .ports import LoopbackServer, free_port
from .processes import ManagedProcess

BINARY_CANDIDATES = ("prometheus-alertmanager", "alertmanager")


class AlertmanagerServer(LoopbackServer, Started):
    """Alertmanager on loopback whose only route posts every group (alerts grouped by ``group_by``) to
    ``webhook_url``."""

    def __init__(
        self,
        workdir: Path,
        webhook_url: str,
        group_by: Sequence[str] = ("namespace", "name"),
        group_wait: str = "0s",
        group_interval: str = "1s",
    ) -> None:
        self.workdir = workdir
        self.webhook_url = webhook_url
        self.group_by = list(group_by)
        self.group_wait = group_wait
        self.group_interval = group_interval
        self._port = 0
        self._process: ManagedProcess | None = None

    def start(self, timeout: float = 30) -> None:
        """Write the configuration, start Alertmanager and wait until it is ready."""
        binary = next((b for b in map(shutil.which, BINARY_CANDIDATES) if b), None)
        if binary is None:
            raise FileNotFoundError(
                "Alertmanager not found: `make test` installs Debian's prometheus-alertmanager"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "route": {
                "receiver": "hook",
                "group_by": self.group_by,
                "group_wait": self.group_wait,
                "group_interval": self.group_interval,
                "repeat_interval": "1h",
            },
            "receivers": [
                {"name": "hook", "webhook_configs": [{"url": self.webhook_url, "send_resolved": True}]}
            ],
        }
        # JSON is YAML: no quoting rules to get wrong.
        (self.workdir / "alertmanager.yml").write_text(json.dumps(config))
        self._port = self._port or free_port()
        argv = [
            binary,
            f"--config.file={self.workdir / 'alertmanager.yml'}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={self.target}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]
        self._process = ManagedProcess("Alertmanager", argv, self.workdir / "alertmanager.log")
        self._process.start()
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1, trust_env=False) as client:
            while True:
                if not self._process.running():
                    raise RuntimeError(self._process.describe("exited during startup"))
                try:
                    if client.get(f"{self.url}/-/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(self._process.describe(f"not ready after {timeout}s"))
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop Alertmanager."""
        if self._process is not None:
            self._process.stop()
            self._process = None
