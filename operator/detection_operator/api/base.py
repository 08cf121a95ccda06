"""Building blocks shared by both CRDs' pydantic models.

The pydantic models are the one source of truth: the CRD YAML is generated from them (`make crds`), and
every cross-field rule is declared once as an :class:`Invariant` that carries both its CEL form (enforced
by the apiserver at admission) and its Python form (enforced by the operator and `validate`), so the two
cannot drift apart silently.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    JsonValue,
    PlainSerializer,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from ..core.times import DURATION_PATTERN, parse_duration, rfc3339

GROUP = "detection.adaptive.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[
    str,
    Field(pattern=DURATION_PATTERN, max_length=32, json_schema_extra={"example": "30s"}),
    AfterValidator(_check_duration),
]
"""A Go-style duration string (``30s``, ``5m``, ``1h30m``, ``250ms``)."""

Name = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", min_length=1, max_length=63)]
"""A DNS-1123 label: lowercase letters, digits and '-'."""

ObjectName = Annotated[
    str,
    Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", min_length=1, max_length=253),
]
"""A Kubernetes object name (DNS-1123 subdomain)."""


Timestamp = Annotated[datetime, PlainSerializer(rfc3339, return_type=str, when_used="json")]
"""A time in status, written as the apiserver writes metav1.Time (whole seconds, UTC, 'Z')."""


class StatusModel(BaseModel):
    """Base of status models: camelCase on the wire; written by the operator, so nothing is forbidden."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


@dataclass(frozen=True)
class Invariant:
    """A cross-field rule, stated once in CEL for the apiserver and once in Python for the operator.

    ``field`` is the CRD ``fieldPath`` relative to the model (``.defaultProfile``); the message names it so
    both sides report the same thing.
    """

    field: str
    message: str
    cel: str
    holds: Callable[[Any], bool]


class InvariantViolation(ValueError):
    """Raised by a model when a cross-field rule does not hold; carries the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class SpecModel(BaseModel):
    """Base of every spec model: camelCase on the wire, unknown fields rejected, invariants checked."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    invariants: ClassVar[tuple[Invariant, ...]] = ()

    @model_validator(mode="after")
    def _check_invariants(self) -> SpecModel:
        self._check_list_keys()
        for invariant in type(self).invariants:
            if not invariant.holds(self):
                raise InvariantViolation(invariant.field, invariant.message)
        return self

    def _check_list_keys(self) -> None:
        """Enforce what `x-kubernetes-list-type` map/set enforces at admission: no duplicate keys."""
        for name, alias, by_name in _list_keys(type(self)):
            seen: set[object] = set()
            for index, item in enumerate(getattr(self, name)):
                key = getattr(item, "name", None) if by_name else item
                if key in seen:
                    raise InvariantViolation(f".{alias}[{index}]", f"duplicate entry {key!r}")
                seen.add(key)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        if cls.invariants:
            target["x-kubernetes-validations"] = [
                {
                    "rule": inv.cel,
                    "message": inv.message,
                    "fieldPath": inv.field,
                    "reason": "FieldValueInvalid",
                }
                for inv in cls.invariants
            ]
        return schema


def list_map(description: str, **kwargs: Any) -> Any:
    """A list of objects keyed by ``name`` (the Kubernetes idiom for maps: unique names, merge by key)."""
    extra: dict[str, JsonValue] = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
    return Field(description=description, json_schema_extra=extra, **kwargs)


def list_set(description: str, **kwargs: Any) -> Any:
    """A list of unique scalars."""
    return Field(description=description, json_schema_extra={"x-kubernetes-list-type": "set"}, **kwargs)


INTERVAL_BOUNDS = Invariant(
    field=".interval",
    message="interval must be between 1s and 1h",
    cel="duration(self.interval) >= duration('1s') && duration(self.interval) <= duration('1h')",
    holds=lambda spec: 1 <= parse_duration(spec.interval) <= 3600,
)
"""Shared by both kinds: faster than 1s floods Prometheus, slower than 1h is no longer 'adaptive'."""

WINDOW_POSITIVE = Invariant(
    field=".window",
    message="window must be longer than 0s",
    cel="duration(self.window) > duration('0s')",
    holds=lambda spec: parse_duration(spec.window) > 0,
)
"""Shared by both kinds: `$window` is a range selector's length, and rates are divided by it."""


@functools.cache
def _list_keys(model: type[BaseModel]) -> tuple[tuple[str, str, bool], ...]:
    """(field, wire name, keyed by name) for each map/set list of ``model``; read once per class, as
    walking model_fields at every validation cost more than the rest of the invariants together."""
    found = []
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra
        list_type = extra.get("x-kubernetes-list-type") if isinstance(extra, dict) else None
        if list_type in ("map", "set"):
            found.append((name, info.alias or name, list_type == "map"))
    return tuple(found)
