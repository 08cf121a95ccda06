"""Act as a ServiceAccount against a real apiserver: a TokenRequest token in a kubeconfig of its own."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client


def service_account_token(
    api: client.ApiClient, namespace: str, name: str, expiration_seconds: int = 3600
) -> str:
    """A token of ServiceAccount ``namespace/name`` from the TokenRequest API (what the kubelet mounts into
    a pod), so the apiserver authorizes every request exactly as it would that pod's."""
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
    )
    issued = client.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, request)
    if issued.status is None:
        raise RuntimeError(f"TokenRequest for ServiceAccount {namespace}/{name} returned no token")
    return str(issued.status.token)


def service_account_kubeconfig(
    api: client.ApiClient, namespace: str, name: str, path: Path, expiration_seconds: int = 3600
) -> Path:
    """Write a kubeconfig at ``path`` that authenticates as ServiceAccount ``namespace/name`` with a
    :func:`service_account_token`. Server and CA are ``api``'s.
    """
    token = service_account_token(api, namespace, name, expiration_seconds)
    cluster: dict[str, Any] = {"server": api.configuration.host}
    if api.configuration.ssl_ca_cert:
        # Embedded: the client's CA file may be a temporary copy that disappears with its process.
        ca = Path(api.configuration.ssl_ca_cert).read_bytes()
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "cluster", "user": name, "namespace": namespace}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
