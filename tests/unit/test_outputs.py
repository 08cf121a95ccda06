"""Drift detection of the owned ConfigMaps (pure bookkeeping; the restore itself is a reliability test)."""

from __future__ import annotations

from detection_operator.act.outputs import AppliedOutputs, owner_key

KEY = ("detectionpolicies", "prod", "detector")
DATA = {"profile.json": "{}", "scorecard.json": "{}"}


def config_map(kind: str = "DetectionPolicy", controller: bool = True) -> dict[str, object]:
    owner = {"apiVersion": "detection.adaptive.io/v1alpha1", "kind": kind, "name": "detector"}
    return {"metadata": {"namespace": "prod", "ownerReferences": [{**owner, "controller": controller}]}}


def test_owner_key_is_the_controlling_custom_resource() -> None:
    assert owner_key(config_map()) == KEY
    assert owner_key(config_map("ModelRoute")) == ("modelroutes", "prod", "detector")
    assert owner_key(config_map("Deployment")) is None
    assert owner_key(config_map(controller=False)) is None
    assert owner_key({"metadata": {}}) is None


def test_our_own_write_is_not_drift_but_deletion_and_edits_of_our_keys_are() -> None:
    outputs = AppliedOutputs()
    outputs.record(KEY, "cm", DATA)
    assert not outputs.drifted(KEY, "cm", dict(DATA))
    assert not outputs.drifted(KEY, "cm", {**DATA, "someone-elses": "x"})  # SSA keeps it: no loop
    assert outputs.current(KEY)
    assert outputs.drifted(KEY, "cm", {**DATA, "profile.json": '{"profile": "lean"}'})
    assert not outputs.current(KEY) and outputs.stale(KEY)
    outputs.record(KEY, "cm", DATA)
    assert not outputs.stale(KEY)
    assert outputs.drifted(KEY, "cm", None)
    assert not outputs.current(KEY) and outputs.stale(KEY)
    outputs.forget(KEY)
    assert not outputs.stale(KEY)


def test_unknown_objects_and_previous_names_are_not_drift() -> None:
    outputs = AppliedOutputs()
    assert not outputs.drifted(KEY, "cm", None)
    outputs.record(KEY, "new-name", DATA)
    assert not outputs.drifted(KEY, "old-name", None)
    assert outputs.current(KEY)
    outputs.forget(KEY)
    assert not outputs.current(KEY)
