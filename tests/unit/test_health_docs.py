"""The Argo CD health check ships in docs/ and in the chart, identical, and says what its table says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from detection_testing.health import HEALTH_LUA, argocd_health

REPO = Path(__file__).resolve().parents[2]
DOCS, CHART = REPO / "docs/argocd", REPO / "charts/detection-operator/docs/argocd"


def test_chart_ships_the_same_files() -> None:
    # test_api checks each generated copy's content; this catches a stray file on either side.
    assert sorted(p.name for p in CHART.iterdir()) == sorted(p.name for p in DOCS.iterdir())


def test_argocd_cm_patch_carries_health_lua_for_both_kinds() -> None:
    data = yaml.safe_load((DOCS / "argocd-cm-patch.yaml").read_text())["data"]
    assert set(data) == {
        "resource.customizations.health.detection.adaptive.io_DetectionPolicy",
        "resource.customizations.health.detection.adaptive.io_ModelRoute",
    }
    assert all(text == HEALTH_LUA.read_text() for text in data.values())


def obj(generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "detection.adaptive.io/v1alpha1", "kind": "ModelRoute"}
    body["metadata"] = {"name": "r", "generation": generation}
    return body if status is None else dict(body, status=status)


def cond(type_: str, status: str, reason: str, generation: int = 2) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": reason,
        "observedGeneration": generation,
    }


@pytest.mark.parametrize(
    ("status", "health"),
    [
        (None, "Progressing"),  # as if the CRD default were missing
        ({"observedGeneration": 0}, "Progressing"),
        ({"observedGeneration": 1, "conditions": [cond("Ready", "True", "Published", 1)]}, "Progressing"),
        ({"observedGeneration": 2, "conditions": [cond("Ready", "True", "Published", 1)]}, "Progressing"),
        ({"observedGeneration": 2, "conditions": [cond("Ready", "True", "Published")]}, "Healthy"),
        ({"observedGeneration": 2, "conditions": [cond("Ready", "Unknown", "Evaluating")]}, "Progressing"),
        ({"observedGeneration": 2, "conditions": [cond("Ready", "False", "InvalidSpec")]}, "Degraded"),
        ({"observedGeneration": 2, "conditions": [cond("Ready", "False", "OutputFailed")]}, "Degraded"),
        (
            {
                "observedGeneration": 2,
                "conditions": [
                    cond("Ready", "True", "Published"),
                    cond("Degraded", "True", "NoHealthyBackup"),
                ],
            },
            "Degraded",
        ),
    ],
)
def test_health_table(status: dict[str, Any] | None, health: str) -> None:
    assert argocd_health(obj(2, status))["status"] == health
