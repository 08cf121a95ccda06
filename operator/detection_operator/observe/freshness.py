"""When an object's data was last refreshed: one probe query over the series its queries read.

The probe asks for the newest sample time of every vector selector in the object's instant queries,
``max(timestamp(a) or timestamp(b) ...)``: Prometheus stamps a scraped sample with its scrape's start and
a recording rule's with its evaluation, so the answer moves exactly when new data arrives. Selectors are
found by a shallow scan, not a parser: what it cannot see (a selector it mistakes for something else) only
makes the phase less exact, never a decision wrong, because the probe feeds the scheduler alone.
"""

from __future__ import annotations

import functools
import re

MAX_SELECTORS = 16
"""A probe longer than this many selectors costs more than the phase is worth; the first ones decide."""

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    | (?P<braces>\{(?:"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`|[^}"'`])*\})
    | (?P<range>\[[^\]]*\])
    | (?P<number>(?:0x[0-9a-fA-F]+|\d[\w.]*|\.\d[\w.]*))
    | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<other>\S)
    """,
    re.VERBOSE,
)
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "start", "end", "atan2"}
    | {"by", "without", "on", "ignoring", "group_left", "group_right"}
)
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_NAME_IN_BRACES = re.compile(r"__name__\s*=")


def selectors(promql: str) -> list[str]:
    """The vector selectors of ``promql`` (``name{matchers}`` or ``{matchers}``), in order, without ranges,
    offsets or ``@`` modifiers."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(promql)]
    found: list[str] = []
    skip_list = False
    for index, (kind, text) in enumerate(tokens):
        after = tokens[index + 1] if index + 1 < len(tokens) else (None, "")
        before = tokens[index - 1] if index else (None, "")
        if skip_list:
            # Inside `by (...)` and the like every name is a label.
            if kind == "other" and text == ")":
                skip_list = False
            continue
        if kind == "name":
            if text in _LABEL_LISTS and after[1] == "(":
                skip_list = True
                continue
            # A function or aggregation (`sum by (x) (...)` too), a keyword, or the `@` time's function.
            if text in _KEYWORDS or after[1] in ("(", "by", "without") or before[1] == "@":
                continue
            found.append(text + (after[1] if after[0] == "braces" else ""))
        elif kind == "braces" and before[0] != "name" and _NAME_IN_BRACES.search(text):
            found.append(text)
    return list(dict.fromkeys(found))


@functools.lru_cache(maxsize=4096)
def probe(queries: tuple[str, ...]) -> str | None:
    """One query answering the newest sample time among the series ``queries`` read; None if they read
    none (a constant, say). Cached: an object asks the same plan at every evaluation."""
    seen = list(dict.fromkeys(s for query in queries for s in selectors(query)))[:MAX_SELECTORS]
    if not seen:
        return None
    # Series of different selectors with equal labels (timestamp() drops the name) come from the same
    # target, so the same scrape: `or` keeping only one of them loses nothing.
    return "max(" + " or ".join(f"timestamp({s})" for s in seen) + ")"
