"""The alternative users build by hand: a PrometheusRule-style alerting rule, Alertmanager, and a small
webhook receiver that patches a ConfigMap when the alert fires or resolves.

Each "lane" is one independent copy (its own rule group, alert group and ConfigMap ``diy-<lane>``), so one
metric step gives several samples with different rule-evaluation phases.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from kubernetes import client

from detection_testing.httpservice import HttpService, QuietHandler

ALERT = "BenchStepHigh"


def write_rule_file(path: Path, lanes: list[str], expr: str, interval: str, for_: str) -> Path:
    """One rule group per lane, each evaluating ``expr`` every ``interval``, firing after ``for_``."""
    groups = [
        {
            "name": f"diy-{lane}",
            "interval": interval,
            "rules": [{"alert": ALERT, "expr": expr, "for": for_, "labels": {"lane": lane}}],
        }
        for lane in lanes
    ]
    # JSON is YAML: no quoting rules to get wrong.
    path.write_text(json.dumps({"groups": groups}, indent=2) + "\n")
    return path


def config_map_name(lane: str) -> str:
    """The ConfigMap the receiver patches for ``lane``."""
    return f"diy-{lane}"


@dataclass(frozen=True)
class Delivery:
    """One webhook from Alertmanager: when it arrived (perf_counter), for which lane, firing or resolved."""

    at: float
    lane: str
    status: str


class PatchingReceiver(HttpService):
    """Alertmanager webhook receiver: firing -> ``profile: <firing>``, resolved -> ``profile: <resolved>``
    in ConfigMap ``diy-<lane>``, patched through the API server before answering 200 (500 on failure, so
    Alertmanager retries)."""

    def __init__(self, api: client.ApiClient, namespace: str, firing: str, resolved: str) -> None:
        self._core = client.CoreV1Api(api)
        self._namespace = namespace
        self._profiles = {"firing": firing, "resolved": resolved}
        self._port = 0
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []

    @property
    def deliveries(self) -> list[Delivery]:
        """Every webhook received so far, oldest first."""
        with self._lock:
            return list(self._deliveries)

    def create_config_maps(self, lanes: list[str]) -> None:
        """Create each lane's ConfigMap with the resolved profile (the receiver only patches)."""
        for lane in lanes:
            self._core.create_namespaced_config_map(
                self._namespace,
                client.V1ConfigMap(
                    metadata=client.V1ObjectMeta(name=config_map_name(lane)),
                    data={"profile": self._profiles["resolved"]},
                ),
            )

    def _handle(self, body: dict[str, Any]) -> None:
        at = time.perf_counter()
        lane, status = body["groupLabels"]["lane"], body["status"]
        with self._lock:
            self._deliveries.append(Delivery(at, lane, status))
        self._core.patch_namespaced_config_map(
            config_map_name(lane), self._namespace, {"data": {"profile": self._profiles[status]}}
        )

    def handler(self) -> type[BaseHTTPRequestHandler]:
        """Patch the ConfigMap for each Alertmanager notification."""
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                try:
                    receiver._handle(body)
                    code = 200
                except client.ApiException:
                    code = 500
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler
