"""Generate the field reference of each kind's docs page from the models (see ``api.generate``).

The reference is read from the same structural schema the CRD carries (:func:`.crd.structural_schema`), so
it says what ``kubectl explain`` and the apiserver say: one Markdown table per object, with each field's
type, default, bounds and description, and the CEL rules that object is checked against. It replaces the
part of ``docs/<kind>.md`` between two marker comments; the prose around it is written by hand.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import TypeAdapter

from . import crd
from .base import DURATION_PATTERN, Name, ObjectName
from .kinds import Kind

BEGIN = "<!-- BEGIN GENERATED FIELD REFERENCE (make crds) -->"
END = "<!-- END GENERATED FIELD REFERENCE -->"

_SCALARS = {"string", "integer", "number", "boolean"}
# The patterns of base.Name and base.ObjectName, said in words (each implies its length bound).
_NAMED_PATTERNS = {
    TypeAdapter(Name).json_schema()[
        "pattern"
    ]: "A DNS-1123 label (lowercase letters, digits, '-'; at most 63).",
    TypeAdapter(ObjectName).json_schema()["pattern"]: "A DNS-1123 subdomain (an object name; at most 253).",
}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lowercased, punctuation dropped, spaces to hyphens.

    Rendered text only: code-span backticks and emphasis are gone, link text stays, HTML tags are dropped.
    Repeats of one anchor on a page get ``-1``, ``-2``... (that numbering is the caller's).
    """
    text = re.sub(r"^#+\s*", "", heading)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def page_name(kind: Kind) -> str:
    """The docs page of ``kind``, relative to the repository root."""
    return f"docs/{kind.singular}.md"


def field_reference(kind: Kind) -> str:
    """The generated block of ``kind``'s page, markers included."""
    sections: list[_Section] = []
    seen: dict[str, _Section] = {}
    top = crd.crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for root in ("spec", "status"):
        _collect(root, top["properties"][root], sections, seen)
    anchors = [github_anchor(s.heading) for s in sections]
    if len(set(anchors)) != len(anchors):
        raise ValueError(f"two sections of the {kind.kind} reference share an anchor: {anchors}")
    lines = [
        BEGIN,
        "",
        f"Generated from the pydantic models in `operator/detection_operator/api/` (`{kind.spec.__name__}`, "
        f"`{kind.status.__name__}`) by `make crds`; `make check-crds` fails when it is stale. To change a "
        "description, change the model: it is also what `kubectl explain` shows.",
        "",
    ]
    for section in sections:
        lines += section.render()
    lines.append(END)
    return "\n".join(lines) + "\n"


def render_page(kind: Kind, current: str) -> str:
    """``current`` (the page as written) with its generated block replaced by the models' reference."""
    start, end = current.find(BEGIN), current.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{page_name(kind)} lacks the markers {BEGIN!r} ... {END!r}")
    return current[:start] + field_reference(kind) + current[end + len(END) + 1 :]


class _Section:
    """One object of the schema: its path, description, fields and CEL rules."""

    def __init__(self, path: str, node: dict[str, Any]) -> None:
        self.path = path
        self.node = node
        self.rows: list[tuple[str, str, str, str]] = []
        self.also: list[str] = []

    @property
    def heading(self) -> str:
        return f"### `{self.path}`"

    def render(self) -> list[str]:
        lines = [self.heading, ""]
        description = self.node.get("description")
        if description:
            lines += [_text(description), ""]
        if self.also:
            lines += ["Same shape as: " + ", ".join(f"`{p}`" for p in self.also) + ".", ""]
        lines += ["| Field | Type | Default | Description |", "|---|---|---|---|"]
        lines += [f"| {name} | {type_} | {default} | {text} |" for name, type_, default, text in self.rows]
        lines.append("")
        rules = self.node.get("x-kubernetes-validations") or []
        if rules:
            lines.append("Checked at admission (CEL) and by the operator:")
            lines.append("")
            lines += [f"- `{r['fieldPath']}`: {_text(r['message'])}" for r in rules]
            lines.append("")
        return lines


def _collect(path: str, node: dict[str, Any], sections: list[_Section], seen: dict[str, _Section]) -> str:
    """Add the section of object ``node`` (and of the objects below it); return its heading's anchor."""
    key = json.dumps({k: v for k, v in node.items() if k != "description"}, sort_keys=True)
    if key in seen:
        seen[key].also.append(path)
        return github_anchor(seen[key].heading)
    section = _Section(path, node)
    seen[key] = section
    sections.append(section)
    required = set(node.get("required", ()))
    for name, prop in node.get("properties", {}).items():
        child = _object_below(prop)
        link = None
        if child is not None:
            child_path = f"{path}.{name}" + ("[]" if prop.get("type") == "array" else "")
            link = _collect(child_path, child, sections, seen)
        label = f"`{name}`" + (" (required)" if name in required else "")
        section.rows.append((label, _type(prop, link), _default(prop), _description(prop)))
    return github_anchor(section.heading)


def _object_below(prop: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema a field holds (itself, or its items'), if it has fields of its own."""
    for candidate in (prop, prop.get("items"), prop.get("additionalProperties")):
        if isinstance(candidate, dict) and candidate.get("properties"):
            return candidate
    return None


def _type(prop: dict[str, Any], link: str | None) -> str:
    kind = prop.get("type", "object")
    if kind == "array":
        items = prop.get("items", {})
        inner = _scalar(items) if items.get("type") in _SCALARS else "object"
        text = f"[]{inner}"
    elif kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        values = prop["additionalProperties"]
        inner = _scalar(values) if values.get("type") in _SCALARS else "object"
        text = f"map[string]{inner}"
    elif kind == "object" and prop.get("x-kubernetes-preserve-unknown-fields"):
        text = "object (free-form)"
    else:
        text = _scalar(prop)
    return f"[{text}](#{link})" if link else text


def _scalar(prop: dict[str, Any]) -> str:
    kind = str(prop.get("type", "object"))
    if prop.get("format") == "date-time":
        return "date-time"
    if kind == "string" and prop.get("pattern") == DURATION_PATTERN:
        return "duration"
    return kind


def _default(prop: dict[str, Any]) -> str:
    if "default" not in prop:
        return ""
    value = prop["default"]
    text = value if isinstance(value, str) and value else json.dumps(value, separators=(", ", ": "))
    return f"`{_cell(text)}`"


def _description(prop: dict[str, Any]) -> str:
    parts = [_text(prop["description"])] if prop.get("description") else []
    parts += _constraints(prop)
    return " ".join(parts)


def _constraints(prop: dict[str, Any]) -> list[str]:
    found = []
    target = prop.get("items") if prop.get("type") == "array" else prop
    target = target if isinstance(target, dict) else {}
    if target.get("enum"):
        found.append("One of " + ", ".join(f"`{_cell(str(v))}`" for v in target["enum"]) + ".")
    bounds = []
    for key, strict, sign in (("minimum", "exclusiveMinimum", ">"), ("maximum", "exclusiveMaximum", "<")):
        if key in target:
            bounds.append(f"{sign}{'' if target.get(strict) else '='} {target[key]:g}")
    if bounds:
        found.append("Range: " + ", ".join(bounds).replace(">=", "≥").replace("<=", "≤") + ".")
    if prop.get("type") == "array":
        found += _size("items", prop.get("minItems"), prop.get("maxItems"))
        list_type = prop.get("x-kubernetes-list-type")
        if list_type == "map":
            found.append("Unique by " + ", ".join(f"`{k}`" for k in prop["x-kubernetes-list-map-keys"]) + ".")
        elif list_type == "set":
            found.append("Unique items.")
    named = _NAMED_PATTERNS.get(target.get("pattern", ""))
    if named:
        found.append(named)
    elif target.get("type") == "string" and _scalar(target) != "duration":
        found += _size("characters", target.get("minLength"), target.get("maxLength"))
        if "pattern" in target:
            found.append(f"Pattern `{_cell(target['pattern'])}`.")
    return found


def _size(unit: str, low: int | None, high: int | None) -> list[str]:
    if low is not None and high is not None:
        return [f"{low} to {high} {unit}."]
    if high is not None:
        return [f"At most {high} {unit}."]
    if low:
        return [f"At least {low} {unit}."]
    return []


def _text(text: str) -> str:
    """Prose for a table cell: ``<`` outside code spans escaped (it would start an HTML tag), pipes too."""
    pieces = text.split("`")
    for index in range(0, len(pieces), 2):
        pieces[index] = pieces[index].replace("<", "&lt;")
    return _cell("`".join(pieces).replace("\n", " "))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
