"""docs/reference/conditions.md lists exactly the condition types, condition reasons and Event reasons the
operator writes (api/conditions.py): the first column of each table is the literal, in backticks."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import pytest

from detection_operator.api.conditions import ConditionReason, ConditionType, EventReason

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "conditions.md"
SECTIONS: dict[str, type[StrEnum]] = {
    "Condition types": ConditionType,
    "Condition reasons": ConditionReason,
    "Event reasons": EventReason,
}
_FIRST_CELL = re.compile(r"^\|\s*`([^`]+)`\s*\|")


def _tables() -> dict[str, list[str]]:
    """Per ``## `` section: the backticked first cells of its table rows, in order."""
    found: dict[str, list[str]] = {}
    section = None
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            found[section] = []
        elif section is not None and (match := _FIRST_CELL.match(line)):
            found[section].append(match.group(1))
    return found


@pytest.mark.parametrize("section", SECTIONS)
def test_reference_table_matches_constants(section: str) -> None:
    documented = _tables().get(section)
    assert documented is not None, f"{REFERENCE.name} has no '## {section}' table"
    assert len(documented) == len(set(documented)), f"{section}: a literal is listed twice"
    expected = {member.value for member in SECTIONS[section]}
    assert set(documented) == expected, (
        f"{section}: undocumented {sorted(expected - set(documented))}, "
        f"documented but never written {sorted(set(documented) - expected)}"
    )
