"""Read back what the operator did to one object: status, conditions, Events, its ConfigMap. For tests."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from detection_operator.api.base import GROUP, VERSION
from detection_operator.api.kinds import by_kind

from .kube import wait_for


class Watched:
    """One DetectionPolicy or ModelRoute in a namespace, and the ConfigMap it publishes."""

    def __init__(self, kube: client.ApiClient, namespace: str, kind: str, name: str, config_map: str) -> None:
        self.kube, self.namespace, self.name, self.config_map_name = kube, namespace, name, config_map
        self.kind, self.plural = kind, by_kind(kind).plural
        self.objects = client.CustomObjectsApi(kube)
        self.core = client.CoreV1Api(kube)

    def create(self, spec: dict[str, Any]) -> None:
        """Create the object with ``spec``."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": self.kind,
            "metadata": {"name": self.name},
            "spec": spec,
        }
        self.objects.create_namespaced_custom_object(GROUP, VERSION, self.namespace, self.plural, body)

    def status(self) -> dict[str, Any]:
        """The object's current status (empty before the first write)."""
        obj: Any = self.objects.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural, self.name
        )
        return dict(obj.get("status") or {})

    def condition(self, type_: str) -> dict[str, Any] | None:
        """One status condition, if present."""
        return next((c for c in self.status().get("conditions", []) if c["type"] == type_), None)

    def wait_condition(self, type_: str, status: str, timeout: float = 60) -> dict[str, Any]:
        """Wait until condition ``type_`` has ``status``; return it."""
        return wait_for(
            lambda: (c := self.condition(type_)) and c["status"] == status and c,
            timeout=timeout,
            interval=0.2,
            what=f"{self.name}: {type_}={status}",
        )

    def evaluations(self, count: int, timeout: float = 30) -> None:
        """Wait until the operator has evaluated the object ``count`` more times."""
        for _ in range(count):
            seen = self.status().get("lastEvaluated", "")
            wait_for(
                lambda s=seen: self.status().get("lastEvaluated", "") > s,  # type: ignore[misc]
                timeout=timeout,
                interval=0.2,
                what=f"{self.name}: an evaluation",
            )

    def config_map(self) -> client.V1ConfigMap | None:
        """The published ConfigMap, or None."""
        try:
            return self.core.read_namespaced_config_map(self.config_map_name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def document(self, key: str) -> dict[str, Any] | None:
        """A published JSON document (``profile.json``, ``route.json``), or None."""
        config_map = self.config_map()
        data = (config_map.data or {}) if config_map is not None else {}
        return json.loads(data[key]) if key in data else None

    def events(self, reason: str) -> list[str]:
        """Messages of this object's Events with ``reason``."""
        items = self.core.list_namespaced_event(self.namespace).items
        return [e.message or "" for e in items if e.reason == reason and e.involved_object.name == self.name]
