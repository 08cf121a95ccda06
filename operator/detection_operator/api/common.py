"""Models shared by DetectionPolicy and ModelRoute: references, Prometheus access, alerting, conditions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo
from pydantic.alias_generators import to_camel

from ..core import promql
from .base import Duration, Name, ObjectName, SpecModel
from .base import StatusModel as StatusModel  # re-exported: status models import it from here
from .base import Timestamp as Timestamp
from .records import Outbox

LINT_QUERIES = "lint_queries"
"""Validation context key: False judges a spec as the apiserver does (its CEL rules, no PromQL lint)."""


def promql_checker(allowed: Iterable[str]) -> Callable[[str, ValidationInfo], str]:
    """A validator for PromQL templates whose ``$variables`` are limited to ``allowed``."""
    names = frozenset(allowed)

    def check(query: str, info: ValidationInfo) -> str:
        if isinstance(info.context, dict) and info.context.get(LINT_QUERIES) is False:
            return query
        problems = promql.lint(query, names)
        if problems:
            raise ValueError("; ".join(problems))
        return query

    return check


QUERY_LIMITS = Field(min_length=1, max_length=4096)
"""Length bounds of every PromQL template (CEL cost estimation needs a bound on strings)."""


class SecretKeySelector(SpecModel):
    """A key of a Secret in the object's own namespace. The value never appears in status or logs."""

    name: ObjectName = Field(description="Name of the Secret.")
    key: str = Field(
        min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$", description="Key within the Secret."
    )


class LocalObjectReference(SpecModel):
    """A reference to an object by name in the same namespace."""

    name: ObjectName = Field(description="Name of the referenced object.")


class PrometheusRef(SpecModel):
    """Per-object override of the operator's Prometheus connection.

    The Secret may hold `url`, `token` (bearer), `username` + `password` (basic auth), `ca.crt` (PEM CA
    bundle) and `headers` (a JSON object of extra headers, e.g. `{"X-Scope-OrgID": "team-a"}` for Mimir or
    Thanos). Keys that are absent fall back to the operator's settings.
    """

    secret_ref: LocalObjectReference | None = Field(
        default=None, description="Secret holding the connection settings for this object."
    )
    timeout: Duration | None = Field(
        default=None, description="Per-query timeout; defaults to the operator's setting (5s)."
    )


class AlertSpec(SpecModel):
    """Where and how often this object's alerts are sent. Kubernetes Events are always posted."""

    receivers: list[Name] = Field(
        default_factory=list,
        max_length=16,
        description="Names of receivers configured in the operator's settings (webhook or alertmanager).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    cooldown: Duration = Field(
        default="15m", description="An alert that keeps firing is repeated no sooner than this."
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(BaseModel):
    """A status condition, following the Kubernetes API conventions (metav1.Condition)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    type: str = Field(max_length=316, description="Type of condition in CamelCase, e.g. Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(max_length=1024, description="One-word CamelCase reason for the last transition.")
    message: str = Field(default="", max_length=32768, description="Human-readable details.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the condition was set for."
    )
    last_transition_time: datetime = Field(description="When the condition last changed status.")


ConditionList = Annotated[
    list[Condition],
    Field(
        default_factory=list,
        description="Current state of the object, following the Kubernetes API conventions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


HISTORY_LIMIT = 20
"""Switches kept in a status' history (DetectionPolicy ``history``, ModelRoute ``switchHistory``)."""

AlertTypeName = Literal[
    "performance-degradation",
    "latency",
    "model-failure",
    "resource-exhaustion",
    "metrics-unavailable",
    "profile-switched",
    "model-switched",
    "no-healthy-backup",
    "escalation-expired",
]
Severity = Literal["info", "warning", "critical"]


class AlertRecord(StatusModel):
    """What was sent about one alert fingerprint (bounded list in status; restarts repeat nothing)."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True, extra="ignore")

    fingerprint: str = Field(description="Stable identity of the alert; acknowledge with its first 6+ chars.")
    type: AlertTypeName = Field(description="Kind of problem.")
    severity: Severity = Field(description="info, warning or critical.")
    subject: str = Field(description="Rule, model/metric or route the alert is about.")
    summary: str = Field(description="Message with context.")
    state: Literal["firing", "resolved"] = Field(description="firing or resolved.")
    started_at: datetime = Field(description="When it started firing.")
    last_sent_at: datetime = Field(description="When it was last sent.")
    resolved_at: datetime | None = Field(default=None, description="When it resolved.")
    acknowledged: bool = Field(default=False, description="Acknowledged by annotation: no repeats.")


class ObjectStatus(StatusModel):
    """Status fields both kinds share."""

    observed_generation: int | None = Field(default=None, description="Generation last processed.")
    conditions: ConditionList
    reason: str | None = Field(default=None, description="Why the current decision was made.")
    revision: int | None = Field(default=None, description="Revision of the published decision.")
    config_map: ObjectName | None = Field(default=None, description="Name of the owned ConfigMap.")
    last_evaluated: Timestamp | None = Field(default=None, description="When the object was last evaluated.")
    alerts: list[AlertRecord] = Field(
        default_factory=list, max_length=50, description="Alerts firing now and recently resolved."
    )
    memory: dict[str, Any] = Field(
        default_factory=dict,
        description="Decision state that must survive a restart (counters, timers); internal.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    outbox: Outbox | None = Field(
        default=None, description="Audit records of recent decisions and their deliveries still pending."
    )
