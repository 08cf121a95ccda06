"""Accuracy of a prediction against the real outcome, by data type, as a score in [0, 1] (pure).

The rules (the shared vectors in ``clients/vectors/accuracy.json`` pin every case, for every language):

- **numbers** (int or float, never bool): ``1 - |p - a| / |a|``. When ``a`` is 0 the relative error is
  undefined and the absolute error is used: ``1 - |p|``. NaN on either side scores 0; an infinite actual
  scores 1 only for the same infinity, an infinite prediction of a finite actual scores 0.
- **booleans**: 1 when equal, else 0. A boolean never matches a number (``True`` is not ``1``).
- **strings**: the share of the actual's distinct words that the prediction contains. Words are maximal
  runs of characters that are neither ASCII whitespace nor ASCII punctuation, with ASCII letters
  lowercased (other characters compare as they are, so every language splits the same way).
- **objects** (dicts): ``(key overlap + value similarity) / 2``. Key overlap is the share of the actual's
  keys the prediction has; value similarity is the mean score of the shared keys' values (recursively,
  0 when no key is shared).
- **lists**: the share of the actual's elements matched by an equal element of the prediction, each
  predicted element matching at most once (a multiset overlap; equality is deep JSON equality).
- **empty collections** (string with no words, empty object, empty list) as the actual: 1 when the
  prediction is empty too, else 0.
- **None** (JSON null): 1 when both are None, 0 when only one is.
- **a type mismatch** (a string against a number, a list against an object, ...): 0.

Every score is clamped to [0, 1]; a score is never NaN.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["score", "words"]

_SEPARATORS = frozenset(" \t\n\r\x0b\x0c" + string.punctuation)
_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def words(text: str) -> set[str]:
    """The distinct words of ``text`` as :func:`score` compares them (see the module docstring)."""
    found: set[str] = set()
    current: list[str] = []
    for char in text.translate(_LOWER):
        if char in _SEPARATORS:
            if current:
                found.add("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        found.add("".join(current))
    return found


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, Sequence):
        return "list"
    raise TypeError(
        f"cannot score a {type(value).__name__}: only JSON values (None, bool, number, "
        "str, dict, list) have an accuracy"
    )


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def _number(predicted: float, actual: float) -> float:
    if math.isnan(predicted) or math.isnan(actual):
        return 0.0
    if math.isinf(actual) or math.isinf(predicted):
        return 1.0 if predicted == actual else 0.0
    if actual == 0:
        return _clamp(1.0 - abs(predicted))
    return _clamp(1.0 - abs(predicted - actual) / abs(actual))


def _equal(left: Any, right: Any) -> bool:
    """Deep JSON equality: 1 equals 1.0, True does not equal 1, NaN equals nothing."""
    kind = _kind(left)
    if kind != _kind(right):
        return False
    if kind == "object":
        return left.keys() == right.keys() and all(_equal(left[k], right[k]) for k in left)
    if kind == "list":
        return len(left) == len(right) and all(_equal(a, b) for a, b in zip(left, right, strict=True))
    return bool(left == right)


def _list(predicted: Sequence[Any], actual: Sequence[Any]) -> float:
    if not actual:
        return 1.0 if not predicted else 0.0
    unmatched = list(predicted)
    matched = 0
    for element in actual:
        for i, candidate in enumerate(unmatched):
            if _equal(candidate, element):
                del unmatched[i]
                matched += 1
                break
    return matched / len(actual)


def _object(predicted: Mapping[str, Any], actual: Mapping[str, Any]) -> float:
    if not actual:
        return 1.0 if not predicted else 0.0
    shared = [key for key in actual if key in predicted]
    key_overlap = len(shared) / len(actual)
    values = sum(score(predicted[key], actual[key]) for key in shared) / len(shared) if shared else 0.0
    return (key_overlap + values) / 2


def score(predicted: Any, actual: Any) -> float:
    """How close ``predicted`` is to ``actual``, in [0, 1], by the rules of the module docstring.

    Raises TypeError for a value that is not JSON (a set, an object of your own).
    """
    kind = _kind(actual)
    if kind != _kind(predicted):
        return 0.0
    if kind == "null":
        return 1.0
    if kind == "bool":
        return 1.0 if predicted == actual else 0.0
    if kind == "number":
        return _number(float(predicted), float(actual))
    if kind == "string":
        expected = words(actual)
        if not expected:
            return 1.0 if not words(predicted) else 0.0
        return len(expected & words(predicted)) / len(expected)
    if kind == "object":
        return _clamp(_object(predicted, actual))
    return _clamp(_list(predicted, actual))
