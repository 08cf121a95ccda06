"""What the reliability suite observed: the fault table and measured numbers, as Markdown."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class Report:
    """Rows of the fault table and measured numbers, in the order the tests ran."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)
    numbers: dict[str, object] = field(default_factory=dict)

    def fault(self, fault: str, expected: str, observed: str) -> None:
        """Add a row: the injected fault, what should happen, what the test saw."""
        self.rows.append((fault, expected, observed))

    def markdown(self) -> str:
        """The table, then one line per number."""
        lines = ["| Fault | Expected | Observed |", "|---|---|---|"]
        lines += [f"| {f} | {e} | {o} |" for f, e, o in self.rows]
        lines += ["", *(f"- {k}: {json.dumps(v)}" for k, v in self.numbers.items())]
        return "\n".join(lines) + "\n"
