"""The demo's timeline: one line per switch (from the objects' status) and per notable Event.

:func:`transitions`, :func:`event_line` and :func:`transition_line` are pure; :class:`Timeline` polls the
apiserver and prints what is new.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TextIO, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from detection_operator.api.base import GROUP, VERSION
from detection_operator.api.kinds import by_kind, by_plural

from .scenario import Expectation, Kind

# Events worth a line of their own; switches are read from status, where the history keeps their reasons.
NOTABLE_EVENTS: Final = frozenset(
    {
        "BackupScaled",
        "ExternalServiceUnavailable",
        "ExternalServiceRecovered",
        "MetricsUnavailable",
        "MetricsRecovered",
        "NoHealthyBackup",
        "FailoverCapReached",
        "DeploymentNotFound",
        "InvalidSpec",
    }
)


@dataclass(frozen=True)
class Transition:
    """One switch of a DetectionPolicy profile or a ModelRoute's active model."""

    kind: Kind
    name: str
    from_: str | None
    to: str
    reason: str
    key: str  # what makes it distinct from the other switches of the same object

    def matches(self, expect: Expectation) -> bool:
        """Whether this is the switch ``expect`` waits for."""
        return (self.kind, self.name, self.to) == (expect.kind, expect.name, expect.to)


def _rule_values(obj: Mapping[str, Any]) -> str:
    """`high-latency = 292 > 200` for every active rule, with the operator from the spec."""
    ops = {r["name"]: r["op"] for r in obj.get("spec", {}).get("rules", [])}
    return ", ".join(
        f"{r['name']} = {r['value']:.3g} {ops.get(r['name'], '?')} {r['threshold']:g}"
        for r in obj.get("status", {}).get("rules", [])
        if r.get("active") and "value" in r
    )


def transitions(kind: Kind, obj: Mapping[str, Any]) -> list[Transition]:
    """Every switch recorded in ``obj``'s status, oldest first.

    A route records no history entry for its first pick, so that one comes from ``activeModel``. The
    latest policy switch gets the active rules' values appended, read at the same time.
    """
    name = obj["metadata"]["name"]
    status = obj.get("status") or {}
    history = status.get("history" if kind == "dp" else "switchHistory") or []
    found = [
        Transition(kind, name, h.get("from"), h["to"], h["reason"], f"{h['at']} {h.get('from')} {h['to']}")
        for h in history
    ]
    if kind == "mr" and not found and status.get("activeModel"):
        found.append(Transition(kind, name, None, status["activeModel"], status.get("reason", ""), "first"))
    if kind == "mr":
        found += _route_traffic(name, status, len(history))
    if kind == "dp" and found and found[-1].to == status.get("profile") and (values := _rule_values(obj)):
        last = found[-1]
        found[-1] = Transition(kind, name, last.from_, last.to, f"{last.reason}: {values}", last.key)
    if kind == "dp" and status.get("heldBy") and status.get("profile"):
        found.append(_held(name, status, len(history)))
    return found


def _held(name: str, status: Mapping[str, Any], switches: int) -> Transition:
    """The policy kept its profile although its rules asked for another (once per switch and holder),
    with the values the rules read while it held."""
    held_by = status["heldBy"]
    values = ", ".join(
        # Four digits: a value just under a clearThreshold of 150 must not read as 150.
        f"{r['name']} = {r['value']:.4g}"
        for r in status.get("rules", [])
        if r.get("value") is not None
    )
    reason = f"{status.get('reason', '')}" + (f" ({values})" if values else "")
    to = f"{status['profile']} held by {held_by}"
    return Transition("dp", name, "held", to, reason, f"held {switches} {held_by}")


def _route_traffic(name: str, status: Mapping[str, Any], switches: int) -> list[Transition]:
    """The route's traffic split when it is more than one model (the primary's trickle), with the
    evidence so far; and the primary failing under its trickle (the probation's failures)."""
    found = []
    split = [(m["name"], m.get("trafficPercent", 0)) for m in status.get("models", [])]
    shares = [f"{model} {share} %" for model, share in split if share]
    if len(shares) > 1:
        text = " · ".join(shares)
        found.append(Transition("mr", name, "traffic", text, status.get("reason", ""), f"{switches} {text}"))
    probation = status.get("probation") or {}
    if probation.get("failures"):
        primary = split[0][0] if split else "primary"
        reason = (
            f"failed under its trickle {probation['failures']} time(s); trickle off until "
            f"{probation.get('trafficPausedUntil')}, next probation {probation['stableForSeconds']:g}s"
        )
        key = f"probation {switches} {probation['failures']}"
        found.append(Transition("mr", name, "probation", f"{primary} trickle off", reason, key))
    return found


def elapsed(seconds: float) -> str:
    """``+MM:SS`` since the scenario started."""
    whole = max(0, int(seconds))
    return f"+{whole // 60:02d}:{whole % 60:02d}"


def transition_line(seconds: float, t: Transition) -> str:
    """``+00:14  dp/bot-detector     balanced → lean   Switched to lean profile due to high latency (…)``."""
    change = f"{t.from_ or '—'} → {t.to}"
    return f"{elapsed(seconds)}  {t.kind}/{t.name:<15} {change:<33} {t.reason}"


def event_line(seconds: float, event: Any) -> str | None:
    """A line for a notable Event (``client.CoreV1Event``), else None."""
    if event.reason not in NOTABLE_EVENTS:
        return None
    try:
        short = by_kind(event.involved_object.kind or "").short_names[0]
    except KeyError:  # an Event about a Deployment, say
        return None
    subject = f"{short}/{event.involved_object.name}"
    return f"{elapsed(seconds)}  {subject:<18} · {event.reason}: {event.message}"


class Timeline:
    """Polls the policy, the route and the namespace's Events; prints each new switch and notable Event."""

    def __init__(
        self, api: client.ApiClient, namespace: str, objects: Sequence[tuple[Kind, str]], out: TextIO
    ) -> None:
        """Watch ``objects`` (kind, name) in ``namespace``; lines go to ``out``."""
        self.objects_api = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.objects = tuple(objects)
        self.out = out
        self.seen: list[Transition] = []
        self._keys: set[tuple[Kind, str, str]] = set()
        self._events: set[str] = set()

    def read(self, kind: Kind, name: str) -> dict[str, Any] | None:
        """The object as the apiserver has it now, or None if it does not exist."""
        try:
            obj = self.objects_api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, by_plural(kind).plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], obj)

    def poll(self, seconds: float) -> None:
        """Print what happened since the last poll, stamped ``seconds`` into the scenario."""
        for kind, name in self.objects:
            obj = self.read(kind, name)
            for t in transitions(kind, obj) if obj else []:
                if (t.kind, t.name, t.key) not in self._keys:
                    self._keys.add((t.kind, t.name, t.key))
                    self.seen.append(t)
                    print(transition_line(seconds, t), file=self.out, flush=True)
        for event in self.core.list_namespaced_event(self.namespace).items:
            uid = event.metadata.uid if event.metadata else None
            if uid is None or uid in self._events:
                continue
            self._events.add(uid)
            if (line := event_line(seconds, event)) is not None:
                print(line, file=self.out, flush=True)

    def happened(self, expect: Expectation, since: int) -> bool:
        """Whether ``expect`` is among the switches seen from index ``since`` on."""
        return any(t.matches(expect) for t in self.seen[since:])
