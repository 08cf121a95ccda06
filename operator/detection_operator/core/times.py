"""Durations and timestamps: Go-style durations parsed in one place, times written as the apiserver does.

A spec's durations are strings (``30s``, ``1h30m``) because CEL's ``duration()`` reads the same strings at
admission. They are parsed here, once per distinct string (the cache), and every layer asks for a
:class:`~datetime.timedelta` or seconds rather than converting again.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta

# Go's time.ParseDuration subset that CEL's duration() also accepts, so one string works on both sides.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@functools.lru_cache(maxsize=1024)
def parse_duration(text: str) -> float:
    """Return the number of seconds in a Go-style duration such as ``"1m30s"`` or ``"250ms"``."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: use a number with a unit, e.g. 30s, 5m, 1h30m, 250ms")
    return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _DURATION_PART.findall(text))


def duration(text: str) -> timedelta:
    """The Go-style duration ``text`` as a timedelta."""
    return timedelta(seconds=parse_duration(text))


def rfc3339(moment: datetime) -> str:
    """Format an aware datetime the way the apiserver stores metav1.Time (whole seconds, UTC, 'Z')."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
