"""The client is what data-plane services import: it must not pull in kopf or the operator's runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, sys
import detection_operator.client, detection_operator.client.external
print(json.dumps(sorted(sys.modules)))
"""
ALLOWED = {"detection_operator", "detection_operator.api", "detection_operator.core"}


def _loaded(probe: str, env: dict[str, str] | None = None) -> list[str]:
    """The modules a fresh interpreter holds after running ``probe`` (which prints them as JSON)."""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    modules: list[str] = json.loads(done.stdout)
    return modules


def test_the_client_imports_neither_kopf_nor_the_operators_layers() -> None:
    loaded = _loaded(PROBE)
    assert not [m for m in loaded if m == "kopf" or m.startswith(("kopf.", "aiohttp"))]
    ours = {m for m in loaded if m.startswith("detection_operator")}
    outside = {m for m in ours if not m.startswith("detection_operator.client")}
    assert {m.rsplit(".", 1)[0] if m.count(".") > 1 else m for m in outside} <= ALLOWED, outside


OPERATOR_PROBE = """
import json, sys
import detection_operator.cli, detection_operator.runtime.handlers
from detection_operator.runtime.settings import Settings
Settings.from_env()
print(json.dumps(sorted(sys.modules)))
"""


def test_the_operator_without_a_history_store_does_not_load_psycopg() -> None:
    # psycopg is 8.6 MB of the process's RSS; only an operator with a history store needs it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTION_OPERATOR_")}
    loaded = _loaded(OPERATOR_PROBE, env)
    assert "detection_operator.runtime.handlers" in loaded
    assert not [m for m in loaded if m == "psycopg" or m.startswith("psycopg.")]
