"""The collector settings the operator starts with (runtime/heap.py)."""

from __future__ import annotations

import gc

from detection_operator.runtime import heap


def test_settle_raises_the_thresholds_and_freezes_what_start_up_made() -> None:
    before = gc.get_threshold()
    try:
        heap.settle()
        assert gc.get_threshold() == heap.THRESHOLDS
        assert gc.get_freeze_count() > 0
        # Only what existed then is frozen: a later object is still seen by the collector.
        later: list[object] = []
        assert gc.is_tracked(later) and any(o is later for o in gc.get_objects())
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
