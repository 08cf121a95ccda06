"""A policy's own Prometheus connection, from a Secret it references, overrides the operator's default."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from detection_operator.api.base import GROUP, VERSION
from detection_testing.controlplane import serving_certificate
from detection_testing.exporter import MetricExporter
from detection_testing.kube import wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.ports import free_port
from detection_testing.prometheus import PrometheusServer, WebSecurity

PASSWORD = "s3cret-Pa55"


@pytest.fixture(scope="module")
def secured(exporter: MetricExporter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A Prometheus that serves only HTTPS, with a certificate from a private CA, to basic credentials."""
    directory = tmp_path_factory.mktemp("secured-prometheus")
    ca, cert, key = serving_certificate(directory / "pki")
    web = WebSecurity(cert, key, ca, username="operator", password=PASSWORD)
    with PrometheusServer(directory, targets=[exporter.target], web=web) as prom:
        yield prom


@pytest.fixture
def operator_env() -> dict[str, str]:
    # The operator's own default points nowhere: only the Secret override can reach Prometheus.
    return {"DETECTION_OPERATOR_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}"}


def policy(name: str, prometheus: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "interval": "1s",
        "minDwell": "0s",  # the first decision may come before Prometheus has the value
        "defaultProfile": "balanced",
        "profiles": [{"name": "lean"}, {"name": "balanced"}],
        "rules": [
            {
                "name": "latency",
                "query": 'max(override_latency{namespace="$namespace"})',
                "op": ">",
                "threshold": 200,
                "profile": "lean",
                "reason": "high latency",
            }
        ],
    }
    if prometheus:
        spec["prometheus"] = prometheus
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DetectionPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def create(
    kube: client.ApiClient,
    namespace: str,
    name: str,
    secret: dict[str, str] | None,
    prometheus: dict[str, Any] | None,
) -> None:
    """Policy ``name`` with ``prometheus`` settings, after a Secret ``name`` holding ``secret`` (if any)."""
    if secret is not None:
        client.CoreV1Api(kube).create_namespaced_secret(
            namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=secret)
        )
    client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "detectionpolicies", policy(name, prometheus)
    )


def status(kube: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "detectionpolicies", name
    )
    return dict(obj.get("status") or {})


def metrics_condition(kube: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    conditions = status(kube, namespace, name).get("conditions", [])
    return next((c for c in conditions if c["type"] == "MetricsAvailable"), None)


def unavailable_naming(kube: client.ApiClient, namespace: str, name: str, cause: str) -> str:
    """Wait for MetricsAvailable=False on policy ``name``; its message, which must name ``cause``."""
    condition = wait_for(
        lambda: (c := metrics_condition(kube, namespace, name)) and c["status"] == "False" and c,
        timeout=30,
        what=f"{name}: MetricsAvailable=False",
    )
    assert cause in condition["message"], condition
    return str(condition["message"])


def test_secret_override_reaches_prometheus_and_bad_secrets_fail_safe(
    kube: client.ApiClient,
    namespace: str,
    exporter: MetricExporter,
    prometheus: PrometheusServer,
    operator: OperatorProcess,
) -> None:
    exporter.set("override_latency", 350, {"namespace": namespace})
    own = {"url": prometheus.url, "headers": '{"X-Scope-OrgID": "team-a"}'}
    create(kube, namespace, "own", own, {"secretRef": {"name": "own"}, "timeout": "2s"})
    create(kube, namespace, "default", None, None)
    create(kube, namespace, "bad", {"url": "file:///etc/passwd"}, {"secretRef": {"name": "bad"}})

    wait_for(
        lambda: status(kube, namespace, "own").get("profile") == "lean",
        timeout=30,
        what="override policy switched",
    )
    assert metrics_condition(kube, namespace, "own")["status"] == "True"  # type: ignore[index]
    for name, cause in (("default", "error"), ("bad", "must be an absolute http(s) URL")):
        message = unavailable_naming(kube, namespace, name, cause)
        assert "file:///etc/passwd" not in message  # the bad value is not echoed back


def test_a_secured_prometheus_is_reached_with_the_secrets_ca_and_credentials(
    kube: client.ApiClient,
    namespace: str,
    exporter: MetricExporter,
    secured: PrometheusServer,
    operator: OperatorProcess,
) -> None:
    exporter.set("override_latency", 350, {"namespace": namespace})
    secured.wait_for_series(f'override_latency{{namespace="{namespace}"}}')
    assert secured.web is not None
    reach = {"url": secured.url, "username": "operator", "ca.crt": secured.web.ca_file.read_text()}
    secrets = {
        "tls": {**reach, "password": PASSWORD},
        "tls-wrong-password": {**reach, "password": "not-the-password"},
        "tls-unknown-ca": {**{k: v for k, v in reach.items() if k != "ca.crt"}, "password": PASSWORD},
    }
    for name, data in secrets.items():
        create(kube, namespace, name, data, {"secretRef": {"name": name}})

    wait_for(
        lambda: (c := metrics_condition(kube, namespace, "tls")) and c["status"] == "True",
        timeout=30,
        what="MetricsAvailable=True through TLS and basic auth",
    )
    for name, cause in (("tls-wrong-password", "HTTP 401"), ("tls-unknown-ca", "certificate verify failed")):
        message = unavailable_naming(kube, namespace, name, cause)
        assert PASSWORD not in message and "not-the-password" not in message
