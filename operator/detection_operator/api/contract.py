"""The data-plane contract: documents the operator publishes in its ConfigMaps.

These models are the source of the JSON Schemas under ``docs/schemas/`` (``make crds`` writes them), which
detection services can validate against; :mod:`detection_operator.client.readers` reads them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .base import API_VERSION

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})")
"""What the TypeScript reader takes too (clients/typescript/src/schema.ts); the calendar is checked after."""


def _rfc3339(value: object) -> object:
    # pydantic also reads "1796120000" (Unix seconds) and zone-less times as a datetime; the schema's
    # `date-time` and the TypeScript reader do not. Parsed here, since strict mode then wants a datetime.
    if not isinstance(value, str):
        return value
    if not _RFC3339.fullmatch(value):
        raise ValueError("not an RFC 3339 date-time with a time zone")
    return datetime.fromisoformat(value.upper())


DocumentTime = Annotated[datetime, BeforeValidator(_rfc3339)]
"""A document time: an RFC 3339 date-time with a zone, as JSON Schema's `date-time` format says."""


class _Document(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ObjectIdentity(_Document):
    """The custom resource a document was published for."""

    namespace: str
    name: str


class SecretKeyRef(_Document):
    """A Secret key, by reference only: the data plane reads the value itself."""

    name: str
    key: str


class ExternalContributorEntry(_Document):
    """An external contributor as the detector should call it."""

    name: str
    enabled: bool = Field(description="False while its profile forbids externals or its circuit is open.")
    endpoint: str
    weight: float = Field(ge=0, description="Effective trust weight (accuracy-scaled, clamped).")
    timeout_ms: int = Field(ge=1)
    signals: list[str] = Field(description="The only signals it may receive.")
    circuit: Literal["closed", "open", "half-open"]
    verification_key_ref: SecretKeyRef | None = None


class ProfileDocument(_Document):
    """``profile.json``: what the detector should run now."""

    api_version: Literal["detection.adaptive.io/v1alpha1"] = API_VERSION  # type: ignore[assignment]
    kind: Literal["DetectionProfile"] = "DetectionProfile"
    policy: ObjectIdentity
    profile: str
    revision: int = Field(ge=1, description="Increases by one each time the content below changes.")
    decided_at: DocumentTime
    reason: str
    latency_target_ms: float | None = None
    contributors: list[str] = Field(description="In-process contributors to run, in policy order.")
    external: list[ExternalContributorEntry]
    expense: dict[str, Literal["light", "medium", "heavy"]] = Field(
        description="Expense class per contributor."
    )
    reasons: list[str] = Field(description="Every rule that held when this was decided, with its value.")


Verdict = Literal["holds", "clear", "unknown", "insufficient"]


class ConditionRow(_Document):
    """A compound rule's condition, or a burn-rate rule's window pair (name 'LONG/SHORT')."""

    name: str
    value: float | None = Field(
        default=None, description="The value, or for a pair the lower of its two burn rates."
    )
    op: str
    threshold: float = Field(description="The threshold, or for a pair its burn-rate factor.")
    clear_threshold: float | None = None
    verdict: Verdict
    active: bool
    streak: int
    for_: int = Field(default=1, alias="for")
    cause: str = ""
    long_burn_rate: float | None = Field(default=None, description="Burn rate over a pair's long window.")
    short_burn_rate: float | None = Field(default=None, description="Burn rate over a pair's short window.")


class RuleRow(_Document):
    """One rule in the scorecard."""

    name: str
    kind: Literal["threshold", "allOf", "anyOf", "burnRate"] = "threshold"
    value: float | None = None
    op: str
    threshold: float | None = None
    clear_threshold: float | None = None
    verdict: Verdict
    active: bool
    streak: int
    for_: int = Field(alias="for")
    profile: str
    cause: str = ""
    samples: float | None = Field(default=None, description="Traffic behind the value (samples query).")
    min_samples: float | None = Field(default=None, description="The rule's traffic floor.")
    expired: bool = Field(default=False, description="Holding, but its escalation passed maxDuration.")
    shadow: bool = Field(default=False, description="Its profile is a shadow profile: never enforced.")
    conditions: list[ConditionRow] = Field(default_factory=list)


class LatencyRow(_Document):
    """The latency-target check: measured detector latency against the running profile's target."""

    value_ms: float | None = None
    target_ms: float | None = None
    profile: str
    streak: int
    breached: bool
    cause: str = ""


class CostRow(_Document):
    """One contributor's cost in the scorecard."""

    name: str
    expense: Literal["light", "medium", "heavy"]
    source: Literal["measured", "remembered", "declared", "assumed"]
    runtime_ms: float | None = None
    memory_mb: float | None = None
    cache_hit_ratio: float | None = None
    timeout_rate: float | None = None


class ExternalRow(_Document):
    """One external service's health in the scorecard."""

    name: str
    enabled: bool
    circuit: Literal["closed", "open", "half-open"]
    circuit_reason: str
    weight: float
    base_weight: float
    error_rate: float | None = None
    p95_latency_ms: float | None = None
    accuracy: float | None = None


class DecisionRow(_Document):
    """The decision the scorecard explains."""

    profile: str
    previous: str | None
    switched: bool
    reason: str
    held_by: str | None = Field(description="What kept a different profile from being chosen, if anything.")
    metrics_available: bool
    metrics_message: str
    shadow: str | None = Field(
        default=None, description="The shadow profile the policy would switch to if it were enforced."
    )
    shadow_reason: str = ""


class ScorecardDocument(_Document):
    """``scorecard.json``: every rule's value, threshold and verdict, every contributor's cost, and why."""

    api_version: Literal["detection.adaptive.io/v1alpha1"] = API_VERSION  # type: ignore[assignment]
    kind: Literal["DetectionScorecard"] = "DetectionScorecard"
    policy: ObjectIdentity
    revision: int = Field(ge=1)
    decided_at: DocumentTime
    decision: DecisionRow
    rules: list[RuleRow]
    latency: LatencyRow | None = None
    contributors: list[CostRow]
    external: list[ExternalRow]


class CandidateEntry(_Document):
    """A model the route may use, with its health at decision time."""

    name: str
    priority: int = Field(ge=0, description="0 is the primary; backups follow in order.")
    level: Literal["ok", "warning", "critical", "unknown"]
    state: Literal["healthy", "warning", "critical", "idle", "failing", "unknown"] = Field(
        description="idle: no traffic was sent to it; failing: traffic was sent and its data is gone or it "
        "lost every replica; unknown: Prometheus did not answer."
    )
    score: float | None = Field(default=None, ge=0, le=100, description="Health score 0-100.")
    trend: Literal["improving", "stable", "degrading", "unknown"]


class RouteDocument(_Document):
    """``route.json``: which model the router should send the route's traffic to."""

    api_version: Literal["detection.adaptive.io/v1alpha1"] = API_VERSION  # type: ignore[assignment]
    kind: Literal["ModelRouteDecision"] = "ModelRouteDecision"
    route: ObjectIdentity
    active: str = Field(description="The model to serve now.")
    primary: str
    state: Literal["Primary", "FailedOver", "Overridden", "Degraded"]
    traffic: dict[str, Annotated[int, Field(ge=1, le=100)]] = Field(
        description="Model -> integer percent of requests, summing to 100; normally {active: 100}. While on "
        "a backup the primary gets a trickle (spec.rollback.trafficPercent) to prove it has recovered."
    )
    fallbacks: list[str] = Field(
        description="Non-failing alternatives in priority order: where a router retries a request that "
        "failed on the model it chose."
    )
    reason: str
    revision: int = Field(
        ge=1, description="Increases by one each time active, primary, state, traffic or fallbacks change."
    )
    decided_at: DocumentTime
    candidates: list[CandidateEntry]


SCHEMAS: dict[str, type[BaseModel]] = {
    "profile.schema.json": ProfileDocument,
    "scorecard.schema.json": ScorecardDocument,
    "route.schema.json": RouteDocument,
}
"""File name under docs/schemas -> the model it is generated from."""
