"""One evaluation of one object: observe -> decide -> act -> notify -> record.

This module sequences the steps and owns nothing but that: queries come from `metrics`, the decision from
`decide` (pure), writes from `act`. The operator is the only writer of its objects' status, so each
evaluation writes the whole status, and the last written status is remembered to start the next one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import conditions
from .act import kube
from .api.detection_policy import DetectionPolicySpec
from .api.kinds import by_plural
from .api.validation import summary, validate_spec
from .conditions import rfc3339
from .decide.policy import PolicyDecision, PolicyMemory, decide_policy, query_plan
from .decide.publish import Publication, publication, switch_message
from .metrics.connections import Connections, InvalidConnection
from .metrics.source import Missing, Reading, query_all
from .scheduler import Key
from .signing import sign

log = logging.getLogger(__name__)

T = TypeVar("T")

HISTORY_LIMIT = 20
METRICS_AVAILABLE = "MetricsAvailable"


class Reconciler:
    """Evaluates objects on behalf of the scheduler."""

    def __init__(
        self,
        api: client.ApiClient,
        connections: Connections,
        executor: Executor,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self._connections = connections
        self._executor = executor
        self._clock = clock
        self._written: dict[Key, tuple[str, dict[str, Any]]] = {}

    def forget(self, key: Key) -> None:
        """Drop what is remembered about a deleted object."""
        self._written.pop(key, None)

    async def _blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def _status(self, key: Key, body: Mapping[str, Any]) -> dict[str, Any]:
        uid = body["metadata"]["uid"]
        written = self._written.get(key)
        if written is not None and written[0] == uid:
            return written[1]
        return dict(body.get("status") or {})

    async def __call__(self, key: Key, body: Mapping[str, Any]) -> None:
        """Evaluate one object now."""
        kind = by_plural(key[0])
        meta = body["metadata"]
        ref = kube.ObjectRef(kind.kind, kind.plural, meta["namespace"], meta["name"], meta["uid"])
        status = self._status(key, body)
        generation = meta.get("generation")
        model, errors = validate_spec(kind.spec, body.get("spec"))
        now = self._clock()
        if model is None:
            problems = summary(errors)
            previous = conditions.find(status.get("conditions"), conditions.INVALID_SPEC)
            if previous is None or previous.get("message") != problems:
                await self._event(ref, "Warning", conditions.INVALID_SPEC, problems)
            # The last good decision (status fields, ConfigMap) stays as it is: only conditions change.
            updates = conditions.spec_validity(problems, generation, now)
            await self._record(key, ref, status, {"observedGeneration": generation}, updates)
            return
        if isinstance(model, DetectionPolicySpec):
            await self._policy(key, ref, model, status, generation, now)
        else:
            updates = conditions.spec_validity(None, generation, now)
            await self._record(key, ref, status, {"observedGeneration": generation}, updates)

    async def _observe(
        self, ref: kube.ObjectRef, spec: DetectionPolicySpec
    ) -> dict[tuple[str, ...], Reading]:
        plan = query_plan(spec, ref.namespace, ref.name)
        try:
            source = await self._blocking(self._connections.for_object, ref.namespace, spec.prometheus)
        except (InvalidConnection, ApiException) as exc:
            # A broken connection is missing metrics like any other: the fail-safe applies.
            detail = str(exc) if isinstance(exc, InvalidConnection) else f"Prometheus Secret: {exc.reason}"
            return {key: Missing("error", detail) for key in plan}
        readings = await query_all(source, list(plan.values()), self._executor)
        return {key: readings[query] for key, query in plan.items()}

    async def _policy(
        self,
        key: Key,
        ref: kube.ObjectRef,
        spec: DetectionPolicySpec,
        status: dict[str, Any],
        generation: int | None,
        now: datetime,
    ) -> None:
        observation = await self._observe(ref, spec)
        memory = PolicyMemory.load(status.get("memory"))
        decision = decide_policy(spec, observation, memory, now)
        pub = publication(spec, decision, ref.namespace, ref.name, memory.digest, memory.revision, now)
        config_map = spec.output.config_map_name or f"{ref.name}-detection-profile"
        output_error = None
        written = status.get("configMap")
        if not spec.dry_run and (pub.changed or written != config_map):
            try:
                await self._publish(ref, spec, config_map, pub)
                written = config_map
            except ApiException as exc:
                output_error = f"writing ConfigMap {config_map}: {exc.status} {exc.reason}"
                log.warning("%s/%s: %s", ref.namespace, ref.name, output_error)
        new_memory = decision.memory
        if output_error is None:
            new_memory = new_memory.model_copy(update={"revision": pub.revision, "digest": pub.digest})
        await self._notify_policy(ref, spec, decision, status)
        fields = _policy_fields(spec, decision, status, new_memory, now)
        fields.update(observedGeneration=generation, configMap=written)
        if spec.dry_run:
            ready = conditions.condition(conditions.READY, True, "DryRun", decision.reason, generation, now)
        elif output_error:
            ready = conditions.condition(
                conditions.READY, False, "OutputFailed", output_error, generation, now
            )
        else:
            ready = conditions.condition(
                conditions.READY, True, "Published", decision.reason, generation, now
            )
        metrics = conditions.condition(
            METRICS_AVAILABLE,
            decision.metrics_available,
            "QueriesAnswered" if decision.metrics_available else "MetricsUnavailable",
            decision.metrics_message,
            generation,
            now,
        )
        invalid = conditions.condition(conditions.INVALID_SPEC, False, "SpecAccepted", "", generation, now)
        await self._record(key, ref, status, fields, [ready, invalid, metrics])

    async def _publish(
        self, ref: kube.ObjectRef, spec: DetectionPolicySpec, config_map: str, pub: Publication
    ) -> None:
        data = {"profile.json": pub.profile_json, "scorecard.json": pub.scorecard_json}
        if (key_ref := spec.output.signing_key_ref) is not None:
            secret = await self._blocking(kube.read_secret, self._api, ref.namespace, key_ref.name)
            if key_ref.key not in secret:
                raise ApiException(status=404, reason=f"key {key_ref.key} not in Secret {key_ref.name}")
            data["profile.json.sig"] = sign(secret[key_ref.key], pub.profile_json.encode())
        annotations = {"detection.adaptive.io/revision": str(pub.revision)}
        await self._blocking(kube.apply_config_map, self._api, ref, config_map, data, annotations)
        if spec.output.deployment:
            found = await self._blocking(
                kube.annotate_deployment, self._api, ref.namespace, spec.output.deployment, pub.digest
            )
            if not found:
                message = f"Deployment {spec.output.deployment} not found; profile.json is published anyway"
                await self._event(ref, "Warning", "DeploymentNotFound", message)

    async def _notify_policy(
        self,
        ref: kube.ObjectRef,
        spec: DetectionPolicySpec,
        decision: PolicyDecision,
        status: Mapping[str, Any],
    ) -> None:
        if decision.switched:
            reason = "ProfileSelected" if decision.previous is None else "ProfileSwitched"
            await self._event(ref, "Normal", reason, switch_message(spec, decision))
        for change in decision.circuit_changes:
            opened = change.endswith("-> open")
            reason = "ExternalServiceUnavailable" if opened else "ExternalServiceRecovered"
            await self._event(ref, "Warning" if opened else "Normal", reason, change)
        previous = conditions.find(status.get("conditions"), METRICS_AVAILABLE)
        was_available = previous is None or previous.get("status") == "True"
        if was_available and not decision.metrics_available:
            await self._event(ref, "Warning", "MetricsUnavailable", decision.metrics_message)
        elif not was_available and decision.metrics_available:
            await self._event(ref, "Normal", "MetricsRecovered", "every rule query answered again")

    async def _event(self, ref: kube.ObjectRef, type_: str, reason: str, message: str) -> None:
        try:
            await self._blocking(kube.post_event, self._api, ref, type_, reason, message)
        except ApiException as exc:  # an Event is best effort; the status carries the same facts
            log.warning("could not post %s event on %s/%s: %s", reason, ref.namespace, ref.name, exc.reason)

    async def _record(
        self,
        key: Key,
        ref: kube.ObjectRef,
        status: dict[str, Any],
        fields: dict[str, Any],
        updates: list[dict[str, Any]],
    ) -> None:
        # Absent rather than null: the CRD schema declares no nullable fields.
        new_status = {k: v for k, v in {**status, **fields}.items() if v is not None}
        new_status["conditions"] = conditions.merge(status.get("conditions"), updates)
        result = await self._blocking(kube.write_status, self._api, ref, new_status)
        self._written[key] = (ref.uid, dict(result.get("status") or new_status))


def _policy_fields(
    spec: DetectionPolicySpec,
    decision: PolicyDecision,
    status: Mapping[str, Any],
    memory: PolicyMemory,
    now: datetime,
) -> dict[str, Any]:
    """The DetectionPolicy-specific part of status."""
    history = list(status.get("history") or [])
    if decision.switched:
        entry = {"to": decision.profile, "reason": switch_message(spec, decision), "at": rfc3339(now)}
        if decision.previous is not None:
            entry["from"] = decision.previous
        history = ([*history, entry])[-HISTORY_LIMIT:]
    return {
        "profile": decision.profile,
        "since": rfc3339(memory.since) if memory.since else None,
        "reason": decision.reason,
        "revision": memory.revision,
        "history": history,
        "lastEvaluated": rfc3339(now),
        "rules": [
            {
                "name": r.name,
                **({"value": r.value} if r.value is not None else {}),
                "threshold": r.threshold,
                "verdict": r.verdict,
                "active": r.active,
                "streak": r.streak,
                **({"cause": r.cause} if r.cause else {}),
            }
            for r in decision.rules
        ],
        "contributors": list(decision.contributors),
        "expense": {c.name: c.expense for c in decision.costs},
        "externalContributors": [
            {
                "name": e.name,
                "enabled": e.enabled,
                "circuit": e.circuit,
                "weight": e.weight,
                **({"reason": e.circuit_reason} if e.circuit_reason else {}),
            }
            for e in decision.externals
        ],
        "memory": memory.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
