"""`history` from status: records read back from objects, filtered by time, once per id, in three formats;
`explain` shows the latest and points at `history`; the command never answers with a traceback."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from detection_operator.cli import main
from detection_operator.core.identity import ObjectRef
from detection_operator.record.audit import Origin
from detection_operator.tools import explain, history

T0 = datetime(2026, 1, 8, 12, tzinfo=UTC)
REF = ObjectRef("ModelRoute", "prod", "classifier", uid="u-1")


def status_with(*ages_in_days: float) -> dict[str, object]:
    records = [
        Origin(REF, 2, "op-0", T0 - timedelta(days=age)).record(
            "model-switch", from_="m1", to="m2", reason=f"{age} days ago", values={"m1.accuracy": 0.6}
        )
        for age in ages_in_days
    ]
    dumped = [r.model_dump(mode="json", by_alias=True) for r in records]
    return {"status": {"outbox": {"records": [*dumped, dumped[0], {"id": "damaged"}]}}}


def test_records_since_once_per_id_oldest_first() -> None:
    records = history.records_of([status_with(1, 8, 0.5)])
    assert len(records) == 4  # the damaged one is skipped, the repeat still there
    chosen = history.select(records, timedelta(days=7), T0)
    assert [r.reason for r in chosen] == ["1 days ago", "0.5 days ago"]


def test_text_json_and_csv() -> None:
    chosen = history.select(history.records_of([status_with(1)]), timedelta(days=7), T0)
    text = history.render(chosen, "text")
    assert "ModelRoute/classifier  model-switch m1 -> m2: 1 days ago [m1.accuracy=0.6]" in text
    (row,) = json.loads(history.render(chosen, "json"))
    assert row["from"] == "m1" and row["object"]["namespace"] == "prod" and row["generation"] == 2
    rows = list(csv.DictReader(io.StringIO(history.render(chosen, "csv"))))
    assert rows[0]["type"] == "model-switch" and json.loads(rows[0]["values"]) == {"m1.accuracy": 0.6}
    assert history.render([], "text") == "no records in that time"


def test_explain_links_the_latest_records() -> None:
    explained = {"kind": "ModelRoute", "namespace": "prod", "name": "classifier", "published": None}
    explained |= status_with(*[d / 10 for d in range(8)])
    text = explain.render(explained)
    assert "Latest records (all: detection-operator history mr/classifier -n prod):" in text
    assert text.count("model-switch m1 -> m2") == explain.LATEST_RECORDS


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["history", "nonsense"], "expected KIND/NAME"),
        (["history", "xx/name"], "unknown kind"),
        (["history", "--since", "soon"], "invalid duration"),
        (["history", "mr/x"], "kube-config"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
