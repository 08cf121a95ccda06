"""Which model serves a request, by route.json's ``traffic`` weights and ``fallbacks`` (pure).

:func:`choose` maps a number ``r`` in [0, 1) to a model: the models are taken in lexicographic order of
their names, ``x = r * (sum of the weights)``, and the first model whose cumulative weight exceeds ``x``
is chosen. An empty ``traffic`` sends everything to ``active``. :func:`attempts` is the order a router
tries: the chosen model, then ``active``, then the fallbacks, each once. The shared vectors in
``clients/vectors/choose.json`` pin both for every language.

``r`` may be a uniform random number; :class:`EvenSequence` is the deterministic alternative the
readers use, so a 5 % trickle is one request in about twenty, never a burst or a drought.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

__all__ = ["EvenSequence", "attempts", "choose"]


def choose(traffic: Mapping[str, int], active: str, r: float) -> str:
    """The model ``r`` (0 <= r < 1) falls on, by ``traffic``'s weights; ``active`` when there are none.

    Raises ValueError for an ``r`` outside [0, 1) or a negative weight.
    """
    if not 0.0 <= r < 1.0:
        raise ValueError(f"r must be in [0, 1), not {r!r}")
    if any(weight < 0 for weight in traffic.values()):
        raise ValueError(f"traffic weights must not be negative: {dict(traffic)}")
    total = sum(traffic.values())
    if total == 0:
        return active
    x = r * total
    cumulative = 0
    for model in sorted(traffic):
        cumulative += traffic[model]
        if cumulative > x:
            return model
    # Unreachable: r < 1 keeps x below the total, the last cumulative weight.
    raise AssertionError(f"no model for r={r!r} in {dict(traffic)}")


def attempts(traffic: Mapping[str, int], active: str, fallbacks: Sequence[str], r: float) -> list[str]:
    """The models to try for one request, in order: :func:`choose`'s, then ``active``, then ``fallbacks``."""
    return list(dict.fromkeys([choose(traffic, active, r), active, *fallbacks]))


class EvenSequence:
    """Numbers in [0, 1) that cover every hundredth exactly once per 100 calls, in a scattered order.

    The n-th number is ``((n * 61) mod 100 + 0.5) / 100``: 61 is coprime with 100 (so 100 calls visit all
    hundredths) and near 100/φ (so consecutive calls land far apart). Over any 100 consecutive requests a
    route whose weights are integer percents sends each model exactly its percent. Thread safe.
    """

    STEP = 61
    SLOTS = 100

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def next(self) -> float:
        """The next number of the sequence (the first is 0.005)."""
        with self._lock:
            slot = (self._n * self.STEP) % self.SLOTS
            self._n += 1
        return (slot + 0.5) / self.SLOTS
