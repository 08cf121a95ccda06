"""`detection-operator history [dp/NAME|mr/NAME] [-n NS] --since 7d [--output text|json|csv]`.

The audit records of one object, or of every DetectionPolicy and ModelRoute in a namespace, oldest first.
This reads them from each object's status (the outbox keeps the recent and the undelivered ones); a
configured history store holds everything since its retention began.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from kubernetes import client
from pydantic import ValidationError

from ..api.base import GROUP, VERSION
from ..api.kinds import KINDS, Kind, by_plural
from ..api.records import AuditRecord
from ..core.times import rfc3339

CSV_COLUMNS = (
    "time",
    "kind",
    "namespace",
    "name",
    "type",
    "from",
    "to",
    "reason",
    "values",
    "thresholds",
    "operator",
    "generation",
    "id",
)


def parse_target(target: str | None) -> tuple[Kind | None, str | None]:
    """``dp/NAME`` or ``mr/NAME`` (None: every object of both kinds)."""
    if target is None:
        return None, None
    kind_name, _, name = target.partition("/")
    if not name:
        raise ValueError(f"{target!r}: expected KIND/NAME, e.g. dp/bot-detector or mr/bot-classifier")
    return by_plural(kind_name), name


def records_of(objects: Iterable[dict[str, Any]]) -> list[AuditRecord]:
    """The records in the objects' status outboxes; a damaged record is skipped, not fatal."""
    found = []
    for obj in objects:
        for raw in ((obj.get("status") or {}).get("outbox") or {}).get("records") or ():
            try:
                found.append(AuditRecord.model_validate(raw))
            except ValidationError:
                continue
    return found


def from_status(api: client.ApiClient, target: str | None, namespace: str) -> list[AuditRecord]:
    """Read the records of ``target`` (or of every object in ``namespace``) from the cluster."""
    kind, name = parse_target(target)
    custom = client.CustomObjectsApi(api)
    if kind is not None and name is not None:
        obj: Any = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, kind.plural, name)
        return records_of([obj])
    objects: list[dict[str, Any]] = []
    for each in KINDS:
        listed: Any = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, each.plural)
        objects += listed.get("items") or []
    return records_of(objects)


def select(records: Iterable[AuditRecord], since: timedelta, now: datetime) -> list[AuditRecord]:
    """Records decided within ``since`` of ``now``, each once (by id), oldest first."""
    unique = {r.id: r for r in records if r.time >= now - since}
    return sorted(unique.values(), key=lambda r: (r.time, r.object.kind, r.object.name, r.type))


def _numbers(numbers: dict[str, float | None]) -> str:
    return " ".join(f"{k}={v:g}" for k, v in numbers.items() if v is not None)


def render(records: Sequence[AuditRecord], output: str) -> str:
    """``text`` (one line each), ``json`` (the records as the store and webhooks get them) or ``csv``."""
    if output == "json":
        return json.dumps([r.model_dump(mode="json", by_alias=True) for r in records], indent=2)
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for r in records:
            writer.writerow(
                [
                    rfc3339(r.time),
                    r.object.kind,
                    r.object.namespace,
                    r.object.name,
                    r.type,
                    r.from_ or "",
                    r.to or "",
                    r.reason,
                    json.dumps(r.values, sort_keys=True),
                    json.dumps(r.thresholds, sort_keys=True),
                    r.operator,
                    "" if r.generation is None else r.generation,
                    r.id,
                ]
            )
        return buffer.getvalue().rstrip("\n")
    if not records:
        return "no records in that time"
    return "\n".join(line(r) for r in records)


def line(record: AuditRecord) -> str:
    """One record, readable: when, what, on which object, the change, why and the numbers."""
    change = f" {record.from_ or '-'} -> {record.to or '-'}" if record.from_ or record.to else ""
    numbers = _numbers(record.values)
    thresholds = _numbers(record.thresholds)
    tail = (f" [{numbers}]" if numbers else "") + (f" (thresholds {thresholds})" if thresholds else "")
    obj = record.object
    return (
        f"{rfc3339(record.time)}  {obj.kind}/{obj.name}  {record.type}{change}: {record.reason}{tail}"
        f"  id={record.id[:12]}"
    )
