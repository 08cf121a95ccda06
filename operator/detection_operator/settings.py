"""Operator settings, read once from the environment (the Helm chart sets these)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """What the operator process is configured with."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty means cluster-wide."""
    max_workers: int = 8
    """Threads for blocking Kubernetes and Prometheus calls."""
    liveness_port: int = 8080
    """Port of /healthz."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``DETECTION_OPERATOR_*`` variables; unset ones keep their defaults."""
        env = os.environ if env is None else env
        raw_namespaces = env.get("DETECTION_OPERATOR_NAMESPACES", "").split(",")
        namespaces = tuple(n.strip() for n in raw_namespaces if n.strip())
        return cls(
            namespaces=namespaces,
            max_workers=int(env.get("DETECTION_OPERATOR_MAX_WORKERS", cls.max_workers)),
            liveness_port=int(env.get("DETECTION_OPERATOR_LIVENESS_PORT", cls.liveness_port)),
        )
