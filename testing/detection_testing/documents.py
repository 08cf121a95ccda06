"""Edit manifests by dotted paths (``spec.rules[0].op``): how tests derive malformed objects from examples."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parts(path: str) -> list[str | int]:
    return [int(index) if index else key for key, index in _PART.findall(path)]


def edited(
    document: Mapping[str, Any], set_: Mapping[str, Any] | None = None, delete: Iterable[str] = ()
) -> dict[str, Any]:
    """A deep copy of ``document`` with the paths in ``set_`` assigned and those in ``delete`` removed."""
    result: dict[str, Any] = copy.deepcopy(dict(document))
    for path, value in (set_ or {}).items():
        *parents, last = _parts(path)
        target: Any = result
        for part in parents:
            target = target[part]
        target[last] = copy.deepcopy(value)
    for path in delete:
        *parents, last = _parts(path)
        target = result
        for part in parents:
            target = target[part]
        del target[last]
    return result
