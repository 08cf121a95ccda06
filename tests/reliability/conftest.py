"""The reliability suite runs on the same real parts as the integration tests: their fixtures, reused.

Loaded from the integration conftest by path (the test directories are not packages), so one definition
serves both suites.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "integration_fixtures", Path(__file__).resolve().parents[1] / "integration" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
_fixtures = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _fixtures  # dataclasses look their module up there
_spec.loader.exec_module(_fixtures)

cluster = _fixtures.cluster
kube = _fixtures.kube
crds = _fixtures.crds
namespace = _fixtures.namespace
exporter = _fixtures.exporter
prometheus = _fixtures.prometheus
operator_env = _fixtures.operator_env
operator = _fixtures.operator
