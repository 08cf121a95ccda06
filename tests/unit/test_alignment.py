"""Scrape alignment: when to evaluate after the data is refreshed (runtime.alignment), and the probe that
learns the refresh (observe.freshness)."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest

from detection_operator.observe.freshness import MAX_SELECTORS, probe, selectors
from detection_operator.runtime.alignment import (
    CONFIRMATIONS,
    EARLY_LIMIT,
    INITIAL_MARGIN,
    SLACK,
    Phase,
    followed,
    learn,
    next_evaluation,
    usable,
)


def test_one_sample_time_is_not_a_phase_yet() -> None:
    phase = learn(None, 100.0, observed_at=100.4, interval=1.0)
    assert phase == Phase(sample=100.0, observed=100.4) and not usable(phase)
    assert next_evaluation(phase, due=100.4, interval=1.0) is None


def test_two_refreshes_teach_the_period_and_the_next_evaluation_follows_the_next_refresh() -> None:
    phase = learn(learn(None, 100.0, 100.4, 1.0), 101.0, 101.4, 1.0)
    assert phase is not None and phase.period == pytest.approx(1.0)
    # Due at 101.05 with a 1 s interval: right after the refresh at 102, not at 102.05.
    assert next_evaluation(phase, due=101.05, interval=1.0) == pytest.approx(102.0 + INITIAL_MARGIN)
    # Due at 101.4: the refresh at 102 comes less than an interval later, so the one after it.
    assert next_evaluation(phase, due=101.4, interval=1.0) == pytest.approx(103.0 + INITIAL_MARGIN)


@pytest.mark.parametrize(
    ("scrape", "interval", "expected"),
    [
        (10.0, 15.0, 120.0),  # the first refresh at least one interval after the last due time
        (5.0, 10.0, 110.0),  # a multiple: every second scrape
    ],
)
def test_at_most_once_an_interval_and_never_more_often_than_the_scrape(
    scrape: float, interval: float, expected: float
) -> None:
    # Learned (and confirmed) while evaluated every scrape interval, then asked for another interval.
    phase = learn(learn(None, 100.0 - scrape, 100.0 - scrape + 0.1, scrape), 100.0, 100.1, scrape)
    assert phase is not None and phase.period == scrape
    phase = replace(phase, confirmed=CONFIRMATIONS)
    assert next_evaluation(phase, due=100.1, interval=interval) == pytest.approx(expected + INITIAL_MARGIN)


def test_the_period_divides_every_gap_seen() -> None:
    # A 15 s interval over a 10 s scrape sees gaps of 10 and 20 s.
    phase = None
    for sample in (100.0, 120.0, 130.0, 150.0):
        phase = learn(phase, sample, sample + 0.1, interval=15.0)
    assert phase is not None and phase.period == pytest.approx(10.0)
    # A 10 s interval over a 4 s scrape sees gaps of 8 and 12 s, never 4.
    phase = None
    for sample in (100.0, 108.0, 120.0, 128.0):
        phase = learn(phase, sample, sample + 0.1, interval=10.0)
    assert phase is not None and phase.period == pytest.approx(4.0)
    assert not followed(phase, 10.0)  # 4 s does not divide 10 s: confirmed first
    for sample in (140.0, 148.0):
        phase = learn(phase, sample, sample + 0.1, interval=10.0)
    assert phase is not None and phase.period == pytest.approx(4.0) and followed(phase, 10.0)
    assert next_evaluation(phase, due=148.1, interval=10.0) == pytest.approx(160.0 + INITIAL_MARGIN)


def test_a_scrape_started_a_few_milliseconds_late_keeps_the_period() -> None:
    phase = None
    for sample in (100.0, 101.0, 102.005, 103.0, 104.0):
        phase = learn(phase, sample, sample + 0.1, interval=1.0)
    assert phase is not None and phase.period == pytest.approx(1.0)


def test_gaps_with_no_common_period_are_no_phase() -> None:
    # Two targets scraped every second at unrelated phases: the newest sample moves by 0.301 and 0.699 s.
    phase = None
    for sample in (100.0, 100.301, 101.0, 101.301, 102.0):
        phase = learn(phase, sample, sample + 0.1, interval=1.0)
    assert phase is not None and phase.period is None
    assert next_evaluation(phase, due=102.1, interval=1.0) is None


def test_a_period_learned_as_a_multiple_of_the_scrape_is_corrected_before_it_is_followed() -> None:
    # Scraped every second, evaluated every second; the first two evaluations straddled an unseen scrape,
    # so the first gap is 2 s. Aligned on 2 s, evaluations would never see the scrape in between again.
    phase = learn(learn(None, 100.0, 100.9, 1.0), 102.0, 102.1, 1.0)
    assert phase is not None and phase.period == pytest.approx(2.0)
    # 2 s does not divide the 1 s interval: not followed until confirmed, so the caller's schedule ...
    assert not followed(phase, 1.0) and next_evaluation(phase, due=102.1, interval=1.0) is None
    # ... comes about an interval later, sees the scrape in between, and the period is the scrape's again.
    phase = learn(phase, 103.0, 103.1, 1.0)
    assert phase is not None and phase.period == pytest.approx(1.0) and followed(phase, 1.0)
    assert next_evaluation(phase, due=103.1, interval=1.0) == pytest.approx(104.0 + INITIAL_MARGIN)


def test_a_busy_process_s_long_gap_is_not_followed() -> None:
    # A 1 s scrape under a 10 s interval; the first two evaluations came 13 s apart (a creation burst).
    phase = learn(learn(None, 100.0, 100.1, 10.0), 113.0, 113.1, 10.0)
    assert phase is not None and phase.period == pytest.approx(13.0) and not followed(phase, 10.0)
    # On the caller's schedule (10 s on) the next gap is 10 s: the common period is the scrape's.
    phase = learn(phase, 123.0, 123.1, 10.0)
    assert phase is not None and phase.period == pytest.approx(1.0) and followed(phase, 10.0)
    assert next_evaluation(phase, due=123.1, interval=10.0) == pytest.approx(133.0 + INITIAL_MARGIN)


def test_a_period_that_does_not_divide_the_interval_is_followed_once_confirmed() -> None:
    # A 4 s scrape under a 3 s interval: once per scrape, after CONFIRMATIONS evaluations agree.
    phase = learn(learn(None, 96.0, 96.1, 3.0), 100.0, 100.1, 3.0)
    due = 100.1
    for _ in range(CONFIRMATIONS):
        assert phase is not None and not followed(phase, 3.0)
        assert next_evaluation(phase, due=due, interval=3.0) is None
        due += 3.0  # the caller's schedule: the sample seen is the newest scrape at or before it
        phase = learn(phase, 100.0 + 4 * ((due - 100.0 - 0.01) // 4), due, 3.0)
    assert phase is not None and phase.period == pytest.approx(4.0) and followed(phase, 3.0)
    planned = next_evaluation(phase, due=due, interval=3.0)
    assert planned is not None and (planned - INITIAL_MARGIN - 100.0) % 4 == pytest.approx(0.0)
    assert planned >= due + 3.0 * (1 - SLACK)


def test_an_evaluation_before_its_refresh_is_visible_widens_the_margin_and_then_gives_up() -> None:
    phase = learn(learn(None, 100.0, 100.1, 1.0), 101.0, 101.1, 1.0)
    assert phase is not None
    # Federated data: stamped at scrape time, visible 0.8 s later, so every evaluation finds the old sample.
    margins = []
    for n in range(2, 8):
        phase = learn(phase, 100.0 + n - 1, 100.0 + n + phase.margin, 1.0)
        assert phase is not None
        margins.append(phase.margin)
    assert margins[:3] == pytest.approx([0.2, 0.4, 0.5])  # doubled, at most half a period
    assert phase.early >= EARLY_LIMIT and not usable(phase)
    assert next_evaluation(phase, due=108.0, interval=1.0) is None


def test_a_failed_probe_falls_back_until_the_next_answer() -> None:
    phase = learn(learn(None, 100.0, 100.1, 1.0), 101.0, 101.1, 1.0)
    failed = learn(phase, None, 102.1, 1.0)
    assert failed is not None and not usable(failed)
    assert next_evaluation(failed, due=102.1, interval=1.0) is None
    assert usable(learn(failed, 102.0, 103.1, 1.0))


def test_no_probe_answer_ever_is_no_phase() -> None:
    assert learn(None, None, 1.0, 1.0) is None


def test_a_stalled_evaluation_does_not_teach_a_longer_period() -> None:
    # Scraped every second, evaluated every second, but one evaluation came 6 s late (a stalled process).
    phase = learn(None, 100.0, 100.1, 1.0)
    phase = learn(phase, 106.0, 106.1, 1.0)
    assert phase is not None and phase.period is None  # 6 s apart: not a gap between scrapes
    phase = learn(phase, 107.0, 107.1, 1.0)
    assert phase is not None and phase.period == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(20))
def test_simulated_scrapes_each_evaluation_sees_new_data_soon_after_and_keeps_the_interval(seed: int) -> None:
    rng = random.Random(seed)
    scrape = rng.choice([1.0, 5.0, 15.0])
    interval = scrape * rng.choice([1, 2, 3])
    offset, visible_after = rng.uniform(0, scrape), rng.uniform(0.001, 0.05)

    def newest(at: float) -> float:
        # The newest sample whose scrape (started at its timestamp) is stored by time ``at``.
        k = (at - visible_after - offset) // scrape
        return offset + k * scrape

    due, phase, dues, seen = 1000.0 + rng.uniform(0, interval), None, [], []
    for _ in range(30):
        sample = newest(due)
        phase = learn(phase, sample, due, interval)
        dues.append(due)
        seen.append(sample)
        aligned = next_evaluation(phase, due, interval)
        due = aligned if aligned is not None else due + interval
    gaps = [b - a for a, b in itertools.pairwise(dues)]
    assert min(gaps) >= interval * (1 - SLACK) - 1e-9
    tail = list(zip(dues[5:], seen[5:], strict=True))
    # Once learned: every evaluation sees a sample newer than the previous one, within a margin of it.
    assert all(b > a for (_, a), (_, b) in itertools.pairwise(tail))
    assert all(d - s <= INITIAL_MARGIN + 1e-9 for d, s in tail)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            'histogram_quantile(0.95, sum by (le) (rate(http_seconds_bucket{ns="a", job=~"x|y"}[5m])))',
            ['http_seconds_bucket{ns="a", job=~"x|y"}'],
        ),
        ('sum(rate(a[1m] offset 5m)) / ignoring(x) group_left(y) sum(b{c="}"}) > bool 3', ["a", 'b{c="}"}']),
        ('{__name__="up", job="j"} @ 123', ['{__name__="up", job="j"}']),
        ("max_over_time(foo[5m:1m]) and on(instance) bar:rate5m", ["foo", "bar:rate5m"]),
        ("vector(1) * 1e3 + 0x1f", []),
        ('sum without (pod) (label_replace(x, "a", "$1", "b", "(.*)"))', ["x"]),
    ],
)
def test_selectors_are_the_series_a_query_reads(query: str, expected: list[str]) -> None:
    assert selectors(query) == expected


def test_the_probe_asks_the_newest_sample_of_every_series_once() -> None:
    assert probe(('a{x="1"}', 'rate(b[1m]) + a{x="1"}')) == 'max(timestamp(a{x="1"}) or timestamp(b))'
    assert probe(("vector(1)",)) is None
    many = tuple(f"m{i}" for i in range(MAX_SELECTORS + 5))
    text = probe(many)
    assert text is not None and text.count("timestamp(") == MAX_SELECTORS
