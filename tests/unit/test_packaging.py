"""The source root `operator/` must never shadow Python's stdlib `operator` module."""

from __future__ import annotations

import operator
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_operator_is_stdlib_in_tests() -> None:
    assert hasattr(operator, "itemgetter")
    assert Path(operator.__file__ or "").parent != REPO / "operator"


def test_import_operator_is_stdlib_from_repo_root() -> None:
    # A fresh interpreter started in the repo root puts '' (the repo) first on sys.path: the worst case.
    code = "import operator, detection_operator; print(operator.__file__); print(operator.itemgetter)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    first_line = out.stdout.splitlines()[0]
    assert "lib/python" in first_line or "operator.py" in first_line
    assert not first_line.startswith(str(REPO / "operator"))


def test_package_has_no_parent_package() -> None:
    assert not (REPO / "operator" / "__init__.py").exists()
