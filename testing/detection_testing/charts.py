"""The Helm chart from tests, the kind e2e test and the demo: render it with helm, apply it with kubectl.

helm comes from ``make helm`` (``hack/install-helm.sh``) and kubectl from ``make controlplane``; both are
found through an environment variable the Makefile sets, falling back to their place in ``.cache``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .controlplane import _repo_root, default_bin_dir

__all__ = [
    "PROMETHEUS_OPERATOR_VERSION",
    "HelmError",
    "apply",
    "helm_binary",
    "install",
    "kubectl_binary",
    "lint",
    "render",
    "servicemonitor_crd_dir",
    "uninstall",
]

#: The prometheus-operator release whose ServiceMonitor CRD the chart's ServiceMonitor is checked against.
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"


class HelmError(RuntimeError):
    """helm or kubectl refused; the message is their stderr (it names the bad value or field)."""


def _tools_dir() -> Path:
    root = _repo_root()
    if root is None:
        raise HelmError("cannot find the repository root; set HELM_BIN to the helm binary")
    return root / ".cache" / "tools"


def helm_binary() -> Path:
    """``$HELM_BIN`` if set, else ``<repo>/.cache/tools/bin/helm`` (what ``make helm`` builds)."""
    env = os.environ.get("HELM_BIN")
    return Path(env) if env else _tools_dir() / "bin" / "helm"


def kubectl_binary() -> Path:
    """kubectl next to the control-plane binaries (``make controlplane`` builds it)."""
    return default_bin_dir() / "kubectl"


def _run(argv: Sequence[str], stdin: str = "", timeout: float = 300) -> str:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise HelmError(
            f"{Path(argv[0]).name} {argv[1]} failed: {done.stderr.strip() or done.stdout.strip()}"
        )
    return done.stdout


def render(
    chart: Path, release: str, namespace: str, values: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """``helm template`` with ``values`` (merged over the chart's defaults): the manifests it renders."""
    out = _run(
        [str(helm_binary()), "template", release, str(chart), "--namespace", namespace, "--values", "-"],
        yaml.safe_dump(dict(values or {})),
    )
    return [doc for doc in yaml.safe_load_all(out) if doc]


def install(
    kubeconfig: Path,
    chart: Path,
    release: str,
    namespace: str,
    values: Mapping[str, Any] | None = None,
    timeout: float = 300,
    wait: bool = True,
) -> str:
    """``helm upgrade --install``, with ``wait`` until every Deployment replica is ready; helm's output."""
    argv = [str(helm_binary()), "upgrade", "--install", release, str(chart), "--kubeconfig", str(kubeconfig)]
    argv += ["--namespace", namespace, "--create-namespace", f"--timeout={int(timeout)}s"]
    argv += ["--wait"] if wait else []
    return _run([*argv, "--values", "-"], yaml.safe_dump(dict(values or {})), timeout + 30)


def uninstall(kubeconfig: Path, release: str, namespace: str) -> str:
    """``helm uninstall`` (CRDs stay, as Helm never deletes them)."""
    argv = [
        str(helm_binary()),
        "uninstall",
        release,
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        namespace,
    ]
    return _run([*argv, "--wait"])


def lint(chart: Path, values: Mapping[str, Any] | None = None) -> str:
    """``helm lint --strict`` with ``values``; its report (raises HelmError when the chart fails)."""
    return _run(
        [str(helm_binary()), "lint", "--strict", str(chart), "--values", "-"],
        yaml.safe_dump(dict(values or {})),
    )


def apply(kubeconfig: Path, manifests: Sequence[Mapping[str, Any]], dry_run: bool = False) -> str:
    """``kubectl apply --server-side`` (``--dry-run=server`` when ``dry_run``): the apiserver validates and
    admits every object as on a real install, and with ``dry_run`` stores nothing."""
    argv = [str(kubectl_binary()), "--kubeconfig", str(kubeconfig), "apply", "--server-side"]
    argv += ["--field-manager=helm-test", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
    return _run(argv, yaml.safe_dump_all([dict(m) for m in manifests]))


def servicemonitor_crd_dir() -> Path:
    """A directory holding only prometheus-operator's ServiceMonitor CRD, fetched once into ``.cache``.

    The CRD comes from the prometheus-operator Go module (the Go module proxy is reachable where GitHub
    release assets may not be); the module zip carries it under ``example/prometheus-operator-crd/``.
    """
    directory = _tools_dir() / f"prometheus-operator-{PROMETHEUS_OPERATOR_VERSION}"
    target = directory / "monitoring.coreos.com_servicemonitors.yaml"
    if not target.is_file():
        module = f"github.com/prometheus-operator/prometheus-operator@{PROMETHEUS_OPERATOR_VERSION}"
        info = json.loads(_run(["go", "mod", "download", "-json", module]))
        directory.mkdir(parents=True, exist_ok=True)
        source = Path(info["Dir"]) / "example" / "prometheus-operator-crd" / target.name
        shutil.copyfile(source, target.with_suffix(".tmp"))
        target.with_suffix(".tmp").rename(target)  # atomic: a parallel run never sees half a file
    return directory
