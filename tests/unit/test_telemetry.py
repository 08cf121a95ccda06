"""Per-object metric series: set, narrowed when a spec drops a name, removed when the object goes."""

from __future__ import annotations

from prometheus_client import REGISTRY

from detection_operator import telemetry
from detection_operator.core.identity import Key

KEY: Key = ("detectionpolicies", "unit-telemetry", "bot-detector")


def sample(metric: str, **labels: str) -> float | None:
    value: float | None = REGISTRY.get_sample_value(metric, labels)
    return value


def test_publish_replaces_the_items_and_forget_removes_every_series() -> None:
    series = telemetry.ObjectSeries()
    labels = {"namespace": KEY[1], "name": KEY[2]}
    series.publish(telemetry.ACTIVE_PROFILE, KEY, {"lean": 0.0, "balanced": 1.0, "paranoid": 0.0})
    assert sample("detection_operator_active_profile", **labels, profile="balanced") == 1.0
    # The spec dropped "paranoid": its series must not linger.
    series.publish(telemetry.ACTIVE_PROFILE, KEY, {"lean": 1.0, "balanced": 0.0})
    assert sample("detection_operator_active_profile", **labels, profile="lean") == 1.0
    assert sample("detection_operator_active_profile", **labels, profile="paranoid") is None
    # A None value (a model without a score) removes that item.
    series.publish(telemetry.MODEL_HEALTH, KEY, {"m1": 80.0, "m2": None})
    assert sample("detection_operator_model_health_score", **labels, model="m2") is None
    series.switched("DetectionPolicy", KEY)
    series.switched("DetectionPolicy", KEY)
    assert sample("detection_operator_switches_total", kind="DetectionPolicy", **labels) == 2.0

    series.forget(KEY)
    assert sample("detection_operator_active_profile", **labels, profile="lean") is None
    assert sample("detection_operator_model_health_score", **labels, model="m1") is None
    assert sample("detection_operator_switches_total", kind="DetectionPolicy", **labels) is None


def test_clear_removes_every_object() -> None:
    series = telemetry.ObjectSeries()
    other: Key = ("modelroutes", "unit-telemetry", "route")
    series.publish(telemetry.CONTRIBUTOR_EXPENSE, KEY, {"ml-scorer": 2.0})
    series.publish(telemetry.ACTIVE_MODEL, other, {"v3": 1.0})
    series.clear()
    assert (
        sample(
            "detection_operator_contributor_expense", namespace=KEY[1], name=KEY[2], contributor="ml-scorer"
        )
        is None
    )
    assert sample("detection_operator_active_model", namespace=other[1], name=other[2], model="v3") is None


def test_clear_of_the_moved_objects_keeps_the_others() -> None:
    # A bucket changed hands: only its objects' series go, the rest stay exported.
    series = telemetry.ObjectSeries()
    moved: Key = ("modelroutes", "unit-telemetry-moved", "route")
    series.publish(telemetry.ACTIVE_MODEL, KEY, {"v2": 1.0})
    series.publish(telemetry.ACTIVE_MODEL, moved, {"v3": 1.0})
    series.clear(lambda key: key[1] == moved[1])
    assert sample("detection_operator_active_model", namespace=moved[1], name=moved[2], model="v3") is None
    assert sample("detection_operator_active_model", namespace=KEY[1], name=KEY[2], model="v2") == 1.0
    series.clear()
