"""The one validation path of a spec: the apiserver's admission (:mod:`.admission`), then the models
(the CEL twins and what only we check), with failures as messages that name the field.

`validate`, `backtest` and the operator all call :func:`validate_spec`, so a spec is judged the same way
before it merges, at admission and once stored.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .admission import ADMISSION, OPERATOR, FieldError, admit, spec_schema, unknown_fields
from .base import InvariantViolation
from .common import LINT_QUERIES
from .objectmeta import check_metadata

__all__ = [
    "FieldError",
    "ValidatedSpecs",
    "errors_of",
    "field_path",
    "summary",
    "validate_object",
    "validate_spec",
]

M = TypeVar("M", bound=BaseModel)


def field_path(loc: tuple[int | str, ...], root: str = "spec") -> str:
    """Render a pydantic error location as a Kubernetes-style field path."""
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def errors_of(exc: ValidationError, root: str = "spec") -> list[FieldError]:
    """Convert a pydantic ValidationError into field errors, resolving invariants to their own field.

    Invariants are the CEL rules' twins, so the apiserver reports them too; anything else a model rejects
    after admission passed (PromQL, template variables) only the operator finds.
    """
    found: list[FieldError] = []
    for err in exc.errors():
        path = field_path(tuple(err["loc"]), root)
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, InvariantViolation):
            found.append(FieldError(path + cause.field, cause.message, ADMISSION))
            continue
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        found.append(FieldError(path, message, OPERATOR))
    return found


def validate_spec(model: type[M], spec: Any, root: str = "spec") -> tuple[M | None, list[FieldError]]:
    """Validate ``spec`` as the apiserver admits it, then as the operator reads it; return the model,
    or None with every problem found (admission problems alone when there are any: the apiserver would
    stop there)."""
    admitted, errors = admit(model, spec, root)
    if errors:
        return None, errors
    try:
        return model.model_validate(admitted), []
    except ValidationError as exc:
        errors = errors_of(exc, root)
    if any(e.stage == OPERATOR for e in errors):
        # A field that fails PromQL lint stops pydantic before the model's invariants run; judged again
        # without the lint, the spec shows the CEL errors the apiserver would report alongside.
        try:
            model.model_validate(admitted, context={LINT_QUERIES: False})
        except ValidationError as exc:
            errors = [e for e in errors_of(exc, root) if e.stage == ADMISSION] + errors
    return None, errors


def summary(errors: list[FieldError], limit: int = 5) -> str:
    """A one-paragraph message for a status condition: the first few errors, and how many more."""
    shown = "; ".join(str(e) for e in errors[:limit])
    more = len(errors) - limit
    return shown + (f" (and {more} more)" if more > 0 else "")


class ValidatedSpecs:
    """Validation results per object, reused while its uid and ``metadata.generation`` stay the same.

    The apiserver bumps the generation on every spec change (the status subresource keeps status writes
    out of it), so a spec is validated once per change instead of at every evaluation; at scale,
    validation was an eighth of the operator's CPU.
    """

    def __init__(self) -> None:
        self._by_key: dict[Hashable, tuple[str, int, BaseModel | None, list[FieldError]]] = {}

    def validate(
        self, key: Hashable, model: type[BaseModel], uid: str, generation: int | None, spec: Any
    ) -> tuple[BaseModel | None, list[FieldError]]:
        """Like :func:`validate_spec`, answered from the last result for this uid and generation."""
        known = self._by_key.get(key)
        if known is not None and known[:2] == (uid, generation):
            return known[2], known[3]
        result, errors = validate_spec(model, spec)
        if generation is not None:
            self._by_key[key] = (uid, generation, result, errors)
        return result, errors

    def forget(self, key: Hashable) -> None:
        """Drop a deleted object's result."""
        self._by_key.pop(key, None)


TOP_LEVEL = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})


def validate_object(
    spec_model: type[M], status_model: type[BaseModel], body: dict[str, Any]
) -> tuple[M | None, list[FieldError]]:
    """Validate a whole manifest of one of our kinds as a create request: top-level fields and
    ``metadata`` as the apiserver checks them, then the spec by :func:`validate_spec`. ``status`` is
    dropped on create (status subresource), so only its unknown fields are reported (strict decoding)."""
    errors = [FieldError(k, f'unknown field "{k}"') for k in body if k not in TOP_LEVEL]
    errors += check_metadata(body.get("metadata"))
    status = body.get("status")
    if isinstance(status, dict):
        errors += [
            FieldError(p, f'unknown field "{p}"')
            for p in unknown_fields(status, spec_schema(status_model), "status")
        ]
    model, spec_errors = validate_spec(spec_model, body.get("spec"))
    return model, errors + spec_errors
