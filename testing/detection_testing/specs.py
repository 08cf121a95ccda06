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


NEUROWEAVER_LABELS = '{namespace="$namespace",model="$model"}'
NEUROWEAVER_METRICS: list[dict[str, str]] = [
    {"name": "accuracy", "query": f"avg_over_time(neuroweaver_accuracy_ratio{NEUROWEAVER_LABELS}[$window])"},
    {
        "name": "latencyP95Ms",
        "query": "histogram_quantile(0.95, sum by (le) "
        f"(rate(neuroweaver_request_duration_seconds_bucket{NEUROWEAVER_LABELS}[$window]))) * 1000",
    },
    {
        "name": "successRate",
        "query": 'sum(rate(neuroweaver_requests_total{namespace="$namespace",model="$model",'
        'outcome="success"}[$window])) / '
        f"sum(rate(neuroweaver_requests_total{NEUROWEAVER_LABELS}[$window]))",
    },
    {
        # `and count(...)`: the value vanishes at the first failed scrape of a dead model (its series go
        # stale at once) instead of fading out over the window.
        "name": "requests",
        "query": f"sum(increase(neuroweaver_requests_total{NEUROWEAVER_LABELS}[$window])) "
        f"and count(neuroweaver_requests_total{NEUROWEAVER_LABELS})",
    },
]
"""The catalog over what :mod:`~detection_testing.model_server` exports (``--namespace`` set)."""


def closed_loop_route(models: list[str], **overrides: Any) -> dict[str, Any]:
    """A ModelRoute spec over model servers (scaled down: 1 s interval, 20 s window, 10 % trickle, so a
    router at 40 req/s gives the primary minRequests within one window)."""
    spec: dict[str, Any] = {
        "interval": "1s",
        "window": "20s",
        "models": [{"name": m} for m in models],
        "metrics": NEUROWEAVER_METRICS,
        "minRequests": 50,
        "failureThreshold": 2,
        "maxFailoversPerHour": 10,
        "rollback": {"stableFor": "4s", "scaleDownAfter": "3s", "trafficPercent": 10},
    }
    spec.update(overrides)
    return spec
