"""`detection-operator explain dp/NAME|mr/NAME`: the latest decision, readable.

Reads the object's status and its owned ConfigMap (scorecard.json or route.json) from the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..api.base import GROUP, VERSION
from ..api.kinds import by_plural
from . import history

LATEST_RECORDS = 5
"""Audit records explain shows; `history` shows the rest."""


def fetch(api: client.ApiClient, target: str, namespace: str) -> dict[str, Any]:
    """Status, conditions and the published document of ``kind/name``."""
    kind_name, _, name = target.partition("/")
    if not name:
        raise ValueError(f"{target!r}: expected KIND/NAME, e.g. dp/bot-detector or mr/bot-classifier")
    kind = by_plural(kind_name)
    obj: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, kind.plural, name
    )
    status = obj.get("status") or {}
    document = None
    if config_map := status.get("configMap"):
        try:
            data = client.CoreV1Api(api).read_namespaced_config_map(config_map, namespace).data or {}
            raw = data.get("scorecard.json") or data.get("route.json")
            document = json.loads(raw) if raw else None
        except ApiException as exc:
            if exc.status != 404:
                raise
    return {"kind": kind.kind, "namespace": namespace, "name": name, "status": status, "published": document}


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [
        [("-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)) for v in row] for row in rows
    ]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    return [line, *("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells)]


def _samples(rule: dict[str, Any]) -> str | None:
    if "minSamples" not in rule:
        return None
    return f"{rule.get('samples', '-')}/{rule['minSamples']:g}"


def render(explained: dict[str, Any]) -> str:
    """Human-readable tables."""
    status, doc = explained["status"], explained["published"] or {}
    lines = [f"{explained['kind']} {explained['namespace']}/{explained['name']}"]
    for condition in status.get("conditions", []):
        lines.append(
            f"  {condition['type']}={condition['status']} ({condition['reason']}) {condition['message']}"
        )
    lines += _RENDER[explained["kind"]](status, doc)
    firing = [a for a in status.get("alerts", []) if a.get("state") == "firing"]
    if firing:
        lines += ["", "Alerts firing:"] + [
            f"  [{a['severity']}] {a['summary']} ({a['fingerprint']})" for a in firing
        ]
    if latest := history.records_of([explained])[-LATEST_RECORDS:]:
        short = by_plural(explained["kind"]).short_names[0]
        target = f"{short}/{explained['name']} -n {explained['namespace']}"
        lines += ["", f"Latest records (all: detection-operator history {target}):"]
        lines += [f"  {history.line(r)}" for r in latest]
    return "\n".join(lines)


def _policy(status: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    lines = []
    lines.append(f"Profile: {status.get('profile')} since {status.get('since')}: {status.get('reason')}")
    if status.get("heldBy"):
        lines.append(f"Held by: {status['heldBy']}")
    if status.get("shadow"):
        lines.append(f"Shadow: would be {status['shadow']} (not enforced)")
    lines.append(
        f"Latest evaluation: {status.get('lastEvaluated')}; published revision {doc.get('revision')} "
        f"decided at {doc.get('decidedAt')}"
    )
    # status holds the latest evaluation; the ConfigMap's scorecard is the record of the revision.
    rules = status.get("rules") or doc.get("rules") or []
    lines += ["", "Rules (in precedence order):", *_rules(rules)]
    if latency := status.get("latency"):
        lines += [
            "",
            f"Latency: {latency.get('valueMs', '-')} ms against the {latency.get('profile')} target "
            f"{latency.get('targetMs', '-')} ms, {latency.get('streak')} evaluation(s) above"
            + (": BREACHED" if latency.get("breached") else ""),
        ]
    lines += ["", "Contributors:"]
    lines += _table(
        ["contributor", "expense", "source", "runtime ms", "memory MB", "cache hits", "timeout rate"],
        [
            [
                c["name"],
                c["expense"],
                c["source"],
                c.get("runtimeMs"),
                c.get("memoryMb"),
                c.get("cacheHitRatio"),
                c.get("timeoutRate"),
            ]
            for c in doc.get("contributors", [])
        ],
    )
    lines += ["", "External contributors:"]
    lines += _table(
        ["service", "enabled", "circuit", "weight", "reason"],
        [
            [e["name"], e["enabled"], e["circuit"], e["weight"], e.get("reason")]
            for e in status.get("externalContributors", [])
        ],
    )
    return lines


def _rules(rules: list[dict[str, Any]]) -> list[str]:
    rows = []
    for r in rules:
        flags = [f for f in ("expired", "shadow") if r.get(f)]
        rows.append(
            [
                r["name"] + (f" ({', '.join(flags)})" if flags else ""),
                r.get("kind", "threshold"),
                r.get("value"),
                r.get("op"),
                r.get("threshold"),
                r.get("clearThreshold"),
                r.get("verdict"),
                r.get("active"),
                r.get("streak"),
                _samples(r),
                r.get("cause"),
            ]
        )
        for c in r.get("conditions", []):
            burns = (
                f"long {c['longBurnRate']:g}, short {c['shortBurnRate']:g}"
                if "longBurnRate" in c and "shortBurnRate" in c
                else c.get("cause")
            )
            rows.append(
                [
                    f"  {c['name']}",
                    "",
                    c.get("value"),
                    c.get("op"),
                    c.get("threshold"),
                    c.get("clearThreshold"),
                    c.get("verdict"),
                    c.get("active"),
                    c.get("streak"),
                    "",
                    burns,
                ]
            )
    return _table(
        [
            "rule",
            "kind",
            "value",
            "op",
            "threshold",
            "clear",
            "verdict",
            "active",
            "streak",
            "samples",
            "cause",
        ],
        rows,
    )


def _route(status: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    lines = []
    lines.append(f"Active: {status.get('activeModel')} ({status.get('state')}): {status.get('reason')}")
    lines += ["", "Models (priority order):"]
    lines += _table(
        ["model", "state", "traffic", "level", "score", "trend", "requests", "metrics"],
        [
            [
                m["name"],
                m.get("state"),
                f"{m['trafficPercent']} %" if "trafficPercent" in m else None,
                m["level"],
                m.get("score"),
                m["trend"],
                m.get("requests"),
                ", ".join(f"{k}={v:g}" for k, v in m.get("metrics", {}).items()),
            ]
            for m in status.get("models", [])
        ],
    )
    if probation := status.get("probation"):
        healthy = probation.get("healthyForSeconds")
        paused = probation.get("trafficPausedUntil")
        text = (
            f"served {probation['requests']:g} of {probation['minRequests']} requests, healthy "
            f"{'-' if healthy is None else f'{healthy:g}'}s of {probation['stableForSeconds']:g}s, "
            f"{probation['failures']} failed" + (f", trickle off until {paused}" if paused else "")
        )
        lines += ["", f"Primary's probation: {text}"]
    lines += ["", "Switch history:"]
    lines += [
        f"  {h['at']}  {h.get('from')} -> {h['to']}  {h['reason']}" for h in status.get("switchHistory", [])
    ]
    return lines


_RENDER: dict[str, Callable[[dict[str, Any], dict[str, Any]], list[str]]] = {
    "DetectionPolicy": _policy,
    "ModelRoute": _route,
}
"""Kind name -> the lines that explain its status and published document."""
