"""The ``extra`` that ties a log line to one object.

kopf's JSON formatter writes a record's ``k8s_ref`` as ``"object": {...}``, as it does for its own
per-object lines, so our lines about an object can be filtered the same way. (Only kopf's own
``kopf.objects`` logger turns lines into Events; ours stay log lines.)
"""

from __future__ import annotations

from typing import Any


def about(kind: str, namespace: str, name: str, **fields: Any) -> dict[str, Any]:
    """``extra=`` for a log line about one object, plus any other structured ``fields``."""
    return {"k8s_ref": {"kind": kind, "namespace": namespace, "name": name}, **fields}
