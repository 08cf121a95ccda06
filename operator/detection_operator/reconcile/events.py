"""The Events that report audit records, posted through the outbox like any sink: after the status write
that holds their records, again after a restart if need be, and once (each is named after its record)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from kubernetes.client.exceptions import ApiException

from ..act import kube
from ..api.records import AuditRecord
from ..core.errors import NotLeader
from ..notify.sinks import DeliveryError
from ..record.audit import record_event
from .effects import Effects

EVENTS_SINK = "kubernetes:events"
"""Not a valid receiver name (those are DNS labels), so no receiver in the settings can take its place."""


class RecordEvents:
    """A :class:`~..notify.sinks.RecordSink` posting one Kubernetes Event per record that has one."""

    name = EVENTS_SINK

    def __init__(self, effects: Effects) -> None:
        self._effects = effects

    async def deliver(self, records: Sequence[AuditRecord]) -> None:
        """Post each record's Event, named ``<object>.<record id>`` so a repeat is a no-op."""
        fx = self._effects
        for record in records:
            event = record_event(record)
            if event is None:
                continue
            type_, reason, message = event
            post = partial(kube.post_event, name=f"{record.object.name}.{record.id[:20]}")
            try:
                await fx.mutate(
                    record.object.namespace,
                    post,
                    fx.api,
                    record.object,
                    type_,
                    str(reason),
                    message,
                    fx.identity,
                )
            except NotLeader as exc:
                raise DeliveryError("not the owner of this object's bucket") from exc
            except ApiException as exc:
                raise DeliveryError(f"HTTP {exc.status} {exc.reason}") from exc
