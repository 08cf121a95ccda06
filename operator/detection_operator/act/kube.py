"""Everything the operator writes to the Kubernetes API, in one place.

Calls block (the official client is synchronous): the reconciler runs them in its thread pool.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..api.base import GROUP, VERSION
from ..core.identity import ObjectRef
from ..core.times import rfc3339

FIELD_MANAGER = "detection-operator"
CHECKSUM_ANNOTATION = f"{GROUP}/config-checksum"
REVISION_ANNOTATION = f"{GROUP}/revision"


def owner_reference(owner: ObjectRef) -> dict[str, Any]:
    """Owner reference that lets garbage collection delete our ConfigMap with the object."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": False,
    }


def apply_config_map(
    api: client.ApiClient, owner: ObjectRef, name: str, data: dict[str, str], annotations: dict[str, str]
) -> None:
    """Server-side apply the owned ConfigMap with our field manager (hand edits of our keys are undone)."""
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "detection-operator",
                f"{GROUP}/{owner.kind.lower()}": owner.name,
            },
            "annotations": annotations,
            "ownerReferences": [owner_reference(owner)],
        },
        "data": data,
    }
    client.CoreV1Api(api).patch_namespaced_config_map(
        name,
        owner.namespace,
        manifest,
        field_manager=FIELD_MANAGER,
        force=True,
        _content_type="application/apply-patch+yaml",
    )


@dataclass(frozen=True)
class ConfigMapState:
    """What drift detection needs to know about an existing ConfigMap."""

    data: dict[str, str]
    annotations: dict[str, str]


def read_config_map(api: client.ApiClient, namespace: str, name: str) -> ConfigMapState | None:
    """A ConfigMap's data and annotations, or None if it does not exist."""
    try:
        config_map = client.CoreV1Api(api).read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    annotations = config_map.metadata.annotations if config_map.metadata else None
    return ConfigMapState(dict(config_map.data or {}), dict(annotations or {}))


def annotate_deployment(api: client.ApiClient, namespace: str, name: str, checksum: str) -> bool:
    """Put the config checksum on the Deployment's pod template (which rolls it); False if it is missing."""
    patch = {"spec": {"template": {"metadata": {"annotations": {CHECKSUM_ANNOTATION: checksum}}}}}
    try:
        client.AppsV1Api(api).patch_namespaced_deployment(name, namespace, patch)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


@dataclass(frozen=True)
class DeploymentState:
    """What the route decision needs to know about a model's Deployment."""

    replicas: int
    available: int


def read_deployment(api: client.ApiClient, namespace: str, name: str) -> DeploymentState | None:
    """Replica counts of a Deployment, or None if it does not exist."""
    try:
        deployment = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    replicas = deployment.spec.replicas if deployment.spec and deployment.spec.replicas is not None else 1
    available = (deployment.status.available_replicas if deployment.status else None) or 0
    return DeploymentState(replicas=replicas, available=available)


def scale_deployment(api: client.ApiClient, namespace: str, name: str, replicas: int) -> bool:
    """Set a Deployment's replicas through its scale subresource; False if it does not exist."""
    try:
        client.AppsV1Api(api).patch_namespaced_deployment_scale(
            name, namespace, {"spec": {"replicas": replicas}}
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def post_event(
    api: client.ApiClient,
    regarding: ObjectRef,
    type_: str,
    reason: str,
    message: str,
    instance: str,
    name: str | None = None,
) -> None:
    """Record a Kubernetes Event on the object (shown by `kubectl describe`); ``instance`` names the
    replica that made the decision (reportingInstance). With a ``name``, posting it again is a no-op (the
    apiserver answers 409): an Event of an audit record is posted once however often it is delivered."""
    now = datetime.now(UTC)
    metadata = {"name": name} if name else {"generateName": f"{regarding.name}."}
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {**metadata, "namespace": regarding.namespace},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": regarding.kind,
            "name": regarding.name,
            "namespace": regarding.namespace,
            "uid": regarding.uid,
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "detection-operator"},
        "reportingComponent": "detection-operator",
        "reportingInstance": instance,
        "firstTimestamp": rfc3339(now),
        "lastTimestamp": rfc3339(now),
        "count": 1,
    }
    try:
        client.CoreV1Api(api).create_namespaced_event(regarding.namespace, event)  # type: ignore[arg-type]
    except ApiException as exc:
        if name and exc.status == 409:
            return
        if _namespace_terminating(exc):
            return  # the namespace is being deleted with the object: nobody will read the Event
        raise


def _namespace_terminating(exc: ApiException) -> bool:
    """Whether the apiserver refused a create because the namespace is being deleted (403, cause
    NamespaceTerminating): not a permission problem, and retrying cannot succeed."""
    if exc.status != 403 or not exc.body:
        return False
    try:
        body = json.loads(exc.body)
    except (TypeError, ValueError):
        return False
    causes = (body.get("details") or {}).get("causes") or [] if isinstance(body, dict) else []
    return any(isinstance(c, dict) and c.get("reason") == "NamespaceTerminating" for c in causes)


def read_secret(api: client.ApiClient, namespace: str, name: str) -> dict[str, bytes]:
    """All keys of a Secret, decoded. The values must never be logged or written anywhere."""
    secret = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    return {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}
