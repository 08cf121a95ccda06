"""Operator settings, read once from the environment (the Helm chart sets these)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .metrics.source import PrometheusConfig

_PREFIX = "DETECTION_OPERATOR_"


def _read_file(path: str | None) -> str | None:
    # A mounted Secret may lack some keys (no CA, say): an absent file means "not configured".
    return Path(path).read_text().strip() if path and Path(path).is_file() else None


def _existing(path: str | None) -> str | None:
    return path if path and Path(path).is_file() else None


@dataclass(frozen=True)
class Settings:
    """What the operator process is configured with."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty means cluster-wide."""
    max_workers: int = 16
    """Threads for blocking Kubernetes and Prometheus calls."""
    max_concurrent_evaluations: int = 32
    """Evaluations in flight at once; the rest wait their turn."""
    liveness_port: int = 8080
    """Port of /healthz."""
    receivers_file: str | None = None
    """YAML/JSON file (a mounted Secret) listing alert receivers; see notify.receivers."""
    prometheus: PrometheusConfig = field(
        default_factory=lambda: PrometheusConfig(url="http://prometheus-operated.monitoring.svc:9090")
    )
    """Default Prometheus connection; objects may override it through a Secret."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``DETECTION_OPERATOR_*`` variables; unset ones keep their defaults.

        Credentials come from files (mounted Secrets), never from plain environment values.
        """
        env = os.environ if env is None else env

        def get(name: str, default: str | None = None) -> str | None:
            return env.get(_PREFIX + name, default)

        namespaces = tuple(n.strip() for n in (get("NAMESPACES") or "").split(",") if n.strip())
        username, password = get("PROMETHEUS_USERNAME"), _read_file(get("PROMETHEUS_PASSWORD_FILE"))
        default = cls()
        prometheus = PrometheusConfig(
            url=get("PROMETHEUS_URL") or default.prometheus.url,
            timeout_seconds=float(get("PROMETHEUS_TIMEOUT_SECONDS") or default.prometheus.timeout_seconds),
            bearer_token=_read_file(get("PROMETHEUS_BEARER_TOKEN_FILE")),
            basic_auth=(username, password) if username and password else None,
            ca_file=_existing(get("PROMETHEUS_CA_FILE")),
            headers=json.loads(get("PROMETHEUS_HEADERS") or "{}") or None,
            pool_size=int(get("MAX_WORKERS") or default.max_workers),
        )
        return cls(
            namespaces=namespaces,
            max_workers=int(get("MAX_WORKERS") or default.max_workers),
            max_concurrent_evaluations=int(
                get("MAX_CONCURRENT_EVALUATIONS") or default.max_concurrent_evaluations
            ),
            liveness_port=int(get("LIVENESS_PORT") or default.liveness_port),
            receivers_file=get("RECEIVERS_FILE"),
            prometheus=prometheus,
        )
