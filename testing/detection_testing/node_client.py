"""Node.js processes that use the TypeScript client (``clients/typescript``, built by ``make ts``).

Each authenticates as a ServiceAccount of its own (a TokenRequest token; a Role allowing only get, list
and watch of the one ConfigMap it follows), as a data-plane Pod would.

:class:`NodeRouter` is the closed loop's router through the TypeScript client. It has the interface
of :class:`~detection_testing.router.Router` (``start``, ``stop``, ``log``, ``rejected``, ``rate``), so a
closed-loop test can use either; the difference is that this one is a separate ``node`` process that
follows route.json with the TypeScript ``RouteReader``: its own list-then-watch of the ConfigMap over
HTTPS. It writes one JSON line per request (``at`` on the
monotonic clock Python's ``time.monotonic()`` reads, the models tried, who served it, the revision it
chose by); :meth:`NodeRouter.log` reads them.

:class:`DocumentFollower` follows one document (profile.json or route.json) with the TypeScript reader,
optionally verifying its signature, and records what the reader handed out or refused.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client

from .lifecycle import Started
from .processes import ManagedProcess
from .router import Sent, on_this_machine
from .tokens import service_account_token

__all__ = ["DocumentFollower", "Followed", "NodeRouter", "script"]

_START_TIMEOUT = 15.0


def script(name: str) -> Path:
    """The built program ``name`` (``router``, ``follow``); raise naming ``make ts`` when it is missing."""
    for parent in Path(__file__).resolve().parents:
        package = parent / "clients" / "typescript"
        if package.is_dir():
            built = package / "dist" / "bin" / f"{name}.js"
            if not built.is_file():
                raise RuntimeError(f"{built} is not built: run `make ts`")
            return built
    raise RuntimeError("clients/typescript not found above the test support package")


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node (Node.js >= 20) is not on PATH")
    return node


class _ConfigMapReader:
    """A ServiceAccount that may read only one ConfigMap, and the command-line options that connect as it."""

    def __init__(
        self, kube: client.ApiClient, namespace: str, config_map: str, service_account: str, directory: Path
    ) -> None:
        self.kube, self.namespace, self.config_map = kube, namespace, config_map
        self.name, self.directory = service_account, directory
        self.token_file, self.ca_file = directory / "token", directory / "ca.crt"

    @property
    def argv(self) -> list[str]:
        """``--namespace ... --config-map ... --api-server ... --token-file ... [--ca-file ...]``."""
        argv = ["--namespace", self.namespace, "--config-map", self.config_map]
        argv += ["--api-server", self.kube.configuration.host, "--token-file", str(self.token_file)]
        return argv + (["--ca-file", str(self.ca_file)] if self.kube.configuration.ssl_ca_cert else [])

    def grant(self) -> None:
        """Create the ServiceAccount, its Role and RoleBinding, and write a token (and the CA) for it."""
        core, rbac = client.CoreV1Api(self.kube), client.RbacAuthorizationV1Api(self.kube)
        meta = client.V1ObjectMeta(name=self.name)
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
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name=self.name),
                subjects=[
                    client.RbacV1Subject(kind="ServiceAccount", name=self.name, namespace=self.namespace)
                ],
            ),
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.token_file.write_text(service_account_token(self.kube, self.namespace, self.name))
        self.token_file.chmod(0o600)
        if self.kube.configuration.ssl_ca_cert:
            # A copy: the client's CA file may be a temporary one that disappears with its process.
            self.ca_file.write_bytes(Path(self.kube.configuration.ssl_ca_cert).read_bytes())


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
        self._access = _ConfigMapReader(kube, namespace, config_map, service_account, log_dir)
        self._requests = log_dir / "requests.jsonl"
        self._port_file = log_dir / "control.port"
        self._rate = rate
        argv = [_node(), str(script("router")), *self._access.argv]
        for model, url in endpoints.items():
            argv += ["--endpoint", f"{model}={url}"]
        argv += ["--rate", str(rate), "--workers", str(workers), "--max-requests", str(max_requests)]
        argv += ["--max-seconds", str(max_seconds), "--log", str(self._requests)]
        argv += ["--port-file", str(self._port_file)]
        self.process = ManagedProcess("node router", argv, log_dir / "router.log")
        self._http = httpx.Client(timeout=5.0)
        self._control: str | None = None

    def start(self) -> None:
        """Grant the router its ServiceAccount, start the process and wait for its control port."""
        self._access.grant()
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


@dataclass(frozen=True)
class Followed:
    """What the TypeScript reader did (``at`` monotonic): handed out a document, or refused one."""

    at: float
    document: dict[str, Any] | None
    error: str | None


class DocumentFollower(Started):
    """Follow ``document`` (profile.json or route.json) with the TypeScript reader, verifying with ``key``
    when given: in ConfigMap ``config_map`` = (api, namespace, name) through the API, or in a mounted
    ``directory`` (its ``..data`` swaps)."""

    def __init__(
        self,
        log_dir: Path,
        document: str = "profile.json",
        key: bytes | None = None,
        *,
        config_map: tuple[client.ApiClient, str, str] | None = None,
        directory: Path | None = None,
        service_account: str = "follower",
    ) -> None:
        """Prepare a stopped follower of exactly one of ``config_map`` or ``directory``."""
        if (config_map is None) == (directory is None):
            raise ValueError("follow exactly one of config_map or directory")
        self._access = None if config_map is None else _ConfigMapReader(*config_map, service_account, log_dir)
        source = self._access.argv if self._access else ["--directory", str(directory)]
        self._key_file = log_dir / "key"
        self.key = key
        argv = [_node(), str(script("follow")), "--document", document, *source]
        if key is not None:
            argv += ["--key-file", str(self._key_file)]
        self._out = log_dir / "follow.jsonl"
        self.process = ManagedProcess(f"node follower of {document}", argv, self._out)

    def start(self) -> None:
        """Grant the follower its ServiceAccount (API) and start it."""
        if self._access is not None:
            self._access.grant()
        self._key_file.parent.mkdir(parents=True, exist_ok=True)
        if self.key is not None:
            self._key_file.write_bytes(self.key)
            self._key_file.chmod(0o600)
        self.process.start()

    def stop(self) -> None:
        """Stop following."""
        self.process.stop(grace=10)

    def seen(self) -> list[Followed]:
        """Every document handed out and every refusal, in order."""
        if not self.process.running() and self.process.exit_code not in (None, 0):
            raise RuntimeError(self.process.describe("exited"))
        found = []
        for line in self._out.read_text().splitlines():
            if not line.startswith("{"):
                continue  # the process log's own lines (start banner, stderr)
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line being written
            found.append(Followed(row["at"], row.get("document"), row.get("error")))
        return found
