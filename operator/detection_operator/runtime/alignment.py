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

A period of two intervals or more may be a multiple of the true one (two evaluations that straddled an
unseen refresh: 1 s + 1 s learned as 2 s), and evaluations a whole period apart can never show the refresh
between them. Only then is there a refresh the schedule would wrongly skip (a shorter multiple of the true
period at least an interval on), and only then is there room for one more evaluation between two aligned
ones. So one evaluation in ``CHECK_EVERY``, the first included, is added halfway between two refreshes:
it sees a refresh in between if there is one, and the gap shortens the period; the aligned evaluations
around it stay where they are.

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
CHECK_EVERY = 8
"""While the period is two intervals or more, one evaluation in this many is added between two refreshes."""
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
    aligned: int = 0
    """Evaluations since the last one halfway between refreshes, while the period is doubtful."""


def learn(previous: Phase | None, sample: float | None, observed_at: float, interval: float) -> Phase | None:
    """Update what is known from one probe answer (``sample``; None if it failed) asked at ``observed_at``
    by an evaluation of an object evaluated every ``interval`` seconds."""
    if sample is None:
        return None if previous is None else replace(previous, current=False)
    if previous is None:
        return Phase(sample=sample, observed=observed_at)
    period = previous.period
    # Gaps can only shorten the period (a common divisor), so gaps between aligned evaluations a doubtful
    # period apart count too; only the first gap must come from evaluations about an interval apart.
    on_schedule = observed_at - previous.observed <= 1.5 * max(interval, previous.period or 0.0)
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
    # Counted from the first evaluation that finds the period doubtful: that one is off phase already.
    aligned = (previous.aligned + 1) % CHECK_EVERY if _doubtful(previous.period, interval) else 0
    return Phase(
        sample=sample, observed=observed_at, period=period, margin=margin, early=early, aligned=aligned
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


def _doubtful(period: float | None, interval: float) -> bool:
    return period is not None and period >= 2 * interval * (1 - SLACK)


def usable(phase: Phase | None) -> bool:
    """Whether ``phase`` is known well enough to schedule by."""
    return (
        phase is not None
        and phase.current
        and phase.period is not None
        and not (phase.early >= EARLY_LIMIT and phase.margin >= phase.period / 2)
    )


def next_evaluation(phase: Phase | None, due: float, interval: float) -> float | None:
    """Unix time of the next evaluation after one due at ``due``; None if the phase is not known."""
    if phase is None or phase.period is None or not usable(phase):
        return None
    earliest = due + interval * (1 - SLACK)
    # Halfway between two refreshes for a check (still an interval on: the period is two or more).
    shift = phase.period / 2 if _doubtful(phase.period, interval) and phase.aligned == 0 else 0.0
    k = max(1, math.ceil((earliest - phase.margin - phase.sample + shift) / phase.period))
    return phase.sample + k * phase.period - shift + phase.margin
