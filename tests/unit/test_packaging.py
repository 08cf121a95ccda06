"""The source root `operator/` must never shadow Python's stdlib `operator` module."""

from __future__ import annotations

import operator
import subprocess
import sys
import zipfile
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


def test_the_wheel_holds_the_operator_and_nothing_of_the_test_support(tmp_path: Path) -> None:
    # The test support and the demo (testing/detection_testing) are for this repository, not for users.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("detection_operator-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    packages = {name.split("/")[0] for name in names}
    assert packages <= {"detection_operator", *(p for p in packages if p.endswith(".dist-info"))}, packages
    assert not [n for n in names if "/testing/" in n or "/demo/" in n or "detection_testing" in n]
    # Every layer ships, with its typing marker.
    layers = {n.split("/")[1] for n in names if n.count("/") >= 2 and n.startswith("detection_operator/")}
    assert {
        "api",
        "core",
        "observe",
        "decide",
        "act",
        "notify",
        "record",
        "reconcile",
        "runtime",
        "tools",
        "client",
    } <= layers
    assert "detection_operator/py.typed" in names
