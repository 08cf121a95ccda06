"""`detection-operator report [-n NS] [--since 1h] [--output json|md]`: health, trend, alerts and
recommendations of every route and policy in a namespace, and the scores of its models and agents.

Reads the objects (spec and status) from the cluster and asks Prometheus what their queries say over
the window (``--since``, substituted for ``$window``) now and one window earlier: the same queries the
operator runs (written or generated from the SDK catalog), scored by the same pure functions
(:mod:`..decide.route`, :mod:`..decide.scores`, :mod:`..decide.advice`). Formulas and rules:
docs/sdk/scores.md.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..api import sdk_catalog
from ..api.base import GROUP, VERSION
from ..api.conditions import ConditionType
from ..api.detection_policy import PLURAL as POLICIES
from ..api.detection_policy import DetectionPolicySpec
from ..api.model_route import PLURAL as ROUTES
from ..api.model_route import ModelRouteSpec
from ..api.validation import summary, validate_spec
from ..core import promql
from ..core.readings import Missing, Reading, normalise
from ..decide import advice, scores
from ..decide import route as route_decide
from ..record.conditions import find

MODEL_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
PARALLEL_QUERIES = 8
"""Instant queries in flight at once: a route's 2 x models x metrics queries, without flooding Prometheus."""
AGENTS_PER_GROUP = 16
"""A route holds at most 16 models: agents are scored in groups of that size (efficiency over all)."""

Query = Callable[[str, float], Any]
"""(PromQL, Unix time) -> the ``data.result`` of an instant query; raises :class:`PrometheusError`."""


class PrometheusError(Exception):
    """Prometheus could not be asked at all (unreachable, not Prometheus): the report cannot be made."""


class ReportError(Exception):
    """The cluster could not be read: a clear message, no traceback."""


@dataclass
class Entry:
    """One route or policy in the report."""

    kind: str
    name: str
    health: float | None = None
    band: str | None = None
    trend: str = "unknown"
    state: str | None = None
    reason: str | None = None
    error: str | None = None
    switches: int = 0
    models: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    recommendations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    """Everything ``report`` found in one namespace."""

    namespace: str
    since: str
    generated_at: str
    prometheus: str
    routes: list[Entry] = field(default_factory=list)
    policies: list[Entry] = field(default_factory=list)
    agents: list[dict[str, Any]] = field(default_factory=list)
    unanswered: int = 0
    """Queries Prometheus answered with an error (each makes a value unknown)."""


def prometheus_query(http: httpx.Client, url: str) -> Query:
    """An instant-query function over ``url``."""

    def query(promql_text: str, at: float) -> Any:
        try:
            response = http.get(f"{url.rstrip('/')}/api/v1/query", params={"query": promql_text, "time": at})
        except httpx.HTTPError as exc:
            raise PrometheusError(
                f"could not reach Prometheus at {url}: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise PrometheusError(
                f"{url} did not answer as Prometheus (HTTP {response.status_code})"
            ) from exc
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            return Missing("error", str(error or f"HTTP {response.status_code}"))
        return (body.get("data") or {}).get("result")

    return query


class _Asker:
    """Runs instant queries (a route's in parallel), counting the ones Prometheus refused."""

    def __init__(self, query: Query, executor: ThreadPoolExecutor) -> None:
        self.query = query
        self.executor = executor
        self.unanswered = 0

    def reading(self, text: str, at: float) -> Reading:
        result = self.query(text, at)
        if isinstance(result, Missing):
            self.unanswered += 1  # the GIL makes this atomic enough for a count shown to people
            return result
        return normalise(result)

    def readings(self, queries: Sequence[tuple[str, float]]) -> list[Reading]:
        """:meth:`reading` of each (query, time), in order."""
        return list(self.executor.map(lambda q: self.reading(*q), queries))

    def vector(self, text: str, at: float, label: str) -> dict[str, float]:
        """``label`` -> value of every series with a finite value."""
        result = self.query(text, at)
        if isinstance(result, Missing) or not isinstance(result, list):
            self.unanswered += isinstance(result, Missing)
            return {}
        found: dict[str, float] = {}
        for series in result:
            metric, sample = (series.get("metric") or {}), series.get("value")
            value = normalise([{"value": sample}]) if isinstance(sample, list) else None
            if label in metric and value is not None and not isinstance(value, Missing):
                found[str(metric[label])] = value.value
        return found


def _observe(
    ask: _Asker, spec: ModelRouteSpec, namespace: str, name: str, now: float, since: float
) -> dict[route_decide.RouteKey, Reading]:
    keys: list[route_decide.RouteKey] = []
    queries: list[tuple[str, float]] = []
    for (_, model, metric), text in route_decide.query_plan(spec, namespace, name).items():
        keys += [("model", model, metric), ("previous", model, metric)]
        queries += [(text, now), (text, now - since)]
    return dict(zip(keys, ask.readings(queries), strict=True))


def _usages(
    ask: _Asker, spec: ModelRouteSpec, namespace: str, name: str, now: float, since: float, kind: scores.Kind
) -> list[scores.Usage]:
    """What each model of ``spec`` recorded over its window, with the route's health and trend."""
    observation = _observe(ask, spec, namespace, name, now, since)
    by_source = sdk_catalog.accuracy_by_source(spec.sdk.selector)
    usages = []
    for health in route_decide.model_health(spec, observation, {}):
        values = {m.name: m.value for m in health.metrics}
        success, errors = values.get("successRate"), values.get("errorRate")
        if success is None and errors is not None:
            success = 1 - errors
        variables = {"model": health.name, "namespace": namespace, "route": name, "window": spec.window}
        usages.append(
            scores.Usage(
                name=health.name,
                kind=kind,
                requests=health.requests,
                success_rate=success,
                latency_p95_ms=values.get("latencyP95Ms"),
                cost_per_request=values.get("costPerRequest"),
                tokens_per_request=values.get("tokensPerRequest"),
                memory_mb=values.get("memoryMb"),
                accuracy_by_source=ask.vector(promql.render(by_source, variables), now, "source"),
                health=health.score,
                trend=health.trend,
            )
        )
    return usages


def _scores_row(s: scores.Scores, state: Mapping[str, Any] | None = None) -> dict[str, Any]:
    row = asdict(s)
    row["accuracyBySource"] = row.pop("accuracy_by_source")
    row["bestSource"], row["worstSource"] = row.pop("best_source"), row.pop("worst_source")
    if state is not None:
        row["state"] = state.get("state")
        row["trafficPercent"] = state.get("trafficPercent")
    return row


def _switches(history: Sequence[Mapping[str, Any]], start: float) -> int:
    count = 0
    for entry in history:
        try:
            at = datetime.fromisoformat(str(entry.get("at", "")).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        count += at >= start
    return count


def _firing(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    keys = ("type", "severity", "subject", "summary", "startedAt", "fingerprint")
    return [{k: a.get(k) for k in keys} for a in status.get("alerts") or [] if a.get("state") == "firing"]


def _invalid(kind: str, name: str, errors: Sequence[Any]) -> Entry:
    return Entry(kind, name, error=f"invalid spec: {summary(list(errors))}")


def route_entry(
    ask: _Asker, obj: Mapping[str, Any], namespace: str, window: str, now: float, since: float
) -> Entry:
    """One ModelRoute: its models' scores over the window, health, trend, alerts, recommendations."""
    name = obj["metadata"]["name"]
    spec, errors = validate_spec(ModelRouteSpec, obj.get("spec"))
    if spec is None:
        return _invalid("ModelRoute", name, errors)
    status = obj.get("status") or {}
    windowed = spec.model_copy(update={"window": window})
    usages = _usages(ask, windowed, namespace, name, now, since, "model")
    group = scores.score_group(usages)
    states = {m.get("name"): m for m in status.get("models") or []}
    active_name = status.get("activeModel") or spec.models[0].name
    active = next((s for s in group if s.name == active_name), None)
    # The condition types ModelRoute status carries (reconcile/route_flow.py writes them).
    metrics = find(status.get("conditions"), ConditionType.METRICS_AVAILABLE)
    degraded = find(status.get("conditions"), ConditionType.DEGRADED)
    switches = _switches(status.get("switchHistory") or [], now - since)
    facts = advice.RouteFacts(
        name=name,
        primary=spec.models[0].name,
        active=active_name,
        scores=group,
        switches=switches,
        window=window,
        metrics_available=None if metrics is None else metrics.get("status") == "True",
        metrics_message=str((metrics or {}).get("message", "")),
        degraded=degraded.get("reason") if degraded and degraded.get("status") == "True" else None,
        backup_traffic_percent=spec.backup_traffic_percent,
        failure_threshold=spec.failure_threshold,
        stable_for=spec.rollback.stable_for,
    )
    return Entry(
        "ModelRoute",
        name,
        health=active.health if active else None,
        band=active.band if active else None,
        trend=active.trend if active else "unknown",
        state=status.get("state"),
        reason=f"{active_name}: {status.get('reason')}" if status.get("reason") else active_name,
        switches=switches,
        models=[_scores_row(s, states.get(s.name)) for s in group],
        alerts=_firing(status),
        recommendations=[asdict(r) for r in advice.route_advice(facts)],
    )


def policy_entry(
    ask: _Asker, obj: Mapping[str, Any], namespace: str, window: str, now: float, since: float
) -> Entry:
    """One DetectionPolicy: health from its latest evaluation, latency trend, alerts, recommendations."""
    name = obj["metadata"]["name"]
    spec, errors = validate_spec(DetectionPolicySpec, obj.get("spec"))
    if spec is None:
        return _invalid("DetectionPolicy", name, errors)
    status = obj.get("status") or {}
    rules = tuple(
        advice.RuleFact(str(r.get("name")), str(r.get("verdict")), str(r.get("cause") or ""))
        for r in status.get("rules") or []
    )
    latency = status.get("latency") or {}
    externals = status.get("externalContributors") or []
    health = scores.policy_health(
        [r.verdict for r in rules],
        latency.get("valueMs"),
        latency.get("targetMs"),
        [str(e.get("circuit")) for e in externals],
    )
    trend = "unknown"
    if spec.latency is not None:
        text = promql.render(spec.latency.query, {"namespace": namespace, "policy": name, "window": window})
        trend = _lower_is_better_trend(ask.reading(text, now), ask.reading(text, now - since))
    switches = _switches(status.get("history") or [], now - since)
    facts = advice.PolicyFacts(
        name=name,
        profile=status.get("profile"),
        rules=rules,
        switches=switches,
        window=window,
        latency_ms=latency.get("valueMs"),
        target_ms=latency.get("targetMs"),
        latency_breached=bool(latency.get("breached")),
        circuits=tuple(
            (str(e.get("name")), str(e.get("circuit")), str(e.get("reason") or "")) for e in externals
        ),
        held_by=status.get("heldBy"),
        stabilization_window=spec.stabilization_window,
        min_dwell=spec.min_dwell,
    )
    return Entry(
        "DetectionPolicy",
        name,
        health=health.score,
        band=health.band,
        trend=trend,
        state=status.get("profile"),
        reason=status.get("reason"),
        switches=switches,
        alerts=_firing(status),
        recommendations=[asdict(r) for r in advice.policy_advice(facts)],
    )


def _lower_is_better_trend(now: Reading, before: Reading) -> str:
    if isinstance(now, Missing) or isinstance(before, Missing):
        return "unknown"
    change = (before.value - now.value) / max(abs(before.value), 1e-9)
    band = route_decide.TREND_BAND
    return "improving" if change > band else "degrading" if change < -band else "stable"


def agent_rows(
    ask: _Asker, namespace: str, window: str, now: float, since: float, selector: str
) -> list[dict[str, Any]]:
    """Every agent that recorded runs in the window (SDK catalog, kind="agent", ``selector``), scored
    against each other with the default thresholds."""
    text = promql.render(sdk_catalog.agents_served(selector), {"namespace": namespace, "window": window})
    names = sorted(n for n in ask.vector(text, now, "model") if MODEL_NAME.match(n))
    usages: list[scores.Usage] = []
    for start in range(0, len(names), AGENTS_PER_GROUP):
        chunk = names[start : start + AGENTS_PER_GROUP]
        spec = ModelRouteSpec.model_validate(
            {
                "models": [{"name": n} for n in chunk],
                "metricsFrom": "sdk",
                "sdk": {"selector": selector},
                "minRequests": 0,
                "window": "1m",
            }
        ).model_copy(update={"window": window})
        usages += _usages(ask, spec, namespace, "", now, since, "agent")
    return [_scores_row(s) for s in scores.score_group(usages)]


def _items(api: client.ApiClient, namespace: str, plural: str) -> list[dict[str, Any]]:
    try:
        listed: Any = client.CustomObjectsApi(api).list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural
        )
    except ApiException as exc:
        if exc.status == 404:
            raise ReportError(
                f"the apiserver serves no {plural}.{GROUP}: are the detection-operator CRDs installed?"
            ) from exc
        raise ReportError(f"could not list {plural} in {namespace}: {exc.status} {exc.reason}") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise ReportError(f"could not reach the apiserver: {type(exc).__name__}: {exc}") from exc
    return sorted(listed.get("items") or [], key=lambda o: o["metadata"]["name"])


def build(
    api: client.ApiClient,
    query: Query,
    namespace: str,
    since_text: str,
    prometheus: str,
    now: float | None = None,
    agent_selector: str = sdk_catalog.DEFAULT_SELECTOR,
) -> Report:
    """The report of ``namespace`` over the last ``since_text`` (``1h``, ``90m``, ``7d``); agents are the
    ones ``agent_selector`` (label matchers, as a spec's ``sdk.selector``) selects."""
    if not re.fullmatch(sdk_catalog.SELECTOR_PATTERN, agent_selector) or (
        agent_selector.strip() and promql.lint(agent_selector, {"namespace", "window"})
    ):
        raise ValueError(
            f'--agent-selector {agent_selector!r}: label matchers such as namespace="$namespace", '
            'cluster="prod" (placeholders: $namespace)'
        )
    since = parse_since(since_text)
    if since < 60:
        raise ValueError(f"--since {since_text}: use at least 1m (a rate needs two scrapes)")
    now = time.time() if now is None else now
    report = Report(
        namespace=namespace,
        since=since_text,
        generated_at=datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        prometheus=prometheus,
    )
    routes, policies = _items(api, namespace, ROUTES), _items(api, namespace, POLICIES)
    with ThreadPoolExecutor(max_workers=PARALLEL_QUERIES, thread_name_prefix="report") as executor:
        ask = _Asker(query, executor)
        report.routes = [route_entry(ask, obj, namespace, since_text, now, since) for obj in routes]
        report.policies = [policy_entry(ask, obj, namespace, since_text, now, since) for obj in policies]
        report.agents = agent_rows(ask, namespace, since_text, now, since, agent_selector)
    report.unanswered = ask.unanswered
    return report


_SINCE = re.compile(r"^(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?$")


def parse_since(text: str) -> float:
    """Seconds in a window Prometheus reads too: ``1h``, ``90m``, ``1h30m``, ``7d``; else ValueError."""
    match = _SINCE.match(text)
    if not text or match is None:
        raise ValueError(f"--since {text!r}: use a duration such as 1h, 90m, 1h30m or 7d")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return days * 86400.0 + hours * 3600.0 + minutes * 60.0 + seconds


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float | int) else str(value)


def _md_table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_num(v).replace("|", "\\|") for v in row) + " |" for row in rows]
    return lines


def _health_text(entry: Entry) -> str:
    if entry.error:
        return entry.error
    health = "no score" if entry.health is None else f"{entry.band} ({entry.health:g})"
    return f"health {health}, trend {entry.trend}, {entry.switches} switch(es) in the window"


def _score_rows(rows: list[dict[str, Any]], with_state: bool) -> list[str]:
    headers = ["name", "health", "band", "trend", "reliability", "efficiency", "specialization", "requests"]
    table = [
        [
            r["name"],
            r["health"],
            r["band"],
            r["trend"],
            r["reliability"],
            r["efficiency"],
            r["specialization"]
            if r["specialization"] is None
            else f"{r['specialization']:g} (best {r['bestSource']})",
            r["requests"],
        ]
        + ([r.get("state"), r.get("trafficPercent")] if with_state else [])
        for r in rows
    ]
    return _md_table(headers + (["state", "traffic %"] if with_state else []), table)


def render(report: Report, output: str) -> str:
    """The report as JSON (for bots) or Markdown (for people and pull requests)."""
    if output == "json":
        body = asdict(report)
        body["generatedAt"] = body.pop("generated_at")
        return json.dumps(body, indent=2)
    lines = [
        f"# detection-operator report: namespace {report.namespace}, last {report.since}",
        "",
        f"Generated {report.generated_at} from {report.prometheus}; trends compare with the {report.since} "
        "before. Scores and rules: docs/sdk/scores.md.",
    ]
    if report.unanswered:
        lines += [
            "",
            f"**{report.unanswered} quer(y/ies) were refused by Prometheus**: those values are unknown.",
        ]
    for title, entries in (("ModelRoute", report.routes), ("DetectionPolicy", report.policies)):
        for entry in entries:
            lines += ["", f"## {title} {entry.name}", "", _health_text(entry) + "."]
            if entry.error:
                continue
            if entry.state or entry.reason:
                lines.append(f"State: {entry.state or '-'}: {entry.reason or ''}".rstrip(": "))
            if entry.models:
                lines += ["", *_score_rows(entry.models, with_state=True)]
            lines += ["", "Alerts firing:" if entry.alerts else "Alerts firing: none"]
            lines += [
                f"- [{a['severity']}] {a['summary']} ({str(a['fingerprint'])[:8]})" for a in entry.alerts
            ]
            lines += ["", "Recommendations:" if entry.recommendations else "Recommendations: none"]
            lines += [
                f"- **{r['severity']}** {r['rule']} {r['subject']}: {r['message']}"
                for r in entry.recommendations
            ]
    if not report.routes and not report.policies:
        lines += ["", f"No ModelRoute or DetectionPolicy in namespace {report.namespace}."]
    lines += ["", "## Agents", ""]
    lines += (
        _score_rows(report.agents, with_state=False)
        if report.agents
        else ["No agent recorded runs in the window."]
    )
    return "\n".join(lines) + "\n"
