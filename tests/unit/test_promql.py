"""PromQL template placeholders and the server-free syntax check."""

from __future__ import annotations

import pytest

from detection_operator.observe import promql

ALLOWED = {"namespace", "window"}


def test_render_substitutes_known_variables_only() -> None:
    text = 'rate(x{ns="$namespace"}[$window]) + $other'
    assert promql.render(text, {"namespace": "prod", "window": "5m"}) == 'rate(x{ns="prod"}[5m]) + $other'


def test_variables() -> None:
    assert promql.variables("a{m='$model'}[$window] $window") == {"model", "window"}


@pytest.mark.parametrize(
    "query",
    [
        'histogram_quantile(0.95, sum by (le) (rate(x_bucket{ns="$namespace"}[$window])))',
        'x{path=~"/a(b|c)\\\\["}',  # brackets inside a string literal are not syntax
        "sum(x) / sum(y)",
    ],
)
def test_lint_accepts(query: str) -> None:
    assert promql.lint(query, ALLOWED) == []


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("rate(x[$windw])", "unknown template variable $windw"),
        ("rate(x[5m]", "unclosed '('"),
        ("rate(x[5m)]", "unexpected ')'"),
        ('x{a="b}', "unterminated string"),
        ("sum(x))", "unexpected ')'"),
    ],
)
def test_lint_rejects(query: str, problem: str) -> None:
    problems = promql.lint(query, ALLOWED)
    assert any(problem in p for p in problems), problems
