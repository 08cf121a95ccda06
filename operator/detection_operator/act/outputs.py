"""What the operator last applied to each owned ConfigMap, and whether the watch shows it drifted.

The ConfigMap is rewritten only when a decision's content changes, so without this a deleted or hand-edited
ConfigMap would stay wrong until the next real switch. The operator watches its own ConfigMaps (by the
managed-by label) and compares each event with a digest of what it applied: a deletion or a change to one
of its keys marks it stale, and the owner's next evaluation (scheduled at once) re-applies it.
Keys added by someone else are left alone (server-side apply keeps other managers' fields), so they never
cause a re-apply loop. After a restart there is no record yet: the first evaluation reads the ConfigMap once
and adopts it if it carries the current revision, else re-applies (a deletion while the operator was down).
Re-applying unconditionally instead would give every detector a new profile.json (new decidedAt) on each
operator restart. Why a watch rather than a read on every evaluation: one stream for all objects
instead of a GET per object per interval (the apiserver filters it by label), and the restore starts within
the watch latency.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..api.base import API_VERSION
from ..api.kinds import KINDS
from ..runtime.scheduler import Key

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "detection-operator"

_PLURALS = {kind.kind: kind.plural for kind in KINDS}


def _digest(data: Mapping[str, str | None]) -> str:
    return hashlib.sha256(json.dumps(dict(data), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class _Applied:
    name: str
    keys: tuple[str, ...]
    digest: str


def owner_key(config_map: Mapping[str, Any]) -> Key | None:
    """The scheduler key of the DetectionPolicy or ModelRoute controlling ``config_map``, if any."""
    metadata = config_map.get("metadata") or {}
    for owner in metadata.get("ownerReferences") or []:
        plural = _PLURALS.get(owner.get("kind", ""))
        if owner.get("controller") and owner.get("apiVersion") == API_VERSION and plural:
            return (plural, metadata.get("namespace", ""), owner.get("name", ""))
    return None


class AppliedOutputs:
    """Per object: the name and a digest of the data last applied to its ConfigMap."""

    def __init__(self) -> None:
        self._applied: dict[Key, _Applied] = {}
        self._stale: set[Key] = set()

    def record(self, key: Key, name: str, data: Mapping[str, str]) -> None:
        """Remember what is being applied (before the write, so the watch event of our own write matches)."""
        self._applied[key] = _Applied(name, tuple(sorted(data)), _digest(data))
        self._stale.discard(key)

    def forget(self, key: Key) -> None:
        """Drop everything about a deleted object."""
        self._applied.pop(key, None)
        self._stale.discard(key)

    def invalidate(self, key: Key) -> None:
        """The ConfigMap is not (or may not be) what was applied: the next evaluation re-applies it."""
        self._applied.pop(key, None)
        self._stale.add(key)

    def current(self, key: Key) -> bool:
        """Whether this process applied (or adopted) the object's ConfigMap and has seen no drift since."""
        return key in self._applied

    def stale(self, key: Key) -> bool:
        """Whether the ConfigMap was seen deleted or edited (or its write failed) since it was applied."""
        return key in self._stale

    def drifted(self, key: Key, name: str, data: Mapping[str, str] | None) -> bool:
        """Compare a watched ConfigMap (``data`` None: deleted) with the record; invalidate it on drift.

        Without a record there is nothing to compare: the owner's next evaluation checks the ConfigMap itself.
        """
        applied = self._applied.get(key)
        if applied is None or applied.name != name:
            return False  # not applied by this process yet, or a ConfigMap under a previous name
        if data is not None and _digest({k: data.get(k) for k in applied.keys}) == applied.digest:
            return False
        self.invalidate(key)
        return True
