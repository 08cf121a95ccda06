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


_AGE = re.compile(r"^([0-9]+)(w|d|h|m|s)$|^0$")
_AGE_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def age(text: str) -> timedelta:
    """An age or retention such as ``90d``, ``7d``, ``12h``, ``2w`` (a whole number and one unit), or ``0``.

    Days and weeks are what retention and ``--since`` are written in; spec durations (:func:`duration`)
    stay Go's, which has no day unit.
    """
    match = _AGE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid age {text!r}: use a whole number and one unit of w, d, h, m, s (e.g. 90d)")
    if match.group(1) is None:
        return timedelta(0)
    return timedelta(seconds=int(match.group(1)) * _AGE_SECONDS[match.group(2)])


def rfc3339(moment: datetime) -> str:
    """Format an aware datetime the way the apiserver stores metav1.Time (whole seconds, UTC, 'Z')."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
