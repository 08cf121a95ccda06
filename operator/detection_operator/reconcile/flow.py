"""What a kind brings to the one evaluation skeleton (:mod:`.reconciler`): its own observe and act steps
and the pure parts in between. A flow never sees the Reconciler: it gets the evaluation's context and,
for I/O, an :class:`~.effects.Effects`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from prometheus_client import Gauge

from ..api.common import StatusModel
from ..api.conditions import EventReason
from ..api.records import AuditRecord
from ..core.errors import OutputError
from ..decide.alerts import Alert
from ..decide.memory import Memory
from ..record.audit import Origin
from .context import Evaluation
from .effects import Effects


class Publication(Protocol):
    """What the skeleton reads of a kind's published document."""

    @property
    def changed(self) -> bool: ...

    @property
    def revision(self) -> int: ...

    @property
    def digest(self) -> str: ...


class Decision(Protocol):
    """What the skeleton reads of a kind's decision."""

    @property
    def metrics_available(self) -> bool: ...


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the object."""

    type: Literal["Normal", "Warning"]
    reason: EventReason
    message: str


class Spec(Protocol):
    """What the skeleton reads of a kind's spec."""

    @property
    def dry_run(self) -> bool: ...


S = TypeVar("S", bound=Spec)
O = TypeVar("O")  # noqa: E741
D = TypeVar("D", bound=Decision)
P = TypeVar("P", bound=Publication)
M = TypeVar("M", bound=Memory)


class Flow(ABC, Generic[S, O, D, P, M]):
    """One kind's steps: S its spec, O its observation, D its decision, P its publication, M its memory."""

    kind: str

    @abstractmethod
    async def observe(self, ev: Evaluation[S], fx: Effects) -> O:
        """Read what the decision needs (queries, Kubernetes state)."""

    @abstractmethod
    def decide(self, ev: Evaluation[S], observation: O) -> tuple[D, P]:
        """Pure: the decision and the document it publishes."""

    @abstractmethod
    def config_map(self, ev: Evaluation[S]) -> str:
        """The owned ConfigMap's name."""

    @abstractmethod
    def output(self, config_map: str) -> str:
        """What the act step writes, as the Ready condition names it when it fails."""

    @abstractmethod
    async def act(
        self, ev: Evaluation[S], decision: D, pub: P, config_map: str, publish: bool, fx: Effects
    ) -> None:
        """Write the outputs; ``publish``: the ConfigMap must be (re)applied."""

    @abstractmethod
    def memory(self, ev: Evaluation[S], decision: D, pub: P, error: OutputError | None) -> M:
        """Pure: ``status.memory`` after this evaluation (``error``: the outputs were not written)."""

    @abstractmethod
    def events(self, ev: Evaluation[S], decision: D) -> list[Event]:
        """Pure: the Events this decision posts."""

    @abstractmethod
    def records(self, ev: Evaluation[S], decision: D, origin: Origin) -> list[AuditRecord]:
        """Pure: the audit records of this decision (alerts aside: the skeleton records those)."""

    @abstractmethod
    def alerts(self, ev: Evaluation[S], decision: D) -> list[Alert]:
        """Pure: what is wrong now."""

    @abstractmethod
    def status(self, ev: Evaluation[S], decision: D, memory: M) -> StatusModel:
        """Pure: the kind's own status fields (and the common ones it decides: reason, revision, times)."""

    @abstractmethod
    def conditions(self, ev: Evaluation[S], decision: D, error: OutputError | None) -> list[dict[str, Any]]:
        """Pure: the kind's conditions (Ready first)."""

    @abstractmethod
    def series(self, ev: Evaluation[S], decision: D) -> list[tuple[Gauge, dict[str, float | None]]]:
        """Pure: the per-object gauges to publish."""

    @abstractmethod
    def switched(self, decision: D) -> bool:
        """Whether the decision switched away from a previous choice (counted in the switches series)."""
