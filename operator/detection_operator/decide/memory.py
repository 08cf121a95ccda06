"""Base of the decision state kept in ``status.memory`` between evaluations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel


class Memory(BaseModel):
    """Frozen, camelCase in status, unknown keys ignored (an older or newer operator may have written it)."""

    model_config = ConfigDict(frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True)

    @classmethod
    def load(cls, raw: Mapping[str, object] | None) -> Self:
        """Read memory from status; a damaged value starts afresh rather than crashing the evaluation."""
        try:
            return cls.model_validate(raw or {})
        except ValidationError:
            return cls()
