"""Small Kubernetes conveniences for tests, benchmarks and the demo: clients, CRD install, polling."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, config

T = TypeVar("T")


def api_client(kubeconfig: Path) -> client.ApiClient:
    """An API client for ``kubeconfig`` that does not touch the global default configuration."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)


def wait_for(
    probe: Callable[[], T | None], timeout: float = 30, interval: float = 0.1, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy; return it, or raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


def install_crds(api: client.ApiClient, directory: Path, timeout: float = 60) -> list[str]:
    """Server-side apply every CRD under ``directory`` and wait until each is Established."""
    ext = client.ApiextensionsV1Api(api)
    names: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        manifest: dict[str, Any] = yaml.safe_load(path.read_text())
        name = manifest["metadata"]["name"]
        ext.patch_custom_resource_definition(
            name,
            manifest,
            field_manager="detection-operator",
            force=True,
            _content_type="application/apply-patch+yaml",
        )
        names.append(name)

    def established(name: str) -> bool:
        status = ext.read_custom_resource_definition(name).status
        conditions = (status.conditions if status else None) or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    for name in names:
        wait_for(lambda n=name: established(n), timeout=timeout, what=f"CRD {name} Established")  # type: ignore[misc]
    return names
