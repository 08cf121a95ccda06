"""Command-line options shared by every test directory."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("detection-operator")
    group.addoption(
        "--existing-cluster",
        action="store_true",
        help="run integration tests against the cluster in $KUBECONFIG instead of a local control plane",
    )
    group.addoption(
        "--kind",
        action="store_true",
        help="run integration tests on a kind cluster created through pytest-kind (needs Docker)",
    )
