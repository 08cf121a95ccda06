"""Audit records: one per decision worth auditing, with the values and thresholds that decided it.

A record is built by the pure parts (``decide/``, ``record/``) in the same evaluation that made the
decision, kept in the object's status outbox until every sink has it, and delivered at least once. Its
``id`` is stable, so a receiver that has already stored a record recognises a repeat by id alone
(webhook receivers deduplicate by it, the store by primary key).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from ..core.identity import ObjectRef
from .base import StatusModel, Timestamp

RecordType = Literal[
    "profile-switch",
    "model-switch",
    "rollback",
    "override-set",
    "override-cleared",
    "failover-refused",
    "alert-fired",
    "alert-repeated",
    "alert-escalated",
    "alert-resolved",
    "alert-acknowledged",
    "snapshot",
]
"""What a record is about. ``snapshot`` records are written by the store sink only, never kept in status."""

RECORD_TYPES: tuple[RecordType, ...] = RecordType.__args__  # type: ignore[attr-defined]

NOTIFIED_TYPES: frozenset[RecordType] = frozenset(
    {"alert-fired", "alert-repeated", "alert-escalated", "alert-resolved"}
)
"""Records that are notifications: they also go to the receivers a spec's ``alerts.receivers`` names."""

RECENT_RECORDS = 30
"""Delivered records kept in the outbox, newest last: the history `history` reads from status."""
OUTBOX_LIMIT = 100
"""Records the outbox holds at most. Beyond it, the oldest undelivered record is dropped (and counted)."""
MAX_UNDELIVERED_SECONDS = 24 * 3600
"""A record no sink has taken for this long is dropped for that sink (and counted)."""

ID_LENGTH = 32
"""Hex characters of a record id: 128 bits of sha256, far beyond any collision among an object's records."""


def record_id(ref: ObjectRef, type_: RecordType, generation: int | None, sequence: str) -> str:
    """The stable id of a decision: the same object, record type, spec generation and sequence always
    give the same id.

    ``sequence`` is the decision's own position: the published revision for a switch, the alert's
    fingerprint and the time it started (or was last sent) for an alert, the evaluation time for the rest.
    The object's uid is part of it so a deleted and re-created object with the same name starts afresh.
    """
    parts = (ref.kind, ref.namespace, ref.name, ref.uid, type_, str(generation or 0), sequence)
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:ID_LENGTH]


def finite(values: Mapping[str, float | None]) -> dict[str, float | None]:
    """``values`` without the ones that have no data (None, NaN, infinities): JSON has no NaN, and the
    apiserver prunes nulls from status, so a record reads back the same from status as it was built."""
    return {k: v for k, v in values.items() if v is not None and math.isfinite(v)}


class AuditRecord(StatusModel):
    """One decision worth auditing: what changed, why, and on which numbers."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore")

    id: str = Field(
        min_length=ID_LENGTH, max_length=ID_LENGTH, description="Stable id: receivers deduplicate by it."
    )
    type: RecordType = Field(description="What was decided.")
    object: ObjectRef = Field(description="The custom resource the decision is about.")
    time: Timestamp = Field(description="When it was decided.")
    from_: str | None = Field(
        default=None, alias="from", description="State before the decision (profile, model, alert state)."
    )
    to: str | None = Field(default=None, description="State after the decision.")
    reason: str = Field(default="", max_length=1024, description="Why, in words.")
    values: dict[str, float | None] = Field(
        default_factory=dict, description="Measured values that decided it (one without data is left out)."
    )
    thresholds: dict[str, float | None] = Field(
        default_factory=dict, description="The thresholds they were compared with."
    )
    operator: str = Field(default="", description="Identity of the operator replica that decided it.")
    generation: int | None = Field(default=None, description="The spec's .metadata.generation it decided on.")
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="Further context by record type (alert fingerprint and severity, failover count, ...).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class PendingDelivery(StatusModel):
    """One sink's deliveries of this object's records still to make, and how its last tries went."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore")

    sink: str = Field(description="The sink (receiver name, or the store).")
    ids: list[str] = Field(
        default_factory=list, description="Records not yet taken by the sink, oldest first."
    )
    attempts: int = Field(default=0, ge=0, description="Failed delivery rounds in a row.")
    next_attempt_at: Timestamp | None = Field(default=None, description="No new round before this.")
    last_error: str | None = Field(default=None, description="Why the last round failed.")
    dropped: int = Field(default=0, ge=0, description="Records dropped undelivered for this sink so far.")


class Outbox(StatusModel):
    """Recent audit records and what is still to be delivered: written with the decision that made them,
    so a restarted (or new) leader delivers what the last one could not."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore")

    records: list[AuditRecord] = Field(
        default_factory=list,
        max_length=OUTBOX_LIMIT,
        description="Recent and undelivered records, oldest first.",
    )
    pending: list[PendingDelivery] = Field(
        default_factory=list,
        description="Per sink, the records it has not taken yet.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["sink"]},
    )
    dropped: int = Field(default=0, ge=0, description="Records dropped undelivered so far, all sinks.")
    last_dropped_at: Timestamp | None = Field(default=None, description="When a record was last dropped.")


@dataclass(frozen=True)
class SinkResult:
    """How one delivery round of one object's records to one sink went (folded into its outbox)."""

    delivered: tuple[str, ...]
    """Ids the sink took."""
    error: str | None
    """Why the rest were not taken; None: all were."""
    at: datetime
