"""Scrape alignment: evaluate an object right after its data is refreshed. Pure (times are arguments).

What is learned per object, from the probe (observe/freshness.py) its evaluations ask alongside their
queries: the newest sample time of the series it reads, and from successive answers the refresh period:
the greatest common divisor of the gaps between the different sample times seen (a scrape interval divides
every gap; gaps of 8 s and 12 s mean a 4 s scrape, where the smallest gap would say 8 s). Only gaps between
evaluations at most 1.5 intervals apart count, since evaluations delayed by a stalled process would teach a
period that then keeps them that far apart. The next evaluation is then the first refresh, plus a margin
for the sample to become visible, that comes at least one `interval` after the evaluation just due:

    next = sample + k * period + margin,  k >= 1 the smallest with next >= due + interval * (1 - slack)

So never more often than the data changes (k >= 1: a new refresh each time), at most once per interval
(``slack`` absorbs the margin's own adjustments and millisecond jitter of scrape times, so that a
refresh exactly one interval later is not missed for a whole period), and, when the scrape interval divides
the evaluation interval, right after every n-th scrape. The margin starts small and doubles (to half a
period at most) whenever an evaluation finds that a refresh it should have seen is not there yet; it
shrinks slowly while evaluations find their data on time.

A learned period can be a multiple of the true one: two evaluations that straddled an unseen refresh, or
evaluations late in a busy process, show a gap of several scrapes (1 s + 1 s learned as 2 s; a 1 s scrape
under a 10 s interval learned as 13 s), and evaluations a whole wrong period apart never show the
refreshes between them again: the object would be evaluated every 13 s instead of every 10 s. A multiple
does no harm when it divides the interval (the schedule then keeps exactly one interval). Any other period
is *confirmed* before it is followed: the caller's own schedule (about an interval apart) applies until
``CONFIRMATIONS`` evaluations in a row left it unchanged; a shorter true period shows up in their gaps at
once, and a new period starts over.

Unknown, so the caller keeps its own schedule: before two different sample times were seen, when the last
probe failed, when the gaps have no common period (series refreshed at unrelated phases), and when several
evaluations in a row came too early even at the largest margin (data that becomes visible long after its
timestamp: federation, remote write with ingestion delay, or a target that stopped being scraped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

INITIAL_MARGIN = 0.1
"""Seconds after a sample's timestamp to evaluate: a local scrape is stored within milliseconds."""
SLACK = 0.05
"""Fraction of an interval by which two evaluations may come closer than the interval."""
EARLY_LIMIT = 3
"""Evaluations in a row that found no refresh where one was due, at the largest margin, before giving up."""
CONFIRMATIONS = 3
"""Evaluations on the caller's schedule that must leave a period unchanged before it is followed, unless it
divides the interval."""
_MIN_GAP = 0.001
"""Sample times closer than this are the same refresh (Prometheus stores milliseconds)."""
_TOLERANCE = 0.01
"""Fraction of a gap (and at least seconds) by which gaps may miss a multiple of the period: Prometheus
stamps milliseconds and starts a scrape a few of them late now and then."""
_MIN_PERIOD = 0.05
"""A common period shorter than this fraction of the interval is no period: the data has several phases."""


@dataclass(frozen=True)
class Phase:
    """What is known about when one object's data is refreshed."""

    sample: float
    """Unix time of the newest sample seen."""
    observed: float
    """Unix time the probe that saw it was asked."""
    period: float | None = None
    """Seconds between refreshes, once two different sample times were seen."""
    margin: float = INITIAL_MARGIN
    """Seconds after a refresh before evaluating."""
    early: int = 0
    """Evaluations in a row that came before a due refresh was visible."""
    current: bool = True
    """Whether the last evaluation's probe answered."""
    confirmed: int = 0
    """Evaluations in a row that left the period unchanged (counted while it needs confirming)."""


def learn(previous: Phase | None, sample: float | None, observed_at: float, interval: float) -> Phase | None:
    """Update what is known from one probe answer (``sample``; None if it failed) asked at ``observed_at``
    by an evaluation of an object evaluated every ``interval`` seconds."""
    if sample is None:
        return None if previous is None else replace(previous, current=False)
    if previous is None:
        return Phase(sample=sample, observed=observed_at)
    period = previous.period
    on_schedule = observed_at - previous.observed <= 1.5 * interval
    if on_schedule and sample - previous.sample >= _MIN_GAP:
        gap = sample - previous.sample
        period = gap if period is None else _common_period(period, gap)
        if period < _MIN_PERIOD * interval:
            return Phase(sample=max(sample, previous.sample), observed=observed_at)
    sample = max(sample, previous.sample)
    margin, early = previous.margin, previous.early
    if period is not None:
        if observed_at - sample >= period:
            # A refresh was due by the time this evaluation asked and is not visible: wait longer next time.
            early, margin = early + 1, min(max(2 * margin, INITIAL_MARGIN), period / 2)
        else:
            early, margin = 0, max(INITIAL_MARGIN, margin * 0.9)
    confirmed = 0
    if period is not None and period == previous.period:
        confirmed = min(previous.confirmed + 1, CONFIRMATIONS)
    return Phase(
        sample=sample, observed=observed_at, period=period, margin=margin, early=early, confirmed=confirmed
    )


def _common_period(period: float, gap: float) -> float:
    """The greatest common divisor of the period so far and a new gap, within a tolerance (a gap that is
    a multiple of the period keeps it as it is, so jitter cannot wear it down)."""
    tolerance = max(_TOLERANCE, _TOLERANCE * min(period, gap))
    if abs(gap - max(1, round(gap / period)) * period) <= tolerance:
        return period
    a, b = max(period, gap), min(period, gap)
    while b > tolerance:
        remainder = a % b
        a, b = b, 0.0 if remainder <= tolerance or b - remainder <= tolerance else remainder
    return a


def usable(phase: Phase | None) -> bool:
    """Whether ``phase`` is known well enough to schedule by."""
    return (
        phase is not None
        and phase.current
        and phase.period is not None
        and not (phase.early >= EARLY_LIMIT and phase.margin >= phase.period / 2)
    )


def followed(phase: Phase | None, interval: float) -> bool:
    """Whether evaluations every ``interval`` follow ``phase``: known, and a period that divides the interval
    or has been confirmed."""
    if phase is None or phase.period is None or not usable(phase):
        return False
    multiple = interval / phase.period
    divides = abs(multiple - round(multiple)) * phase.period <= _TOLERANCE and round(multiple) >= 1
    return divides or phase.confirmed >= CONFIRMATIONS


def next_evaluation(phase: Phase | None, due: float, interval: float) -> float | None:
    """Unix time of the next evaluation after one due at ``due``; None if the phase is not followed."""
    if phase is None or phase.period is None or not followed(phase, interval):
        return None
    earliest = due + interval * (1 - SLACK)
    k = max(1, math.ceil((earliest - phase.margin - phase.sample) / phase.period))
    return phase.sample + k * phase.period + phase.margin
