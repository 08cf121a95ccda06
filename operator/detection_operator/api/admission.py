"""What the apiserver does to one of our objects before it stores it, done the same way here.

The apiserver does not run our pydantic models: it decodes JSON (int64, else float64; NaN and Inf
cannot be sent), drops or (with ``fieldValidation=Strict``, as kubectl sends) rejects unknown fields,
prunes ``null`` where a field is neither nullable nor defaulted, applies the schema's defaults, then
validates types strictly, formats, bounds, patterns and list keys against the *generated* structural
schema, ObjectMeta by its own rules, and finally the CEL rules. This module interprets that same
generated schema with those semantics, so `validate` and the operator admit exactly what the apiserver
admits; the models then add the CEL twins and the checks only we can make (PromQL).

Sources read: apiextensions-apiserver ``schema/defaulting`` (prunenulls, algorithm), ``pruning``,
kube-openapi ``validation/validate`` (type.go: a float that is a JSON integer is an integer) and
``strfmt`` (date-time), apimachinery ``util/json`` (number conversion) and ``util/validation`` (names).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import BaseModel

ADMISSION = "admission"
"""Stage of an error the apiserver reports too: the object is rejected and never stored."""
OPERATOR = "operator"
"""Stage of an error only we find (PromQL, template variables): stored, then marked InvalidSpec."""


@dataclass(frozen=True)
class FieldError:
    """One problem with an object: the field path (``spec.rules[0].for``), what is wrong with it, and
    who finds it (:data:`ADMISSION` or :data:`OPERATOR`)."""

    path: str
    message: str
    stage: str = ADMISSION

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


INT64 = (-(2**63), 2**63 - 1)
_MAX_JSON_INTEGER = float(2**53 - 1)
"""kube-openapi accepts a float for an integer field only within +-(2^53 - 1) (swag.IsFloat64AJSONInteger)."""

KNOWN_KEYWORDS = frozenset(
    {
        "type",
        "description",
        "default",
        "properties",
        "required",
        "items",
        "additionalProperties",
        "enum",
        "format",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-validations",
        "x-kubernetes-preserve-unknown-fields",
    }
)
"""Every schema keyword this module enforces or knows to be the CEL layer's; a unit test fails when the
generated CRDs use any other, so a new keyword cannot be silently ignored here."""


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def show(value: Any) -> str:
    """A value as the apiserver's field errors quote it (JSON)."""
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- decoding: what survives the trip through JSON -------------------------------------------------


def decode(value: Any, path: str, errors: list[FieldError]) -> Any:
    """``value`` as the apiserver's JSON decoder sees it: integers beyond int64 become floats; NaN, Inf
    and floats out of range cannot be encoded at all (kubectl and the API client refuse them)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if INT64[0] <= value <= INT64[1]:
            return value
        try:
            return float(value)
        except OverflowError:
            errors.append(FieldError(path, f"Invalid value: {value}: number out of range for JSON"))
            return value
    if isinstance(value, float):
        if not math.isfinite(value):
            errors.append(FieldError(path, f"Invalid value: {value}: NaN and Infinity cannot be stored"))
        return value
    if isinstance(value, dict):
        return {k: decode(v, _path(path, k), errors) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v, _path(path, i), errors) for i, v in enumerate(value)]
    errors.append(FieldError(path, f"Invalid value: {type(value).__name__} is not a JSON value"))
    return value


# --- pruning, null pruning, defaulting -------------------------------------------------------------


def _child_schema(schema: Mapping[str, Any] | None, key: str) -> Mapping[str, Any] | None:
    if schema is None:
        return None
    props = schema.get("properties", {})
    if key in props:
        child: Mapping[str, Any] = props[key]
        return child
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, Mapping) else None


def unknown_fields(value: Any, schema: Mapping[str, Any], path: str) -> Iterator[str]:
    """Paths of fields the schema does not declare (strict field validation reports each of them)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            where = _path(path, key)
            if props is not None and key in props:
                yield from unknown_fields(child, props[key], where)
            elif isinstance(extra, Mapping):
                yield from unknown_fields(child, extra, where)
            elif props is not None or extra is False:
                yield where
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield from unknown_fields(item, schema["items"], _path(path, index))


def prune_nulls_and_default(value: Any, schema: Mapping[str, Any] | None) -> Any:
    """Drop ``null`` fields that are neither nullable nor defaulted, then fill in defaults (in place)."""
    if schema is None:
        return value
    if isinstance(value, dict):
        for key in [k for k, v in value.items() if v is None]:
            child = _child_schema(schema, key)
            if child is not None and "default" not in child:
                del value[key]
        for key, prop in schema.get("properties", {}).items():
            if "default" in prop and value.get(key) is None:
                value[key] = copy.deepcopy(prop["default"])
        for key, child_value in value.items():
            prune_nulls_and_default(child_value, _child_schema(schema, key))
    elif isinstance(value, list):
        items = schema.get("items")
        for index, item in enumerate(value):
            if item is None and isinstance(items, Mapping) and "default" in items:
                value[index] = copy.deepcopy(items["default"])
            prune_nulls_and_default(value[index], items if isinstance(items, Mapping) else None)
    return value


# --- validation against the structural schema -----------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_json_integer(value: float) -> bool:
    """A float the apiserver takes for an integer: kube-openapi's type check (swag.IsFloat64AJSONInteger:
    finite, within 2^53) and then its range check, which parses the float's shortest decimal form as an
    int64, so only an exactly whole float passes (``2.0``, never ``3.0000000001``)."""
    return math.isfinite(value) and abs(value) <= _MAX_JSON_INTEGER and value == math.floor(value)


def _type_matches(value: Any, wanted: str) -> bool:
    found = _json_type(value)
    if wanted == "number":
        return found in ("number", "integer")
    if wanted == "integer":
        return found == "integer" or (found == "number" and _is_json_integer(value))
    return found == wanted


@functools.cache
def go_regex(pattern: str) -> re.Pattern[str]:
    """A Go (RE2) pattern as a Python regex with the same meaning for what our schemas use: ``$`` is the
    end of the text (Python's also matches before a final newline) and ``\\s`` is ASCII whitespace
    without ``\\v``."""
    translated = re.sub(r"(?<!\\)\$", r"\\Z", pattern)
    translated = translated.replace(r"[^\s", r"[^\t\n\f\r ").replace(r"\s", r"[\t\n\f\r ]")
    return re.compile(translated)


_DATE_TIME = re.compile(r"^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$")


def is_date_time(text: str) -> bool:
    """kube-openapi's strfmt.IsDateTime, the check behind ``format: date-time``."""
    if len(text) < 4:
        return False
    parts = text.lower().split("t")
    if len(parts) < 2 or not _is_full_date(parts[0]):
        return False
    match = _DATE_TIME.match(parts[1])
    if match is None:
        return False
    return match.group(1) <= "23" and match.group(2) <= "59" and match.group(3) <= "59"


def _is_full_date(text: str) -> bool:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


_FORMATS = {"date-time": is_date_time}


def validate_value(value: Any, schema: Mapping[str, Any], path: str) -> list[FieldError]:
    """Every schema violation of ``value`` (already pruned and defaulted), apiserver-style messages."""
    wanted = schema.get("type")
    if value is None:
        return [FieldError(path, f"Invalid value: null: {path} in body must be of type {wanted}")]
    if wanted and not _type_matches(value, wanted):
        found = _json_type(value)
        return [
            FieldError(path, f'Invalid value: "{found}": {path} in body must be of type {wanted}: "{found}"')
        ]
    errors: list[FieldError] = []
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(show(v) for v in schema["enum"])
        errors.append(FieldError(path, f"Unsupported value: {show(value)}: supported values: {supported}"))
    if isinstance(value, str):
        errors += _string_errors(value, schema, path)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        errors += _number_errors(value, schema, path)
    elif isinstance(value, list):
        errors += _list_errors(value, schema, path)
    elif isinstance(value, dict):
        errors += _object_errors(value, schema, path)
    return errors


def _string_errors(value: str, schema: Mapping[str, Any], path: str) -> list[FieldError]:
    errors = []
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(FieldError(path, f"Too long: may not be more than {schema['maxLength']} bytes"))
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(
            FieldError(
                path,
                f"Invalid value: {show(value)}: {path} in body should be at least {schema['minLength']} "
                "chars long",
            )
        )
    if "pattern" in schema and not go_regex(schema["pattern"]).search(value):
        errors.append(
            FieldError(
                path, f"Invalid value: {show(value)}: {path} in body should match '{schema['pattern']}'"
            )
        )
    check = _FORMATS.get(schema.get("format", ""))
    if check is not None and not check(value):
        errors.append(
            FieldError(
                path, f"Invalid value: {show(value)}: {path} in body must be of type {schema['format']}"
            )
        )
    return errors


def _number_errors(value: float, schema: Mapping[str, Any], path: str) -> list[FieldError]:
    errors = []
    if "minimum" in schema:
        low = schema["minimum"]
        if value < low or (schema.get("exclusiveMinimum") and value == low):
            relation = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
            errors.append(
                FieldError(path, f"Invalid value: {show(value)}: {path} in body should be {relation} {low}")
            )
    if "maximum" in schema:
        high = schema["maximum"]
        if value > high or (schema.get("exclusiveMaximum") and value == high):
            relation = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
            errors.append(
                FieldError(path, f"Invalid value: {show(value)}: {path} in body should be {relation} {high}")
            )
    return errors


def _list_errors(value: list[Any], schema: Mapping[str, Any], path: str) -> list[FieldError]:
    errors = []
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(
            FieldError(path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items")
        )
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(
            FieldError(
                path,
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{schema['minItems']} items",
            )
        )
    items = schema.get("items")
    if isinstance(items, Mapping):
        for index, item in enumerate(value):
            errors += validate_value(item, items, _path(path, index))
    if errors:
        return errors
    list_type = schema.get("x-kubernetes-list-type")
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen: set[str] = set()
    for index, item in enumerate(value):
        identity = (
            item if list_type == "set" else {k: item.get(k) for k in keys} if list_type == "map" else None
        )
        if identity is None:
            continue
        marker = json.dumps(identity, sort_keys=True)
        if marker in seen:
            errors.append(FieldError(_path(path, index), f"Duplicate value: {show(identity)}"))
        seen.add(marker)
    return errors


def _object_errors(value: dict[str, Any], schema: Mapping[str, Any], path: str) -> list[FieldError]:
    errors = [
        FieldError(_path(path, k), "Required value") for k in schema.get("required", ()) if k not in value
    ]
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for key, child in value.items():
        if key in props:
            errors += validate_value(child, props[key], _path(path, key))
        elif isinstance(extra, Mapping):
            errors += validate_value(child, extra, _path(path, key))
    return errors


# --- the whole of it, for a spec ------------------------------------------------------------------


@functools.cache
def spec_schema(model: type[BaseModel]) -> Mapping[str, Any]:
    """The structural schema the CRD carries for ``model`` (generated from it once, then reused)."""
    from .crd import structural_schema  # crd imports the kinds, which import the models: import late

    return structural_schema(model)


def admit(model: type[BaseModel], raw: Any, root: str = "spec") -> tuple[Any, list[FieldError]]:
    """``raw`` decoded, pruned, defaulted and validated as the apiserver would; the value it would
    store, and every error (admission errors; CEL rules are the models' invariants, checked after)."""
    schema = spec_schema(model)
    errors: list[FieldError] = []
    value = decode(raw, root, errors)
    if errors:
        return None, errors
    errors += [FieldError(p, f'unknown field "{p}"') for p in unknown_fields(value, schema, root)]
    value = prune_nulls_and_default(copy.deepcopy(value), schema)
    if value is None:
        return None, [*errors, FieldError(root, "Required value")]
    errors += validate_value(value, schema, root)
    return value, errors
