"""Write every generated file (``make crds``), or with ``--check`` fail when one is stale.

Generated from the pydantic models: the CRDs (top-level ``crds/`` and the chart's copy) and the JSON
Schemas of the data-plane documents (``docs/schemas/``). From ``docs/argocd/health.lua``: the ``argocd-cm``
patch that installs it for both kinds, and the chart's copy of ``docs/argocd/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import crd
from .base import GROUP
from .contract import SCHEMAS
from .kinds import KINDS

CRD_DIRS = ("crds", "charts/detection-operator/crds")
SCHEMA_DIR = "docs/schemas"
# The copies every client SDK's tests read with the shared vectors (clients/vectors/README.md).
VECTOR_SCHEMA_DIR, VECTOR_SCHEMAS = "clients/vectors/schemas", ("profile.schema.json", "route.schema.json")
ARGOCD_DIR, CHART_ARGOCD_DIR = "docs/argocd", "charts/detection-operator/docs/argocd"


def argocd_cm_patch(health_lua: str) -> str:
    """The ``argocd-cm`` patch that installs ``health_lua`` as the health check of both kinds."""
    body = "".join("    " + line if line.strip() else "\n" for line in health_lua.splitlines(keepends=True))
    entries = "".join(f"  resource.customizations.health.{GROUP}_{kind.kind}: |\n{body}" for kind in KINDS)
    return (
        "# Generated from health.lua by `make crds`. Do not edit. Merge into argocd-cm, e.g.\n"
        "#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file argocd-cm-patch.yaml\n"
        f"data:\n{entries}"
    )


def generated_files(root: Path) -> dict[Path, str]:
    """Every generated file under ``root`` with the text it must have."""
    files = {root / d / crd.file_name(kind): crd.render(kind) for d in CRD_DIRS for kind in KINDS}
    for name, model in SCHEMAS.items():
        schema = model.model_json_schema(by_alias=True, mode="serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        files[root / SCHEMA_DIR / name] = json.dumps(schema, indent=2) + "\n"
        if name in VECTOR_SCHEMAS:
            files[root / VECTOR_SCHEMA_DIR / name] = files[root / SCHEMA_DIR / name]
    argocd = root / ARGOCD_DIR
    files[argocd / "argocd-cm-patch.yaml"] = argocd_cm_patch((argocd / "health.lua").read_text())
    for name in ("README.md", "health.lua"):
        files[root / CHART_ARGOCD_DIR / name] = (argocd / name).read_text()
    files[root / CHART_ARGOCD_DIR / "argocd-cm-patch.yaml"] = files[argocd / "argocd-cm-patch.yaml"]
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
