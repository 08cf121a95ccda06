"""The SDK metric catalog, and the PromQL the operator generates from it (``metricsFrom: sdk``).

The client SDKs (Python and TypeScript) export these names and labels; a ModelRoute or DetectionPolicy
that says ``metricsFrom: sdk`` gets every query it does not write generated from them, so a service
instrumented with the SDK needs no hand-written PromQL. This module is the one place those queries are
built: the operator, ``validate``, ``explain`` and ``report`` all read them from here.

Queries are templates like hand-written ones (``$model``, ``$contributor``, ``$window``, ``$namespace``
are substituted at evaluation), so they are linted, rendered and shown the same way.
"""

from __future__ import annotations

# The catalog (labels: model = the model's or agent's name, kind = model | agent).
REQUESTS = "neuroweaver_requests_total"
"""counter {model, kind, outcome}; outcome = success | error | timeout."""
ERRORS = "neuroweaver_errors_total"
"""counter {model, kind, error_type}, only for outcome != success."""
DURATION = "neuroweaver_request_duration_seconds"
"""histogram {model, kind}."""
TOKENS = "neuroweaver_tokens_total"
COST = "neuroweaver_cost_total"
CPU = "neuroweaver_cpu_seconds_total"
MEMORY = "neuroweaver_memory_bytes"
"""gauge {model, kind}: memory of the last run (from memory_mb, 1 MB = 1e6 bytes)."""
QUALITY = "neuroweaver_quality"
CONFIDENCE = "neuroweaver_confidence"
ACCURACY = "neuroweaver_accuracy_score"
"""histogram {model, kind, source}: one observation per scored prediction."""

# External contributors (label service = the contributor's name).
EXTERNAL_CALLS = "detector_external_calls_total"
"""counter {service, outcome}; outcome = ok | timeout | error | bad-signature."""
EXTERNAL_ERRORS = "detector_external_errors_total"
EXTERNAL_DURATION = "detector_external_duration_seconds"
EXTERNAL_ACCURACY = "detector_external_accuracy_ratio"

DEFAULT_SELECTOR = 'namespace="$namespace"'
"""Extra matchers of every generated query unless the spec's ``sdk.selector`` says otherwise: Prometheus'
Kubernetes discovery (and the Prometheus Operator's monitors) label each target with its namespace, and
a route must not read a same-named model of another namespace."""

# Spaces spelled out: \s is ASCII in the apiserver's Go regexp but Unicode in pydantic's.
_MATCHER = r'[a-zA-Z_][a-zA-Z0-9_]* *(=|!=|=~|!~) *"([^"\\\n]|\\.)*"'
SELECTOR_PATTERN = rf"^( *{_MATCHER} *(, *{_MATCHER} *)*)?$"
"""PromQL label matchers separated by commas (``a="x", b=~"y.*"``), or nothing."""


def selector(extra: str, **matchers: str) -> str:
    """``{model="$model",...,<extra>}``: ``matchers`` (fixed values, no quotes to escape) first, then the
    spec's extra matchers. A value of the form ``!=x`` is a negative matcher (``outcome!="success"``)."""
    parts = []
    for name, value in matchers.items():
        op, text = ("!=", value[2:]) if value.startswith("!=") else ("=", value)
        parts.append(f'{name}{op}"{text}"')
    if extra.strip():
        parts.append(extra.strip())
    return "{" + ",".join(parts) + "}"


def _ratio(numerator: str, denominator: str) -> str:
    # `or vector(0)`: a counter of failures appears only with the first failure, and no failures is a
    # rate of 0, not "no data"; the denominator keeps a dead model's value absent.
    return f"(sum({numerator}) or vector(0)) / sum({denominator})"


def _mean(histogram: str, series: str) -> str:
    """The mean observation of a histogram in the window (sum / count)."""
    return f"sum(rate({histogram}_sum{series}[$window])) / sum(rate({histogram}_count{series}[$window]))"


def _p95_ms(histogram: str, series: str) -> str:
    return f"histogram_quantile(0.95, sum by (le) (rate({histogram}_bucket{series}[$window]))) * 1000"


def route_queries(extra: str) -> dict[str, str]:
    """Query template of every ModelRoute metric name ($model, $window and the selector's variables)."""
    model = selector(extra, model="$model")
    failed = selector(extra, model="$model", outcome="!=success")
    success = selector(extra, model="$model", outcome="success")
    requests = f"rate({REQUESTS}{model}[$window])"
    served = f"sum(increase({REQUESTS}{model}[$window]))"
    return {
        # The mean of the scored predictions in the window.
        "accuracy": _mean(ACCURACY, model),
        "latencyP95Ms": _p95_ms(DURATION, model),
        "successRate": f"sum(rate({REQUESTS}{success}[$window])) / sum({requests})",
        "errorRate": _ratio(f"rate({REQUESTS}{failed}[$window])", requests),
        # `and count(...)`: a dead model's value vanishes at its first failed scrape (its series go stale
        # at once) instead of fading out over the window, so the route sees it failing within seconds.
        "requests": f"{served} and count({REQUESTS}{model})",
        "costPerRequest": f"sum(increase({COST}{model}[$window])) / {served}",
        "tokensPerRequest": f"sum(increase({TOKENS}{model}[$window])) / {served}",
        "memoryMb": f"max({MEMORY}{model}) / 1e6",
    }


def expense_queries(extra: str) -> dict[str, str]:
    """Query template of every expense dimension, for contributors the detector records as agents
    (``record_run(agent=<contributor>)``); no catalog series measures a cache, so cache_hit_ratio is not
    generated."""
    agent = selector(extra, model="$contributor")
    failed = selector(extra, model="$contributor", outcome="!=success")
    calls = f"rate({REQUESTS}{agent}[$window])"
    return {
        "runtime_ms": f"{_mean(DURATION, agent)} * 1000",
        "memory_mb": f"max({MEMORY}{agent}) / 1e6",
        "timeout_rate": _ratio(f"rate({REQUESTS}{failed}[$window])", calls),
    }


def external_queries(extra: str) -> dict[str, str]:
    """Query template of every external-contributor dimension ($contributor is the service's name)."""
    service = selector(extra, service="$contributor")
    return {
        "error_rate": _ratio(
            f"rate({EXTERNAL_ERRORS}{service}[$window])", f"rate({EXTERNAL_CALLS}{service}[$window])"
        ),
        "p95_latency_ms": _p95_ms(EXTERNAL_DURATION, service),
        "accuracy": f"max({EXTERNAL_ACCURACY}{service})",
    }


def accuracy_by_source(extra: str) -> str:
    """Mean accuracy per ``source`` of one model ($model, $window): the input of the specialization score."""
    model = selector(extra, model="$model")
    return (
        f"sum by (source) (rate({ACCURACY}_sum{model}[$window])) / "
        f"sum by (source) (rate({ACCURACY}_count{model}[$window]))"
    )


def agents_served(extra: str) -> str:
    """Requests per agent in the window ($window): which agents reported at all."""
    return f"sum by (model) (increase({REQUESTS}{selector(extra, kind='agent')}[$window]))"
