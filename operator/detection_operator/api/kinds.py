"""The two custom resource kinds: naming, presentation and the models behind them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from . import detection_policy as dp
from . import model_route as mr
from .base import API_VERSION


@dataclass(frozen=True)
class Kind:
    """Naming and presentation of one custom resource kind."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    description: str
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[dict[str, Any], ...]

    @property
    def api_version(self) -> str:
        """The apiVersion of objects of this kind."""
        return API_VERSION


_READY = {
    "name": "Ready",
    "type": "string",
    "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
}
_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

KINDS: tuple[Kind, ...] = (
    Kind(
        kind=dp.KIND,
        plural=dp.PLURAL,
        singular="detectionpolicy",
        short_names=("dp",),
        description=(
            "DetectionPolicy chooses the detection profile (e.g. lean / balanced / paranoid) a bot "
            "detector runs, from PromQL threshold rules, and publishes it in an owned ConfigMap."
        ),
        spec=dp.DetectionPolicySpec,
        status=dp.DetectionPolicyStatus,
        columns=(
            {"name": "Profile", "type": "string", "jsonPath": ".status.profile"},
            _READY,
            {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
            _AGE,
        ),
    ),
    Kind(
        kind=mr.KIND,
        plural=mr.PLURAL,
        singular="modelroute",
        short_names=("mr",),
        description=(
            "ModelRoute chooses which NeuroWeaver model serves a route, failing over to healthy "
            "backups and back, and publishes it in an owned ConfigMap."
        ),
        spec=mr.ModelRouteSpec,
        status=mr.ModelRouteStatus,
        columns=(
            {"name": "Active", "type": "string", "jsonPath": ".status.activeModel"},
            {"name": "State", "type": "string", "jsonPath": ".status.state"},
            _READY,
            {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
            _AGE,
        ),
    ),
)


def by_plural(plural: str) -> Kind:
    """Return the kind whose plural (or short name, or kind name, case-insensitive) is ``plural``."""
    wanted = plural.lower()
    for kind in KINDS:
        if wanted in (kind.plural, kind.singular, kind.kind.lower(), *kind.short_names):
            return kind
    raise KeyError(f"unknown kind {plural!r}: expected one of " + ", ".join(k.plural for k in KINDS))


def by_kind(kind_name: str) -> Kind:
    """Return the kind named ``kind_name`` (e.g. ``DetectionPolicy``)."""
    return by_plural(kind_name)
