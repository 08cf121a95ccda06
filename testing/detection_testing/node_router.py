"""The closed loop's router run by Node.js through the TypeScript client (``clients/typescript``).

:class:`NodeRouter` has the interface of :class:`~detection_testing.router.Router` (``start``,
``stop``, ``log``, ``rejected``, ``rate``), so a closed-loop test can use either; the difference is that
this one is a separate ``node`` process that follows route.json with the TypeScript ``RouteReader``: its
own list-then-watch of the ConfigMap over HTTPS, authenticated as a ServiceAccount (a TokenRequest token,
the Role allowing only get/list/watch of that one ConfigMap), as a router Pod would be.

It writes one JSON line per request (``at`` on the monotonic clock Python's ``time.monotonic()`` reads,
the models tried, who served it, the revision it chose by); :meth:`log` reads them.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
from kubernetes import client

from .lifecycle import Started
from .processes import ManagedProcess
from .router import Sent, on_this_machine
from .tokens import service_account_token

__all__ = ["NodeRouter", "router_script"]

_START_TIMEOUT = 15.0


def router_script() -> Path:
    """The built router (``make ts`` builds it); raise naming the command when it is missing."""
    for parent in Path(__file__).resolve().parents:
        package = parent / "clients" / "typescript"
        if package.is_dir():
            script = package / "dist" / "bin" / "router.js"
            if not script.is_file():
                raise RuntimeError(f"{script} is not built: run `make ts`")
            return script
    raise RuntimeError("clients/typescript not found above the test support package")


class NodeRouter(Started):
    """Send ``rate`` requests per second by route.json through the Node.js router, retrying on fallbacks."""

    def __init__(
        self,
        kube: client.ApiClient,
        namespace: str,
        config_map: str,
        endpoints: Mapping[str, str],
        log_dir: Path,
        rate: float = 20.0,
        *,
        workers: int = 8,
        max_requests: int = 200_000,
        max_seconds: float = 1800.0,
        service_account: str = "router",
    ) -> None:
        """Prepare a stopped router for the route whose route.json is in ``config_map``."""
        for url in endpoints.values():
            if not on_this_machine(url):
                raise ValueError(f"the router only sends to this machine, not {url}")
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node (Node.js >= 20) is not on PATH")
        self.kube, self.namespace, self.config_map = kube, namespace, config_map
        self.service_account = service_account
        self.log_dir = log_dir
        self._requests = log_dir / "requests.jsonl"
        self._port_file = log_dir / "control.port"
        self._token_file = log_dir / "token"
        self._ca_file = log_dir / "ca.crt"
        self._rate = rate
        argv = [node, str(router_script()), "--namespace", namespace, "--config-map", config_map]
        argv += ["--api-server", kube.configuration.host, "--token-file", str(self._token_file)]
        if kube.configuration.ssl_ca_cert:
            argv += ["--ca-file", str(self._ca_file)]
        for model, url in endpoints.items():
            argv += ["--endpoint", f"{model}={url}"]
        argv += ["--rate", str(rate), "--workers", str(workers), "--max-requests", str(max_requests)]
        argv += ["--max-seconds", str(max_seconds), "--log", str(self._requests)]
        argv += ["--port-file", str(self._port_file)]
        self.process = ManagedProcess("node router", argv, log_dir / "router.log")
        self._http = httpx.Client(timeout=5.0)
        self._control: str | None = None

    def _grant(self) -> None:
        """A ServiceAccount that may read only the route's ConfigMap, and a token of it."""
        core, rbac = client.CoreV1Api(self.kube), client.RbacAuthorizationV1Api(self.kube)
        name, meta = self.service_account, client.V1ObjectMeta(name=self.service_account)
        core.create_namespaced_service_account(self.namespace, client.V1ServiceAccount(metadata=meta))
        rule = client.V1PolicyRule(
            api_groups=[""],
            resources=["configmaps"],
            resource_names=[self.config_map],
            verbs=["get", "list", "watch"],
        )
        rbac.create_namespaced_role(self.namespace, client.V1Role(metadata=meta, rules=[rule]))
        rbac.create_namespaced_role_binding(
            self.namespace,
            client.V1RoleBinding(
                metadata=meta,
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=name),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=self.namespace)],
            ),
        )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._token_file.write_text(service_account_token(self.kube, self.namespace, name))
        self._token_file.chmod(0o600)
        if self.kube.configuration.ssl_ca_cert:
            # A copy: the client's CA file may be a temporary one that disappears with its process.
            self._ca_file.write_bytes(Path(self.kube.configuration.ssl_ca_cert).read_bytes())

    def start(self) -> None:
        """Grant the router its ServiceAccount, start the process and wait for its control port."""
        self._grant()
        self._port_file.unlink(missing_ok=True)
        self.process.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._port_file.exists():
            if not self.process.running():
                raise RuntimeError(self.process.describe("exited at start"))
            if time.monotonic() > deadline:
                raise RuntimeError(self.process.describe(f"opened no control port within {_START_TIMEOUT}s"))
            time.sleep(0.05)
        self._control = f"http://127.0.0.1:{self._port_file.read_text()}"

    def stop(self) -> None:
        """Stop sending (in-flight requests finish) and following."""
        self.process.stop(grace=15)
        self._http.close()

    def counts(self) -> dict[str, object]:
        """The router's own counts: sent, served per model, tried per model, unserved, rejected."""
        if self._control is None:
            raise RuntimeError("the router is not started")
        response = self._http.get(f"{self._control}/counts")
        response.raise_for_status()
        result: dict[str, object] = response.json()
        return result

    @property
    def rejected(self) -> int:
        """route.json documents the TypeScript reader refused."""
        return int(str(self.counts()["rejected"]))

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        if self._control is not None:
            self._http.post(f"{self._control}/rate", json={"rate": value}).raise_for_status()
        self._rate = value

    def log(self, since: float = 0.0) -> list[Sent]:
        """Requests sent at or after ``since`` (monotonic seconds) and finished."""
        try:
            lines = self._requests.read_text().splitlines()
        except FileNotFoundError:
            return []
        sent = []
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line being written
            if row["at"] >= since:
                sent.append(Sent(row["at"], tuple(row["tried"]), row["servedBy"], row["revision"]))
        return sent
