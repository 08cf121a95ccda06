"""The cyclic garbage collector, set for a process that keeps every watched object in memory.

At 2,000 objects the operator holds about half a million container objects (watched objects, the statuses
evaluations start from, validated specs) that live for as long as their object does. With CPython's
default thresholds (700, 10, 10) every evaluation's short-lived dicts pushed survivors into the old
generation, so a full collection, which visits all of them, ran every 4 s: in one minute 15 of them took
10 s of CPU, with pauses of up to 0.73 s that delayed every due evaluation, and all collections together
a quarter of a core. With the settings below: 1.4 s of CPU a minute, no full collection, and the
operator's cores from 0.79 to 0.57 (bench/RESULTS.md "Scale").
Almost everything here is freed by reference counting; the collector is for cycles (tasks, exceptions),
which are few and short-lived.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 10)
"""Young collections after 50,000 allocations (an evaluation's temporaries are gone by then, so few are
promoted), the middle one every 20 of those (minutes apart at 2,000 objects), a full one at most every
10 middle ones, and then only once what was promoted since the last is a quarter of the old generation."""


def settle() -> None:
    """Set the thresholds, and move what start-up created (modules, classes, schemas: never garbage) out
    of the collector's sight, so a full collection visits only what came later."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
