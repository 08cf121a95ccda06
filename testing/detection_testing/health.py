"""Run the health checks GitOps tools apply to our objects: Argo CD's Lua (with a Lua 5.1 interpreter, the
dialect of Argo CD's gopher-lua) and kstatus (Flux's library, built by `make kstatus`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HEALTH_LUA = REPO / "docs" / "argocd" / "health.lua"


def lua_literal(value: Any) -> str:
    """``value`` (JSON data) as a Lua table constructor, the way Argo CD hands objects to Lua: objects
    and arrays become tables, null fields are absent."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # valid Lua: only \" \\ \n-style escapes remain
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    items = (f"[{json.dumps(str(k))}] = {lua_literal(v)}" for k, v in value.items() if v is not None)
    return "{" + ", ".join(items) + "}"


def lua_interpreter() -> str | None:
    """A Lua 5.1 interpreter on PATH (Debian's lua5.1 package), if any."""
    return shutil.which("lua5.1") or shutil.which("lua")


def argocd_health(obj: dict[str, Any], script: Path = HEALTH_LUA) -> dict[str, str]:
    """Run the Argo CD health script on ``obj``; return its ``{"status", "message"}``."""
    lua = lua_interpreter()
    if lua is None:
        raise RuntimeError("no Lua interpreter: `make deps` installs lua5.1")
    runner = (
        f"obj = {lua_literal(obj)}\n"
        f"local hs = dofile({json.dumps(str(script))})\n"
        'io.write(hs.status, "\\n", hs.message or "")\n'
    )
    result = subprocess.run([lua, "-"], input=runner, capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"health.lua failed: {result.stderr}")
    status, _, message = result.stdout.partition("\n")
    return {"status": status, "message": message}


def kstatus_binary() -> str:
    """The kstatus checker `make kstatus` builds (``$KSTATUS_BIN``, else .cache/tools/bin/kstatus)."""
    return os.environ.get("KSTATUS_BIN") or str(REPO / ".cache" / "tools" / "bin" / "kstatus")


def kstatus(objects: list[dict[str, Any]]) -> list[dict[str, str]]:
    """kstatus' verdict (``Current``, ``InProgress``, ``Failed`` ...) and message for each object."""
    binary = kstatus_binary()
    if not os.access(binary, os.X_OK):
        raise RuntimeError(f"no kstatus checker at {binary}: `make kstatus` builds it")
    result = subprocess.run(
        [binary], input=json.dumps(objects), capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"kstatus failed: {result.stderr}")
    return [json.loads(line) for line in result.stdout.splitlines()]
