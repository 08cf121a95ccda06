"""Our log lines through kopf's JSON formatter: one object per line, the object reference under "object"."""

from __future__ import annotations

import json
import logging

import kopf

from detection_operator.runtime.logref import about


def test_a_line_about_an_object_names_it_and_keeps_structured_fields() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    kopf.configure(log_format=kopf.LogFormat.JSON)  # what `detection-operator run --log-format json` does
    formatter = root.handlers[-1].formatter
    root.handlers[:], root.level = handlers, level
    assert formatter is not None
    record = logging.LogRecord(
        "detection_operator.reconcile.reconciler", logging.INFO, __file__, 1, "applied %s", ("x",), None
    )
    for key, value in about("DetectionPolicy", "prod", "bot-detector", identity="operator-0").items():
        setattr(record, key, value)
    line = json.loads(formatter.format(record))
    assert line["message"] == "applied x" and line["severity"] == "info"
    assert line["object"] == {"kind": "DetectionPolicy", "namespace": "prod", "name": "bot-detector"}
    assert line["identity"] == "operator-0" and "k8s_ref" not in line
