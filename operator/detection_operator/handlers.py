"""kopf wiring only: registrations and startup settings. The logic lives in the modules these call."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf

from . import conditions
from .api.base import GROUP, VERSION
from .api.kinds import KINDS, Kind
from .api.validation import summary, validate_spec
from .settings import Settings

SETTINGS = Settings.from_env()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Keep kopf's bookkeeping in status, under our own names.

    Annotations would put a second copy of the spec in metadata, where together with kubectl's
    last-applied-configuration a large policy can exceed the 256 KiB annotation limit; status also keeps
    the object Git owns free of operator marks.
    """
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(
        field="status.kopf.lastHandledConfiguration"
    )
    settings.execution.max_workers = SETTINGS.max_workers
    # A server-side watch timeout makes kopf re-list periodically, which heals a silently broken stream.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.posting.level = logging.INFO


def _spec_handler(kind: Kind) -> Any:
    async def reconcile_spec(
        spec: kopf.Spec,
        meta: kopf.Meta,
        status: kopf.Status,
        body: kopf.Body,
        patch: kopf.Patch,
        logger: logging.Logger,
        **_: Any,
    ) -> None:
        """Validate the spec and record the verdict in status.conditions and an Event."""
        _model, errors = validate_spec(kind.spec, dict(spec))
        problems = summary(errors) if errors else None
        generation = meta.get("generation")
        if problems:
            logger.warning("invalid spec: %s", problems)
            kopf.warn(body, reason=conditions.INVALID_SPEC, message=problems)
        patch.status["conditions"] = conditions.merge(
            status.get("conditions"), conditions.spec_validity(problems, generation, datetime.now(UTC))
        )
        patch.status["observedGeneration"] = generation

    return reconcile_spec


for _kind in KINDS:
    _handler = _spec_handler(_kind)
    kopf.on.resume(GROUP, VERSION, _kind.plural, id="reconcile-spec")(_handler)
    kopf.on.create(GROUP, VERSION, _kind.plural, id="reconcile-spec")(_handler)
    kopf.on.update(GROUP, VERSION, _kind.plural, id="reconcile-spec", field="spec")(_handler)
