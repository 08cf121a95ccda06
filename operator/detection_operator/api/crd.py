"""Generate the CustomResourceDefinitions from the pydantic models (see ``api.generate``).

pydantic emits JSON Schema 2020-12 with ``$ref``s; a CRD needs a *structural* OpenAPI v3.0 schema: no refs,
no ``anyOf`` for optionals, boolean ``exclusiveMinimum``, no ``additionalProperties`` beside
``properties``. This module does that translation and nothing else.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from .base import GROUP, VERSION
from .kinds import Kind

_DROP_KEYS = {"title", "examples", "example"}


class _WithFactoryDefaults(GenerateJsonSchema):
    """Publish ``default_factory`` defaults too, so the apiserver fills in what the models would."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()  # type: ignore[call-arg]
        return super().get_default_value(schema)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Return the structural OpenAPI v3 schema of ``model`` (validation mode, camelCase names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_WithFactoryDefaults)
    defs = raw.pop("$defs", {})
    converted: dict[str, Any] = _convert(raw, defs)
    return converted


def _convert(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").split("/")[-1]])
        # Keys beside the $ref (the field's description, default) describe the use and win over the def's.
        target.update(node)
        node = target
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express a union of {len(branches)} types structurally: {branches}")
        merged = dict(branches[0])
        merged.update(node)
        node = merged
        if node.get("default", ...) is None:
            del node["default"]
        if "$ref" in node:
            return _convert(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _convert(prop, defs) for name, prop in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _convert(value, defs)
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out.get(bound), bool):
            out[flag] = out.pop(bound)
            out[bound] = True
    if "properties" in out or out.get("additionalProperties") is True:
        out.pop("additionalProperties", None)
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out["type"] = "object"
    if "default" in out:
        out["default"] = _without_nulls(out["default"])
    return out


def crd_for(kind: Kind) -> dict[str, Any]:
    """Return the CustomResourceDefinition manifest of ``kind``."""
    spec_schema = structural_schema(kind.spec)
    spec_schema["description"] = f"Desired behaviour of the {kind.kind}."
    status_schema = structural_schema(kind.status)
    status_schema["description"] = f"Observed state of the {kind.kind}, written by the operator."
    # Until the operator's first status write, an object has no status at all, and kstatus (Flux's
    # health checks) would call it Current. The apiserver applies this default whenever it serves the
    # object, so generation 1 vs observedGeneration 0 reads as "not yet reconciled" everywhere.
    status_schema["default"] = {"observedGeneration": 0}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "detection-operator"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": ["detection"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(kind.columns),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": kind.description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render(kind: Kind) -> str:
    """Return the YAML text of ``kind``'s CRD exactly as committed under ``crds/``."""
    header = "# Generated from operator/detection_operator/api by `make crds`. Do not edit.\n"
    return header + yaml.safe_dump(crd_for(kind), sort_keys=False, width=100)


def file_name(kind: Kind) -> str:
    """File name of ``kind``'s CRD under ``crds/``."""
    return f"{GROUP}_{kind.plural}.yaml"
