"""Status fields from the typed status models, serialised by them: what the CRD's schema describes is what
is written (a misspelled field is a type error here, not a key the apiserver silently prunes)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..api.common import StatusModel

M = TypeVar("M", bound=BaseModel)


def fields(status: StatusModel) -> dict[str, Any]:
    """The fields ``status`` sets, camelCase, as JSON; one set to None is None (it clears the old value)."""
    dumped = status.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)
    cleared = {
        info.alias or name: None
        for name, info in type(status).model_fields.items()
        if name in status.model_fields_set and getattr(status, name) is None
    }
    return {**cleared, **dumped}


def short(row: M) -> M:
    """``row`` with only what differs from its defaults set: status leaves the rest out (no empty cause, no
    conditions), so `kubectl get -o yaml` stays short."""
    return type(row).model_validate(row.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True))


def entries(raw: Iterable[Mapping[str, Any]] | None, model: type[M]) -> list[M]:
    """A list in status (a history) read back as ``model``; a damaged entry is dropped rather than failing
    the evaluation."""
    found = []
    for item in raw or ():
        with contextlib.suppress(ValidationError):
            found.append(model.model_validate(item))
    return found
