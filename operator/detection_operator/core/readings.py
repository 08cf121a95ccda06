"""What one query answered: a usable value, or a typed 'missing' with its cause. Pure.

A missing result is never 0: an empty vector, NaN/Inf, several series where one was expected, an HTTP
error, malformed JSON or a timeout each become a :class:`Missing` with its cause, and the decision logic
treats them as *unknown*. Here, below every layer, so `decide` reads observations without importing the
Prometheus client that produces them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

MissingCause = Literal["empty", "nan", "inf", "many-series", "error", "timeout", "bad-response"]


@dataclass(frozen=True)
class Value:
    """A usable sample."""

    value: float

    @property
    def ok(self) -> Literal[True]:
        """Always True: the query gave a usable value."""
        return True


@dataclass(frozen=True)
class Missing:
    """No usable sample, and why."""

    cause: MissingCause
    detail: str = ""

    @property
    def ok(self) -> Literal[False]:
        """Always False: there is no value."""
        return False

    def __str__(self) -> str:
        return f"{self.cause}: {self.detail}" if self.detail else self.cause


Reading = Value | Missing


def normalise(result: Any) -> Reading:
    """Turn the ``data.result`` of an instant query (vector or scalar) into a :data:`Reading`."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        return _number(result[1])  # a scalar result: [timestamp, "value"]
    if not isinstance(result, list):
        return Missing("bad-response", f"unexpected result type {type(result).__name__}")
    if not result:
        return Missing("empty", "the query returned no series")
    if len(result) > 1:
        return Missing("many-series", f"{len(result)} series where one was expected")
    sample = result[0].get("value") if isinstance(result[0], dict) else None
    if not isinstance(sample, list) or len(sample) != 2:
        return Missing("bad-response", "a series without a value")
    return _number(sample[1])


def _number(raw: Any) -> Reading:
    try:
        number = float(raw)
    except (TypeError, ValueError):
        return Missing("bad-response", f"not a number: {raw!r}")
    if math.isnan(number):
        return Missing("nan", "the value is NaN")
    if math.isinf(number):
        return Missing("inf", "the value is infinite")
    return Value(number)
