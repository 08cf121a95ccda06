"""Which object something is about: one identity for evaluations, writes, Events, alerts and logs."""

from __future__ import annotations

from dataclasses import dataclass, field

Key = tuple[str, str, str]
"""``(plural, namespace, name)``: the index of an object in the scheduler, caches and per-object series,
as kopf's watch events name it."""


@dataclass(frozen=True)
class ObjectRef:
    """A custom resource: its kind, namespace and name identify it (alert fingerprints, caches); its uid
    (compared by nothing) is carried for owner references and Events."""

    kind: str
    namespace: str
    name: str
    uid: str = field(default="", compare=False)
