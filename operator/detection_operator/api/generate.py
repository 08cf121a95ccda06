"""Write every generated file (``make crds``), or with ``--check`` fail when one is stale.

Generated from the pydantic models: the CRDs (top-level ``crds/`` and the chart's copy) and the JSON
Schemas of the data-plane documents (``docs/schemas/``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import crd
from .contract import SCHEMAS
from .kinds import KINDS

CRD_DIRS = ("crds", "charts/detection-operator/crds")
SCHEMA_DIR = "docs/schemas"


def generated_files(root: Path) -> dict[Path, str]:
    """Every generated file under ``root`` with the text it must have."""
    files = {root / d / crd.file_name(kind): crd.render(kind) for d in CRD_DIRS for kind in KINDS}
    for name, model in SCHEMAS.items():
        schema = model.model_json_schema(by_alias=True, mode="serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        files[root / SCHEMA_DIR / name] = json.dumps(schema, indent=2) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m detection_operator.api.generate``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("."), help="repository root")
    parser.add_argument("--check", action="store_true", help="fail if a file differs from the models")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated_files(args.root).items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run `make crds`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
