"""The client is what data-plane services import: it must not pull in kopf or the operator's runtime."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import detection_operator.client, detection_operator.client.external
print(json.dumps(sorted(sys.modules)))
"""
ALLOWED = {"detection_operator", "detection_operator.api", "detection_operator.core"}


def test_the_client_imports_neither_kopf_nor_the_operators_layers() -> None:
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    )
    assert not [m for m in loaded if m == "kopf" or m.startswith(("kopf.", "aiohttp"))]
    ours = {m for m in loaded if m.startswith("detection_operator")}
    outside = {m for m in ours if not m.startswith("detection_operator.client")}
    assert {m.rsplit(".", 1)[0] if m.count(".") > 1 else m for m in outside} <= ALLOWED, outside
