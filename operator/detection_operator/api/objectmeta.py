"""ObjectMeta of a namespaced custom resource, checked as the apiserver checks it on create.

Read from apimachinery ``api/validation/objectmeta.go`` and ``util/validation``: the name is a DNS-1123
subdomain (253 characters), the namespace a DNS-1123 label (63), label keys are qualified names and label
values at most 63 characters, annotation keys qualified names and all annotations together at most
256 KiB. Unknown fields (strict decoding) and values of the wrong JSON type are rejected too.
"""

from __future__ import annotations

import re
from typing import Any

from .admission import FieldError

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_ANNOTATIONS_LIMIT = 256 * 1024

_STRINGS = ("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion")
_TIMES = ("creationTimestamp", "deletionTimestamp")
_INTEGERS = ("generation", "deletionGracePeriodSeconds")
_MAPS = ("labels", "annotations")
_LISTS = ("finalizers", "ownerReferences", "managedFields")
KNOWN = frozenset((*_STRINGS, *_TIMES, *_INTEGERS, *_MAPS, *_LISTS))
"""The JSON fields of metav1.ObjectMeta."""

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def subdomain_problems(value: str) -> list[str]:
    """IsDNS1123Subdomain: what is wrong with ``value`` as an object name (empty list: nothing)."""
    return _dns_problems(
        value, 253, _SUBDOMAIN, "subdomain", "alphanumeric characters, '-' or '.'", "example.com"
    )


def label_problems(value: str) -> list[str]:
    """IsDNS1123Label: what is wrong with ``value`` as a namespace name."""
    return _dns_problems(value, 63, _LABEL, "label", "alphanumeric characters or '-'", "my-name")


def _dns_problems(
    value: str, limit: int, pattern: re.Pattern[str], what: str, chars: str, example: str
) -> list[str]:
    problems = [f"must be no more than {limit} characters"] if len(value) > limit else []
    if not pattern.fullmatch(value):
        problems.append(
            f"a lowercase RFC 1123 {what} must consist of lower case {chars}, and must start and end with an "
            f"alphanumeric character (e.g. '{example}')"
        )
    return problems


def qualified_name_problems(value: str) -> list[str]:
    """IsQualifiedName: an optional DNS subdomain prefix and '/', then a name of at most 63 characters."""
    prefix, slash, name = value.rpartition("/")
    if slash and (not prefix or prefix.count("/")):
        return ["a qualified name must have at most one '/' and a non-empty prefix before it"]
    problems = [f"prefix part {p}" for p in subdomain_problems(prefix)] if slash else []
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_NAME.fullmatch(name):
        problems.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character"
        )
    return problems


def _label_value_problems(value: str) -> list[str]:
    if len(value) > 63:
        return ["must be no more than 63 characters"]
    if value and not _QUALIFIED_NAME.fullmatch(value):
        return ["a valid label value must be empty or consist of alphanumeric characters, '-', '_' or '.'"]
    return []


def check_metadata(metadata: Any) -> list[FieldError]:
    """Every problem the apiserver finds in the ``metadata`` of a namespaced object being created."""
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        return [FieldError("metadata", f"Invalid value: must be an object, not {_json_type(metadata)}")]
    errors = [
        FieldError(f"metadata.{k}", f'unknown field "metadata.{k}"') for k in metadata if k not in KNOWN
    ]
    errors += _type_errors(metadata)
    if errors:
        return errors
    name, generate = metadata.get("name") or "", metadata.get("generateName") or ""
    if generate:
        # NameIsDNSSubdomain(prefix=true): a trailing '-' is fine in a prefix.
        masked = generate[:-1] + "a" if generate.endswith("-") else generate
        errors += [
            FieldError("metadata.generateName", f"Invalid value: {generate!r}: {p}")
            for p in subdomain_problems(masked)
        ]
    if not name and not generate:
        errors.append(FieldError("metadata.name", "Required value: name or generateName is required"))
    elif name:
        errors += [
            FieldError("metadata.name", f"Invalid value: {name!r}: {p}") for p in subdomain_problems(name)
        ]
    if namespace := metadata.get("namespace"):
        errors += [
            FieldError("metadata.namespace", f"Invalid value: {namespace!r}: {p}")
            for p in label_problems(namespace)
        ]
    if metadata.get("resourceVersion"):
        errors.append(
            FieldError(
                "metadata.resourceVersion", "resourceVersion should not be set on objects to be created"
            )
        )
    for key, value in (metadata.get("labels") or {}).items():
        errors += [
            FieldError("metadata.labels", f"Invalid value: {key!r}: {p}")
            for p in qualified_name_problems(key)
        ]
        errors += [
            FieldError(f"metadata.labels.{key}", f"Invalid value: {value!r}: {p}")
            for p in _label_value_problems(value or "")
        ]
    annotations = metadata.get("annotations") or {}
    for key in annotations:
        errors += [
            FieldError("metadata.annotations", f"Invalid value: {key!r}: {p}")
            for p in qualified_name_problems(key.lower())
        ]
    if sum(len(k) + len(v or "") for k, v in annotations.items()) > _ANNOTATIONS_LIMIT:
        errors.append(
            FieldError("metadata.annotations", f"Too long: may not be more than {_ANNOTATIONS_LIMIT} bytes")
        )
    for index, finalizer in enumerate(metadata.get("finalizers") or []):
        errors += [
            FieldError(f"metadata.finalizers[{index}]", f"Invalid value: {finalizer!r}: {p}")
            for p in qualified_name_problems(finalizer)
        ]
    return errors


def _json_type(value: Any) -> str:
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _type_errors(metadata: dict[str, Any]) -> list[FieldError]:
    """What Go's JSON decoder refuses when it fills metav1.ObjectMeta (null is always fine: zero value)."""

    def wrong(field: str, value: Any, want: str) -> FieldError:
        return FieldError(
            f"metadata.{field}",
            f"Invalid value: cannot unmarshal {_json_type(value)} into {field} of type {want}",
        )

    errors = []
    for field, value in metadata.items():
        if value is None:
            continue
        if field in _STRINGS and not isinstance(value, str):
            errors.append(wrong(field, value, "string"))
        elif field in _TIMES and not (isinstance(value, str) and _RFC3339.fullmatch(value)):
            errors.append(wrong(field, value, "RFC 3339 time"))
        elif field in _INTEGERS and (isinstance(value, bool) or not isinstance(value, int)):
            errors.append(wrong(field, value, "int64"))
        elif field in _MAPS:
            if not isinstance(value, dict):
                errors.append(wrong(field, value, "map[string]string"))
            else:
                errors += [
                    wrong(f"{field}.{k}", v, "string")
                    for k, v in value.items()
                    if v is not None and not isinstance(v, str)
                ]
        elif field in _LISTS:
            if not isinstance(value, list):
                errors.append(wrong(field, value, "array"))
            elif field == "finalizers":
                errors += [
                    wrong(f"{field}[{i}]", v, "string")
                    for i, v in enumerate(value)
                    if v is not None and not isinstance(v, str)
                ]
    return errors
