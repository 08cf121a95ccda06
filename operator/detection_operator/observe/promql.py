"""PromQL query templates: the `$variable` placeholders we substitute, and a syntax check needing no server.

The check is deliberately shallow (balanced brackets, closed strings, known placeholders): it catches the
typos that make a query fail at every evaluation, without pretending to be a PromQL parser.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_VARIABLE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_BRACED = re.compile(r"\$\{\s*([A-Za-z_][A-Za-z0-9_]*)?\s*\}")
_CLOSERS = {")": "(", "]": "[", "}": "{"}


def variables(template: str) -> set[str]:
    """Return the placeholder names (without ``$``) used in ``template``."""
    return set(_VARIABLE.findall(template))


def render(template: str, values: Mapping[str, str]) -> str:
    """Substitute ``$name`` placeholders; unknown names are left as they are (lint rejects them first)."""
    return _VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def lint(template: str, allowed: Iterable[str]) -> list[str]:
    """Return human-readable problems with ``template``; an empty list means it looks valid."""
    if not template.strip():
        return ["query is blank"]
    problems: list[str] = []
    # Grafana and shell write ${name}; render() substitutes only $name, so braces would reach Prometheus.
    for braced in _BRACED.finditer(template):
        name = braced.group(1)
        hint = f"write ${name}" if name else "remove it"
        problems.append(f"{braced.group(0)} is never substituted: {hint} (placeholders have no braces)")
    unknown = sorted(variables(template) - set(allowed))
    if unknown:
        names = ", ".join("$" + name for name in unknown)
        known = ", ".join("$" + name for name in sorted(allowed)) or "none"
        problems.append(f"unknown template variable {names} (allowed here: {known})")
    problems.extend(_bracket_problems(template))
    return problems


def _bracket_problems(query: str) -> list[str]:
    stack: list[tuple[str, int]] = []
    quote: str | None = None
    escaped = False
    for pos, char in enumerate(query):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
            continue
        if char in "\"'`":
            quote = char
        elif char in "([{":
            stack.append((char, pos))
        elif char in _CLOSERS:
            if not stack or stack[-1][0] != _CLOSERS[char]:
                return [f"unexpected {char!r} at position {pos + 1}"]
            stack.pop()
    if quote:
        return [f"unterminated string literal starting with {quote}"]
    if stack:
        char, pos = stack[-1]
        return [f"unclosed {char!r} opened at position {pos + 1}"]
    return []
