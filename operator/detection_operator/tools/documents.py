"""Read Kubernetes manifests from files, directories or stdin (multi-document YAML) as kubectl reads them.

kubectl, Argo CD and Flux turn YAML into JSON with sigs.k8s.io/yaml (go-yaml v2 rules): ``1e3`` is a
number, ``2026-01-01`` stays the string it was written as, ``0x1F`` is 31, keys become strings. PyYAML's
own rules differ (``1e3`` is a string, a timestamp becomes a datetime and an impossible one raises), so
the plain scalars are resolved here with go-yaml's rules instead. Nothing read here raises: what cannot
be read becomes a :class:`Document` carrying the problem, so `validate` reports it like any finding.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..api.base import API_VERSION
from ..api.kinds import KINDS, Kind

SUFFIXES = (".yaml", ".yml", ".json")
MAX_NODES = 1_000_000
"""Values one document may expand to: go-yaml refuses "excessive aliasing" (billion laughs) too."""

_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_BOOLS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
_SPECIAL: dict[str, Any] = {
    **_BOOLS,
    **dict.fromkeys(("", "~", "null", "Null", "NULL")),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}
_GO_SCALAR = "tag:detection.adaptive.io,2026:go-scalar"


def _go_int(text: str) -> int | None:
    """strconv.ParseInt/ParseUint(text, 0, 64): sign, then 0x / 0o / 0b / leading-0 octal or decimal."""
    sign, digits = (-1, text[1:]) if text[:1] == "-" else (1, text[1:] if text[:1] == "+" else text)
    base = 10
    if digits[:2].lower() in ("0x", "0o", "0b"):
        base, digits = {"0x": 16, "0o": 8, "0b": 2}[digits[:2].lower()], digits[2:]
    elif len(digits) > 1 and digits[0] == "0":
        base, digits = 8, digits[1:]
    if not digits or not all(c in _DIGITS[base] for c in digits):
        return None
    value = sign * int(digits, base)
    return value if -(2**63) <= value < 2**64 else None


def go_scalar(text: str) -> Any:
    """The value go-yaml v2 gives an unquoted scalar when decoding into an untyped value."""
    if text in _SPECIAL:
        return _SPECIAL[text]
    if not text or text[0] not in "+-.0123456789":
        return text
    if text[0] == ".":
        return _go_float(text, text)
    plain = text.replace("_", "")
    if (number := _go_int(plain)) is not None:
        return number
    if _GO_FLOAT.match(plain):
        return _go_float(plain, text)
    return text  # timestamps too: go-yaml keeps their text when the target is untyped


def _go_float(plain: str, text: str) -> Any:
    try:
        value = float(plain)
    except ValueError:
        return text
    # strconv.ParseFloat fails on overflow (then go-yaml keeps the string) where Python gives inf.
    return text if math.isinf(value) else value


class KubectlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader with go-yaml v2's resolution of plain scalars (see the module docstring),
    keys turned into strings as sigs.k8s.io/yaml does, and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        own: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = _key(self.construct_object(key_node, deep=True))
            if key in own:
                # PyYAML keeps the last value silently; the earlier one would be lost without a word.
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            own.add(key)
        self.flatten_mapping(node)
        return {
            _key(self.construct_object(k, deep=deep)): self.construct_object(v, deep=deep)
            for k, v in node.value
        }


KubectlLoader.yaml_implicit_resolvers = {}
KubectlLoader.add_implicit_resolver(_GO_SCALAR, re.compile(r"(?s).*"), None)
KubectlLoader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])


def _construct_go_scalar(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    assert isinstance(node, yaml.ScalarNode)
    return go_scalar(loader.construct_scalar(node))


def _construct_text(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    assert isinstance(node, yaml.ScalarNode)
    return loader.construct_scalar(node)


KubectlLoader.add_constructor(_GO_SCALAR, _construct_go_scalar)
KubectlLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_text)


class NotJSON(ValueError):
    """A YAML value JSON cannot carry (a null or complex key, a set, excessive aliasing)."""


def jsonable(value: Any) -> Any:
    """``value`` as JSON: keys as strings the way sigs.k8s.io/yaml writes them; raise :class:`NotJSON`."""
    budget = [MAX_NODES]

    def walk(node: Any) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise NotJSON("document contains excessive aliasing (more than a million values)")
        if isinstance(node, dict):
            return {_key(k): walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, bytes):
            return node.decode("utf-8", "replace")
        if node is None or isinstance(node, bool | int | float | str):
            return node
        raise NotJSON(f"a YAML {type(node).__name__} has no JSON form")

    return walk(value)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        return {math.inf: ".inf", -math.inf: "-.inf"}.get(key, ".nan" if key != key else f"{key:g}")
    raise NotJSON(f"unsupported map key {key!r}: JSON keys are strings")


@dataclass(frozen=True)
class Document:
    """One YAML document and where it came from; ``problem`` says why it could not be read."""

    source: str
    index: int
    body: Any
    problem: str | None = None

    @property
    def where(self) -> str:
        """``file#N`` (documents counted from 1)."""
        return f"{self.source}#{self.index}"

    @property
    def kind(self) -> Kind | None:
        """Our kind, if the document is one of ours (apiVersion and kind both match)."""
        if not isinstance(self.body, dict) or self.body.get("apiVersion") != API_VERSION:
            return None
        return next((k for k in KINDS if k.kind == self.body.get("kind")), None)


class ReadError(ValueError):
    """A file that cannot be read at all (missing, unreadable); the message names it."""


def _files(paths: list[str]) -> Iterator[tuple[str, bytes]]:
    for raw in paths:
        if raw == "-":
            yield "<stdin>", sys.stdin.buffer.read()
            continue
        path = Path(raw)
        try:
            if path.is_dir():
                for file in sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()):
                    yield str(file), file.read_bytes()
            elif path.is_file():
                yield str(path), path.read_bytes()
            else:
                raise ReadError(f"{raw}: no such file or directory")
        except OSError as exc:
            raise ReadError(f"{exc.filename or raw}: cannot read: {exc.strerror or exc}") from exc


def parse(source: str, data: bytes) -> Iterator[Document]:
    """Every non-empty document of one file; a document that cannot be parsed ends the file with it."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        yield Document(source, 1, None, f"not UTF-8 text (byte {exc.start}): is this a binary file?")
        return
    try:
        loader = KubectlLoader(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters up front
        yield Document(source, 1, None, f"not valid YAML: {exc}")
        return
    index = 1
    try:
        while True:
            try:
                if not loader.check_data():
                    return
                body = jsonable(loader.get_data())
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark
                where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
                yield Document(source, index, None, f"not valid YAML: {exc.problem or exc.context}{where}")
                return
            except NotJSON as exc:
                yield Document(source, index, None, str(exc))
                return
            except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
                yield Document(source, index, None, f"not valid YAML: {type(exc).__name__}: {exc}")
                return
            if body is not None:
                yield Document(source, index, body)
            index += 1
    finally:
        loader.dispose()


def read_documents(paths: list[str]) -> list[Document]:
    """Every non-empty YAML document in ``paths`` (``-`` is stdin, e.g. kustomize build output).

    Raises :class:`ReadError` only for a path that cannot be read at all.
    """
    return [doc for source, data in _files(paths) for doc in parse(source, data)]
