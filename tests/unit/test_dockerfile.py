"""The Dockerfile, checked as far as possible without Docker (the kind e2e test builds it for real)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [(ln.split(maxsplit=1)[0].upper(), ln.split(maxsplit=1)[1]) for ln in lines]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def dockerignore_excludes(path: str) -> bool:
    """Whether the build context leaves ``path`` out (last matching .dockerignore pattern wins)."""
    excluded = False
    for pattern in (REPO / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            excluded = not negate
    return excluded


def test_copy_sources_exist_and_are_in_the_build_context() -> None:
    copies = [shlex.split(args) for op, args in instructions() if op == "COPY"]
    sources = [src for words in copies if not words[0].startswith("--from") for src in words[:-1]]
    assert sources, "the Dockerfile copies nothing from the repository"
    for src in sources:
        assert (REPO / src).exists(), f"COPY {src}: no such file in the repository"
        assert not dockerignore_excludes(src), f"COPY {src}: excluded by .dockerignore"


@pytest.mark.parametrize("path", [".venv", ".cache", "tests", ".git", "bench"])
def test_build_context_leaves_out(path: str) -> None:
    assert dockerignore_excludes(path)


def test_runs_as_the_charts_non_root_user() -> None:
    users = [args for op, args in final_stage() if op == "USER"]
    assert users == ["65532:65532"]  # numeric, so runAsNonRoot can verify it; the chart's runAsUser


def test_base_entrypoint_and_default_command() -> None:
    steps = instructions()
    # Users build on python:3.11-slim; the node tests pass a local base with --build-arg.
    assert steps[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    froms = [args for op, args in steps if op == "FROM"]
    assert froms and all(f.startswith("${BASE_IMAGE}") for f in froms), froms
    stage = dict(final_stage())
    assert json.loads(stage["ENTRYPOINT"]) == ["detection-operator"]
    assert json.loads(stage["CMD"]) == ["run", "--log-format=json"]
    # The chart's probes and Service use this port.
    assert stage["EXPOSE"] == "8080"
