"""Read DetectionPolicy / ModelRoute documents from files, directories or stdin (multi-document YAML)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..api.base import API_VERSION
from ..api.kinds import KINDS, Kind


@dataclass(frozen=True)
class Document:
    """One YAML document and where it came from."""

    source: str
    index: int
    body: Any

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
    """A file that cannot be read or parsed; the message names it."""


def _files(paths: list[str]) -> Iterator[tuple[str, str]]:
    for raw in paths:
        if raw == "-":
            yield "<stdin>", sys.stdin.read()
            continue
        path = Path(raw)
        if path.is_dir():
            for file in sorted([*path.rglob("*.yaml"), *path.rglob("*.yml")]):
                yield str(file), file.read_text()
        elif path.is_file():
            yield str(path), path.read_text()
        else:
            raise ReadError(f"{raw}: no such file or directory")


def read_documents(paths: list[str]) -> list[Document]:
    """Every non-empty YAML document in ``paths`` (``-`` is stdin, e.g. kustomize build output)."""
    documents = []
    for source, text in _files(paths):
        try:
            bodies = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            raise ReadError(f"{source}: not valid YAML: {exc}") from exc
        for index, body in enumerate(bodies, start=1):
            if body is not None:
                documents.append(Document(source, index, body))
    return documents
