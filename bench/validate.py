"""`validate` on a GitOps directory of 500 manifests (half policies, half routes, one in ten broken).

Timed twice: the command as CI runs it (a new Python process: imports included) and the check alone
(`validate.validate` in this process), five times each.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from detection_operator.tools import validate
from detection_testing.documents import edited

from .harness import Stats

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = 500
RUNS = 5


def write_directory(root: Path) -> Path:
    """500 manifests, one per file, in team sub-directories as a GitOps repository holds them."""
    examples = [
        yaml.safe_load((REPO / "examples" / n).read_text())
        for n in ("detection-policy.yaml", "model-route.yaml")
    ]
    for i in range(DOCUMENTS):
        doc = edited(
            examples[i % 2], {"metadata.name": f"object-{i}", "metadata.namespace": f"team-{i % 10}"}
        )
        if i % 10 == 9:
            doc = edited(doc, {"spec.interval": "100ms"})  # a CEL violation
        path = root / f"team-{i % 10}" / f"object-{i}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return root


def validate_speed(workdir: Path) -> tuple[Stats, Stats, int]:
    """(command, in-process check, findings) for the 500-document directory."""
    directory = write_directory(workdir / "manifests")
    command, check = [], []
    findings = 0
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "detection_operator", "validate", str(directory)],
            capture_output=True,
            check=False,
        )
        command.append(time.perf_counter() - started)
        started = time.perf_counter()
        report = validate.validate([str(directory)])
        check.append(time.perf_counter() - started)
        findings = len(report.findings)
    return Stats.of(command), Stats.of(check), findings
