"""Small valid specs the reliability tests and the load test build on (scaled-down intervals)."""

from __future__ import annotations

from typing import Any

from detection_operator.api.base import GROUP, VERSION

LATENCY_METRIC = "rel_latency_ms"


def latency_policy(**overrides: Any) -> dict[str, Any]:
    """A DetectionPolicy spec: ``lean`` while ``rel_latency_ms`` of the namespace exceeds 200, else
    ``balanced``; unknown metrics hold the profile for ``holdFor`` (1h here, so a fault never falls back)."""
    spec: dict[str, Any] = {
        "interval": "1s",
        "defaultProfile": "balanced",
        "fallbackProfile": "paranoid",
        "holdFor": "1h",
        "stabilizationWindow": "2s",
        "minDwell": "1s",
        "profiles": [
            {"name": "lean", "contributors": ["rules"]},
            {"name": "balanced", "contributors": ["rules"]},
            {"name": "paranoid", "contributors": ["rules"]},
        ],
        "rules": [
            {
                "name": "high-latency",
                "query": f'max({LATENCY_METRIC}{{namespace="$namespace"}})',
                "op": ">",
                "threshold": 200,
                "profile": "lean",
                "reason": "high latency",
            }
        ],
        "contributors": [{"name": "rules", "expense": "light"}],
        "alerts": {"receivers": ["hook"], "cooldown": "1h"},
    }
    spec.update(overrides)
    return spec


def simple_route(**overrides: Any) -> dict[str, Any]:
    """A ModelRoute spec with two models and one accuracy metric (``rel_accuracy``)."""
    labels = '{namespace="$namespace",model="$model"}'
    spec: dict[str, Any] = {
        "interval": "1s",
        "models": [{"name": "primary"}, {"name": "backup"}],
        "metrics": [{"name": "accuracy", "query": f"max(rel_accuracy{labels})"}],
        "minRequests": 0,
    }
    spec.update(overrides)
    return spec


def missing_metric_policy(interval: str = "5s") -> dict[str, Any]:
    """A DetectionPolicy ``p`` whose one rule ignores a missing metric: ``balanced`` without any data."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DetectionPolicy",
        "metadata": {"name": "p"},
        "spec": {
            "interval": interval,
            "defaultProfile": "balanced",
            "profiles": [{"name": "lean"}, {"name": "balanced"}],
            "rules": [
                {
                    "name": "latency",
                    "query": 'max(detector_latency_p95_ms{namespace="$namespace"})',
                    "op": ">",
                    "threshold": 200,
                    "profile": "lean",
                    "reason": "high latency",
                    "ignoreWhenMissing": True,
                }
            ],
        },
    }
