"""What one evaluation is about: the object, its validated spec, its last status and the moment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from ..core.identity import Key, ObjectRef

S = TypeVar("S")


@dataclass(frozen=True)
class Evaluation(Generic[S]):
    """One evaluation of one object, handed to every step of its flow."""

    key: Key
    ref: ObjectRef
    spec: S
    status: Mapping[str, Any]
    """The status last written (or read from the watch), from which this evaluation starts."""
    generation: int | None
    annotations: Mapping[str, str]
    now: datetime

    @property
    def memory(self) -> Mapping[str, Any] | None:
        """``status.memory``: what the previous decision left for this one."""
        return self.status.get("memory")

    def condition(self, type_: str) -> Mapping[str, Any] | None:
        """The condition of ``type_`` in the status this evaluation started from."""
        return next((c for c in self.status.get("conditions") or () if c.get("type") == type_), None)
