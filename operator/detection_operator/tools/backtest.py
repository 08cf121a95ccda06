"""`detection-operator backtest`: replay a policy or route over Prometheus history.

The same pure ``decide`` functions the operator runs are fed, step by step, with what range queries say
each query would have returned then (same normalisation: empty, NaN/Inf, several series are unknown).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_api_client import PrometheusConnect

from ..api.base import parse_duration
from ..api.detection_policy import DetectionPolicySpec
from ..api.model_route import ModelRouteSpec
from ..api.validation import validate_spec
from ..decide import policy as policy_decide
from ..decide import route as route_decide
from ..decide.alerts import Alert, ObjectKey, plan_alerts, policy_alerts, route_alerts
from ..observe.source import Missing, Reading, normalise
from .documents import Document, read_documents

MAX_POINTS = 10_000  # Prometheus refuses ranges over 11,000 points per series
Series = dict[float, Reading]


@dataclass(frozen=True)
class Switch:
    """One switch the object would have made."""

    at: str
    previous: str | None
    current: str
    reason: str


@dataclass
class Timeline:
    """What a replay found."""

    kind: str
    namespace: str
    name: str
    start: str
    end: str
    step: str
    evaluations: int = 0
    switches: list[Switch] = field(default_factory=list)
    alerts: Counter[str] = field(default_factory=Counter)
    time_in: dict[str, float] = field(default_factory=dict)
    query_seconds: float = 0.0
    replay_seconds: float = 0.0

    def share(self) -> dict[str, float]:
        """Fraction of the evaluated time spent in each profile or model."""
        total = sum(self.time_in.values()) or 1.0
        return {k: v / total for k, v in sorted(self.time_in.items(), key=lambda kv: -kv[1])}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_since(text: str) -> float:
    """Seconds in ``7d``, ``12h``, ``90m`` or any Go-style duration."""
    if text.endswith("d") and text[:-1].isdigit():
        return int(text[:-1]) * 86400.0
    return parse_duration(text)


def fetch(
    client: PrometheusConnect,
    queries: Mapping[Any, str],
    start: float,
    end: float,
    step: float,
    shift: float = 0.0,
    progress: Callable[[str], None] | None = None,
) -> dict[Any, Series]:
    """Range-query every distinct query (chunked under Prometheus' point limit); keyed by evaluation time.

    With ``shift``, values come from ``shift`` seconds earlier (the previous window of a route).
    """
    by_query: dict[str, Series] = {}
    distinct = list(dict.fromkeys(queries.values()))
    for number, query in enumerate(distinct, start=1):
        if progress:
            progress(f"querying {number}/{len(distinct)}")
        samples: dict[float, list[Any]] = {}
        chunk = step * MAX_POINTS
        lo = start
        while lo <= end:
            hi = min(end, lo + chunk - step)
            result = client.custom_query_range(
                query,
                start_time=datetime.fromtimestamp(lo - shift, UTC),
                end_time=datetime.fromtimestamp(hi - shift, UTC),
                step=f"{step:g}s",
            )
            for series in result:
                for ts, value in series.get("values", []):
                    samples.setdefault(round(float(ts) + shift, 3), []).append(value)
            lo = hi + step
        by_query[query] = {
            ts: normalise([{"value": [ts, vs[0]]}] if len(vs) == 1 else [{"value": [ts, v]} for v in vs])
            for ts, vs in samples.items()
        }
    return {key: by_query[query] for key, query in queries.items()}


def _timestamps(start: float, end: float, step: float) -> list[float]:
    count = math.floor((end - start) / step) + 1
    return [round(start + i * step, 3) for i in range(count)]


def _observation(series: Mapping[Any, Series], ts: float) -> dict[Any, Reading]:
    return {key: values.get(ts, Missing("empty", "no sample at this time")) for key, values in series.items()}


def replay(
    doc_spec: DetectionPolicySpec | ModelRouteSpec,
    kind: str,
    namespace: str,
    name: str,
    series: Mapping[Any, Series],
    start: float,
    end: float,
    step: float,
    progress: Callable[[str], None] | None = None,
) -> Timeline:
    """Run the decision over every step and collect switches, alerts and time per profile/model."""
    timeline = Timeline(kind, namespace, name, _iso(start), _iso(end), f"{step:g}s")
    obj = ObjectKey(kind, namespace, name)
    cooldown = timedelta(seconds=parse_duration(doc_spec.alerts.cooldown))
    records: tuple[Any, ...] = ()
    started = time.perf_counter()
    stamps = _timestamps(start, end, step)
    policy_memory = policy_decide.PolicyMemory()
    route_memory = route_decide.RouteMemory()
    for number, ts in enumerate(stamps):
        if progress and number % max(1, len(stamps) // 20) == 0:
            progress(f"replaying {100 * number // len(stamps)}%")
        now = datetime.fromtimestamp(ts, UTC)
        observation = _observation(series, ts)
        current: str
        alerts: list[Alert]
        if isinstance(doc_spec, DetectionPolicySpec):
            decision = policy_decide.decide_policy(doc_spec, observation, policy_memory, now)
            policy_memory = decision.memory
            current, previous, switched, reason = (
                decision.profile,
                decision.previous,
                decision.switched,
                decision.reason,
            )
            alerts = policy_alerts(doc_spec, decision, obj)
        else:
            route = route_decide.decide_route(doc_spec, observation, route_memory, now)
            route_memory = route.memory
            current, previous, switched, reason = route.active, route.previous, route.switched, route.reason
            alerts = route_alerts(doc_spec, route, obj)
        plan = plan_alerts(obj, alerts, records, set(), cooldown, now)
        records = plan.records
        timeline.alerts.update(f"{o.status}:{o.alert.type}" for o in plan.outgoing)
        if switched:
            timeline.switches.append(Switch(_iso(ts), previous, current, reason))
        timeline.time_in[current] = timeline.time_in.get(current, 0.0) + step
        timeline.evaluations += 1
    timeline.replay_seconds = time.perf_counter() - started
    return timeline


def backtest_document(
    doc: Document,
    prometheus: str,
    since: float,
    step: float,
    until: float | None = None,
    namespace: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Timeline:
    """Fetch the history one document's queries need and replay it."""
    kind = doc.kind
    if kind is None:
        raise ValueError(f"{doc.where}: not a DetectionPolicy or ModelRoute")
    spec, errors = validate_spec(kind.spec, doc.body.get("spec"))
    if spec is None:
        raise ValueError(f"{doc.where}: invalid: " + "; ".join(str(e) for e in errors))
    metadata = doc.body.get("metadata") or {}
    name = str(metadata.get("name", "unnamed"))
    ns = namespace or str(metadata.get("namespace") or "default")
    end = until if until is not None else time.time()
    end = math.floor(end / step) * step
    start = end - since
    client = PrometheusConnect(url=prometheus.rstrip("/"), disable_ssl=False)
    fetched = time.perf_counter()
    series: dict[Any, Series]
    if isinstance(spec, DetectionPolicySpec):
        series = fetch(client, policy_decide.query_plan(spec, ns, name), start, end, step, progress=progress)
    else:
        assert isinstance(spec, ModelRouteSpec)
        plan = route_decide.query_plan(spec, ns, name)
        series = fetch(client, plan, start, end, step, progress=progress)
        window = parse_duration(spec.window)
        previous = {("previous", m, metric): q for (_, m, metric), q in plan.items()}
        series.update(fetch(client, previous, start, end, step, shift=window, progress=progress))
    query_seconds = time.perf_counter() - fetched
    timeline = replay(spec, kind.kind, ns, name, series, start, end, step, progress)
    timeline.query_seconds = query_seconds
    return timeline


def render(timeline: Timeline, output: str) -> str:
    """Text (human), JSON or CSV (one row per switch)."""
    if output == "json":
        # asdict() would rebuild the Counter from (key, count) pairs; take it as a plain dict.
        body = {**asdict(timeline), "alerts": dict(timeline.alerts), "share": timeline.share()}
        return json.dumps(body, indent=2)
    if output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["at", "from", "to", "reason"])
        for s in timeline.switches:
            writer.writerow([s.at, s.previous or "", s.current, s.reason])
        return buffer.getvalue().rstrip("\n")
    lines = [
        f"{timeline.kind} {timeline.namespace}/{timeline.name}: {timeline.start} -> {timeline.end}, "
        f"step {timeline.step}, {timeline.evaluations} evaluations",
        "",
    ]
    lines += [f"  {s.at}  {s.previous or '-':>12} -> {s.current:<12}  {s.reason}" for s in timeline.switches]
    lines += [
        "",
        "Time spent: " + ", ".join(f"{k} {v:.1%}" for k, v in timeline.share().items()),
        f"Switches: {len(timeline.switches)}   Notifications: {sum(timeline.alerts.values())} "
        + "("
        + ", ".join(f"{k} {v}" for k, v in sorted(timeline.alerts.items()))
        + ")",
        f"Prometheus: {timeline.query_seconds:.2f} s   replay: {timeline.replay_seconds:.2f} s",
    ]
    return "\n".join(lines)


def render_diff(old: Timeline, new: Timeline) -> str:
    """What the change would have changed: switch counts, time shares, and the switches that differ."""
    old_set = {(s.at, s.current) for s in old.switches}
    new_set = {(s.at, s.current) for s in new.switches}
    lines = [f"{new.kind} {new.namespace}/{new.name}: {new.start} -> {new.end}, step {new.step}", ""]
    lines.append(f"Switches: {len(old.switches)} -> {len(new.switches)}")
    keys = sorted(set(old.time_in) | set(new.time_in))
    old_share, new_share = old.share(), new.share()
    for key in keys:
        lines.append(f"  {key:<14} {old_share.get(key, 0):7.1%} -> {new_share.get(key, 0):7.1%}")
    lines.append(f"Notifications: {sum(old.alerts.values())} -> {sum(new.alerts.values())}")
    only_old = [s for s in old.switches if (s.at, s.current) not in new_set]
    only_new = [s for s in new.switches if (s.at, s.current) not in old_set]
    lines += ["", "Only with the old version:"] + [
        f"  - {s.at} -> {s.current} ({s.reason})" for s in only_old
    ]
    lines += ["Only with the new version:"] + [f"  + {s.at} -> {s.current} ({s.reason})" for s in only_new]
    return "\n".join(lines)


def stderr_progress(message: str) -> None:
    """A one-line progress indicator, only when stderr is a terminal."""
    if sys.stderr.isatty():
        print(f"\r{message:<40}", end="", file=sys.stderr, flush=True)


def load_one(path: str) -> Document:
    """The first DetectionPolicy or ModelRoute in ``path``."""
    for doc in read_documents([path]):
        if doc.problem is not None:
            raise ValueError(f"{doc.where}: {doc.problem}")
        if doc.kind is not None:
            return doc
    raise ValueError(f"{path}: no DetectionPolicy or ModelRoute found")
