"""README.md and docs/: every relative link and anchor resolves, the paths they name exist, the README
stays short, and the generated field reference keeps its place in each kind's page."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from detection_operator.api import crd, reference
from detection_operator.api.kinds import KINDS, Kind

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
README_MAX_LINES = 250

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


@cache
def anchors(page: Path) -> frozenset[str]:
    """The anchors GitHub renders for ``page``'s headings (a repeated one gets -1, -2, ...)."""
    found: list[str] = []
    for _, line in _prose_lines(page.read_text()):
        match = _HEADING.match(line)
        if match:
            slug = reference.github_anchor(match.group(2))
            repeats = sum(1 for a in found if a == slug or re.fullmatch(re.escape(slug) + r"-\d+", a))
            found.append(f"{slug}-{repeats}" if repeats else slug)
    return frozenset(found)


def links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every Markdown link in ``page``'s prose (code spans and blocks excluded)."""
    found = []
    for number, line in _prose_lines(page.read_text()):
        for match in _LINK.finditer(_CODE_SPAN.sub("", line)):
            found.append((number, match.group(1)))
    return found


def broken(page: Path, target: str) -> str | None:
    """Why ``target`` (a link in ``page``) does not resolve, or None."""
    if _EXTERNAL.match(target):
        return None
    path_part, _, anchor = target.partition("#")
    resolved = (page.parent / path_part).resolve() if path_part else page
    if REPO not in (resolved, *resolved.parents):
        return f"{target}: outside the repository"
    if not resolved.exists():
        return f"{target}: no such file"
    if anchor:
        if resolved.suffix != ".md":
            return f"{target}: an anchor into a file that is not Markdown"
        if anchor not in anchors(resolved):
            return f"{target}: no heading with anchor #{anchor} in {resolved.relative_to(REPO)}"
    return None


def test_there_are_pages_and_links() -> None:
    assert REPO / "docs/README.md" in PAGES
    assert sum(len(links(p)) for p in PAGES) > 100


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    problems = [f"line {n}: {why}" for n, target in links(page) if (why := broken(page, target))]
    assert not problems, "\n".join(problems)


def _top_level_entries() -> set[str]:
    return {p.name for p in REPO.iterdir() if not p.name.startswith(".")}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_repository_paths_named_in_code_spans_exist(page: Path) -> None:
    """A `dir/file` in a code span that starts at a top-level entry of the repository must exist: module
    paths move (a layout change), and a page naming the old place is wrong."""
    top = _top_level_entries()
    missing = []
    for number, line in _prose_lines(page.read_text()):
        for match in _CODE_SPAN.finditer(line):
            text = match.group(2).strip()
            if " " in text or "/" not in text or any(c in text for c in "*<>$…{"):
                continue
            if text.split("/", 1)[0] in top and not (REPO / text).exists():
                missing.append(f"line {number}: `{text}`")
    assert not missing, "paths that do not exist:\n" + "\n".join(missing)


def test_readme_is_short() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_says_the_two_commands_first() -> None:
    text = (REPO / "README.md").read_text()
    first_block = text[: text.index("## ")]
    assert "make test" in first_block and "make demo" in first_block


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("## Try it: make demo", "try-it-make-demo"),
        ("## What `make test` needs and installs", "what-make-test-needs-and-installs"),
        ("### `spec.rules[].allOf[]`", "specrulesallof"),
        ("## [Install](install.md) with Helm", "install-with-helm"),
        ("## Über *fast* — done", "über-fast--done"),
        ("## snake_case stays", "snake_case-stays"),
    ],
)
def test_github_anchor(heading: str, anchor: str) -> None:
    assert reference.github_anchor(heading) == anchor


def test_repeated_headings_are_numbered(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A\n\n## Notes\n\n```\n## Notes\n```\n\n## Notes\n")
    assert anchors(page) == {"a", "notes", "notes-1"}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_each_kind_page_carries_its_generated_reference(kind: Kind) -> None:
    page = (REPO / reference.page_name(kind)).read_text()
    assert page.count(reference.BEGIN) == 1 and page.count(reference.END) == 1
    block = reference.field_reference(kind)
    assert block in page
    assert "### `spec`" in block and "### `status`" in block
    # Every object of the schema links to a section that exists on the page.
    for target in re.findall(r"\]\(#([^)]+)\)", block):
        assert target in anchors(REPO / reference.page_name(kind)), target


def test_a_page_without_markers_is_an_error_not_a_silent_rewrite() -> None:
    with pytest.raises(ValueError, match="lacks the markers"):
        reference.render_page(KINDS[0], "# DetectionPolicy\n\nno markers here\n")


def test_rendering_keeps_the_prose_around_the_block() -> None:
    page = f"# Title\n\nbefore\n\n{reference.BEGIN}\nOLD-CONTENT\n{reference.END}\n\nafter\n"
    rendered = reference.render_page(KINDS[1], page)
    assert rendered.startswith("# Title\n\nbefore\n\n" + reference.BEGIN)
    assert rendered.endswith(reference.END + "\n\nafter\n")
    assert "OLD-CONTENT" not in rendered


def _undescribed(path: str, node: dict[str, object]) -> list[str]:
    found = []
    properties = node.get("properties")
    for name, prop in (properties if isinstance(properties, dict) else {}).items():
        if not prop.get("description"):
            found.append(f"{path}.{name}")
        for child in (prop, prop.get("items"), prop.get("additionalProperties")):
            if isinstance(child, dict) and child.get("properties"):
                found += _undescribed(f"{path}.{name}", child)
    return found


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_spec_field_is_described(kind: Kind) -> None:
    """The field reference (and `kubectl explain`) shows the models' descriptions: none may be blank."""
    spec = crd.crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert not _undescribed("spec", spec)
