"""What a decision publishes: profile.json + scorecard.json, or route.json; revisions and messages. Pure."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from ..api.contract import (
    CandidateEntry,
    ConditionRow,
    CostRow,
    DecisionRow,
    ExternalContributorEntry,
    ExternalRow,
    LatencyRow,
    ObjectIdentity,
    ProfileDocument,
    RouteDocument,
    RuleRow,
    ScorecardDocument,
    SecretKeyRef,
)
from ..api.detection_policy import DetectionPolicySpec
from ..api.model_route import ModelRouteSpec
from ..core.signing import digest
from .policy import PolicyDecision, RuleResult
from .route import RouteDecision

# Weights move with every accuracy sample; two decimals keep the published document (and the detectors
# that reload on change) from churning on noise.
_WEIGHT_DECIMALS = 2


@dataclass(frozen=True)
class Publication:
    """The documents to publish and whether they differ from what was published last.

    The documents are built when first read: most evaluations publish nothing (their content is
    unchanged and the ConfigMap intact), and building them was a fifth of the operator's CPU.
    """

    digest: str
    revision: int
    changed: bool
    build: Callable[[], tuple[str, str]] = field(repr=False, compare=False)
    """profile.json and scorecard.json."""

    @cached_property
    def _documents(self) -> tuple[str, str]:
        return self.build()

    @property
    def profile_json(self) -> str:
        """profile.json."""
        return self._documents[0]

    @property
    def scorecard_json(self) -> str:
        """scorecard.json."""
        return self._documents[1]


def _content(spec: DetectionPolicySpec, decision: PolicyDecision) -> dict[str, object]:
    """The part of profile.json whose change is worth a new revision (no timestamps, no prose)."""
    profile = next(p for p in spec.profiles if p.name == decision.profile)
    services = {s.name: s for s in spec.external_contributors.services} if spec.external_contributors else {}
    external = [
        ExternalContributorEntry(
            name=e.name,
            enabled=e.enabled,
            endpoint=services[e.name].endpoint,
            weight=round(e.weight, _WEIGHT_DECIMALS),
            timeout_ms=e.timeout_ms,
            signals=list(services[e.name].signals),
            circuit=e.circuit,
            verification_key_ref=(
                SecretKeyRef(name=ref.name, key=ref.key)
                if (ref := services[e.name].verification_key_ref)
                else None
            ),
        ).model_dump(mode="json", by_alias=True)
        for e in decision.externals
    ]
    return {
        "profile": decision.profile,
        "latencyTargetMs": profile.latency_target_ms,
        "contributors": list(decision.contributors),
        "external": external,
        "expense": {c.name: c.expense for c in decision.costs},
    }


def next_revision(content: object, last_digest: str | None, last_revision: int) -> tuple[str, bool, int]:
    """Digest of ``content``, whether it changed, and the revision to publish it under."""
    content_digest = digest(json.dumps(content, sort_keys=True, separators=(",", ":")).encode())
    changed = content_digest != last_digest
    return content_digest, changed, last_revision + 1 if changed or last_revision < 1 else last_revision


def publication(
    spec: DetectionPolicySpec,
    decision: PolicyDecision,
    namespace: str,
    name: str,
    last_digest: str | None,
    last_revision: int,
    now: datetime,
) -> Publication:
    """profile.json and scorecard.json (built when read); the revision moves only when the content changes."""
    content = _content(spec, decision)
    content_digest, changed, revision = next_revision(content, last_digest, last_revision)
    identity = ObjectIdentity(namespace=namespace, name=name)

    def build() -> tuple[str, str]:
        profile = _profile(content, decision, identity, revision, now)
        return _dump(profile), _dump(_scorecard(decision, identity, revision, now))

    return Publication(digest=content_digest, revision=revision, changed=changed, build=build)


def _profile(
    content: dict[str, object],
    decision: PolicyDecision,
    identity: ObjectIdentity,
    revision: int,
    now: datetime,
) -> ProfileDocument:
    reasons = [_reason_line(r) for r in decision.rules if r.active and not r.shadow and not r.expired]
    return ProfileDocument.model_validate(
        {
            **content,
            "policy": identity,
            "revision": revision,
            "decidedAt": now,
            "reason": decision.reason,
            "reasons": reasons,
        }
    )


def _scorecard(
    decision: PolicyDecision, identity: ObjectIdentity, revision: int, now: datetime
) -> ScorecardDocument:
    return ScorecardDocument(
        policy=identity,
        revision=revision,
        decided_at=now,
        decision=DecisionRow(
            profile=decision.profile,
            previous=decision.previous,
            switched=decision.switched,
            reason=decision.reason,
            held_by=decision.held_by,
            metrics_available=decision.metrics_available,
            metrics_message=decision.metrics_message,
            shadow=decision.shadow,
            shadow_reason=decision.shadow_reason,
        ),
        rules=rule_rows(decision),
        latency=latency_row(decision),
        contributors=[CostRow.model_validate(c.__dict__) for c in decision.costs],
        external=[
            ExternalRow.model_validate({k: v for k, v in e.__dict__.items() if k != "timeout_ms"})
            for e in decision.externals
        ],
    )


def _reason_line(r: RuleResult) -> str:
    """'high latency: high-latency = 250 > 200', or each active condition of a compound or burn rule."""
    if r.kind == "threshold" and r.value is not None and r.threshold is not None:
        return f"{r.reason}: {r.name} = {r.value:g} {r.op} {r.threshold:g}"
    parts = [
        f"{c.name} = {c.value:g} {c.op} {c.threshold:g}"
        for c in r.conditions
        if c.active and c.value is not None
    ]
    return f"{r.reason}: {r.name} ({', '.join(parts)})" if parts else f"{r.reason}: {r.name}"


def _rule_row(r: RuleResult) -> RuleRow:
    fields = {k: v for k, v in r.__dict__.items() if k != "reason"}  # the reason is profile.json's
    conditions = [ConditionRow.model_validate(c.__dict__) for c in r.conditions]
    return RuleRow.model_validate({**fields, "conditions": conditions})


def rule_rows(decision: PolicyDecision) -> list[RuleRow]:
    """Every rule's row, as the scorecard and status show it."""
    return [_rule_row(r) for r in decision.rules]


def latency_row(decision: PolicyDecision) -> LatencyRow | None:
    """The latency-target check's row, if the policy has one."""
    latency = decision.latency
    if latency is None:
        return None
    return LatencyRow.model_validate(latency.__dict__)


def _dump(document: ProfileDocument | ScorecardDocument | RouteDocument) -> str:
    return json.dumps(document.model_dump(mode="json", by_alias=True), indent=2, sort_keys=False) + "\n"


def switch_message(spec: DetectionPolicySpec, decision: PolicyDecision) -> str:
    """The sentence for the switch Event, e.g. 'Switched to lean profile due to high latency'."""
    if decision.previous is None:
        return f"Selected {decision.profile} profile: {decision.reason}"
    active = next((r for r in decision.rules if r.active and r.profile == decision.profile), None)
    if active is not None:
        return f"Switched to {decision.profile} profile due to {active.reason}"
    if not decision.metrics_available and decision.profile == spec.fallback_profile:
        return (
            f"Switched to {decision.profile} profile: metrics unavailable for {spec.hold_for} "
            f"({decision.metrics_message})"
        )
    return (
        f"Switched to {decision.profile} profile: every rule clear for {spec.stabilization_window} "
        f"(from {decision.previous})"
    )


@dataclass(frozen=True)
class RoutePublication:
    """route.json (built when first read, as a policy's documents) and whether it differs from what was
    published last."""

    digest: str
    revision: int
    changed: bool
    build: Callable[[], str] = field(repr=False, compare=False)

    @cached_property
    def route_json(self) -> str:
        """route.json."""
        return self.build()


def route_publication(
    spec: ModelRouteSpec,
    decision: RouteDecision,
    namespace: str,
    name: str,
    last_digest: str | None,
    last_revision: int,
    now: datetime,
) -> RoutePublication:
    """Build route.json; the revision moves only when active, primary, state, traffic or fallbacks change."""
    primary = spec.models[0].name
    traffic = dict(decision.traffic) or {decision.active: 100}
    content = {
        "active": decision.active,
        "primary": primary,
        "state": decision.state,
        "traffic": traffic,
        "fallbacks": list(decision.fallbacks),
    }
    content_digest, changed, revision = next_revision(content, last_digest, last_revision)

    def build() -> str:
        return _dump(_route_document(spec, decision, namespace, name, traffic, revision, now))

    return RoutePublication(content_digest, revision, changed, build)


def _route_document(
    spec: ModelRouteSpec,
    decision: RouteDecision,
    namespace: str,
    name: str,
    traffic: dict[str, int],
    revision: int,
    now: datetime,
) -> RouteDocument:
    primary = spec.models[0].name
    return RouteDocument(
        route=ObjectIdentity(namespace=namespace, name=name),
        active=decision.active,
        primary=primary,
        state=decision.state,
        traffic=traffic,
        fallbacks=list(decision.fallbacks),
        reason=decision.reason,
        revision=revision,
        decided_at=now,
        candidates=[
            CandidateEntry(
                name=m.name, priority=m.priority, level=m.level, state=m.state, score=m.score, trend=m.trend
            )
            for m in decision.models
        ],
    )
