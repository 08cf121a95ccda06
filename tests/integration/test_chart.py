"""The Helm chart: lint, render, server-side dry-run on the real apiserver, and its RBAC exercised for real.

The RBAC test runs the operator with a TokenRequest token of the chart's ServiceAccount: it must evaluate
a policy in a watched namespace (read a referenced Secret, write status, the ConfigMap, the Deployment
annotation, Events) and the same token must get 403 for everything the operator has no business doing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from detection_operator.api.base import GROUP, VERSION
from detection_testing.charts import (
    HelmError,
    apply,
    helm_binary,
    install,
    lint,
    render,
    servicemonitor_crd_dir,
    uninstall,
)
from detection_testing.exporter import MetricExporter
from detection_testing.kube import api_client, install_crds, wait_for
from detection_testing.operator_process import OperatorProcess
from detection_testing.ports import free_port
from detection_testing.prometheus import PrometheusServer
from detection_testing.tokens import service_account_kubeconfig

from ..conftest import Cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "detection-operator"
EVERYTHING = {
    "replicas": 3,
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "grafanaDashboard": {"enabled": True},
    "prometheus": {"authSecret": "prom-auth", "username": "op", "headers": {"X-Scope-OrgID": "team-a"}},
    "receivers": {"secretName": "receivers"},
    "history": {"postgres": {"host": "pg.db.svc", "passwordSecret": {"name": "pg-auth", "key": "pw"}}},
    "rbac": {"secretNames": ["prom-conn"]},
    "networkPolicy": {"enabled": True, "prometheus": {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}},
}


@pytest.fixture(scope="module", autouse=True)
def helm() -> Path:
    binary = helm_binary()
    if not binary.is_file():
        pytest.fail(f"no helm at {binary}: run `make helm` (hack/install-helm.sh) or set HELM_BIN")
    return binary


@pytest.fixture
def new_namespace(kube: client.ApiClient) -> Iterator[Callable[[], str]]:
    """Creates further fresh namespaces on demand; all deleted afterwards."""
    core, created = client.CoreV1Api(kube), []

    def create() -> str:
        name = f"t-{uuid.uuid4().hex[:10]}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        created.append(name)
        return name

    yield create
    for name in created:
        core.delete_namespace(name)


def by_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = by_kind(manifests, kind)
    return found


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("mode", ["default", "namespaced", "everything"])
def test_lint_and_server_side_dry_run(
    mode: str,
    cluster: Cluster,
    kube: client.ApiClient,
    crds: list[str],
    namespace: str,
    new_namespace: Callable[[], str],
) -> None:
    values: dict[str, Any] = {
        "default": {},
        "namespaced": {"watchNamespaces": [new_namespace(), new_namespace()]},
        "everything": EVERYTHING,
    }[mode]
    assert "1 chart(s) linted, 0 chart(s) failed" in lint(CHART, values)
    if mode == "everything":
        install_crds(kube, servicemonitor_crd_dir())
    manifests = render(CHART, "ops", namespace, values)
    out = apply(cluster.kubeconfig, manifests, dry_run=True)
    # Every object was admitted by the apiserver (schema, RBAC escalation checks, CRD validation).
    assert out.count("serverside-applied (server dry run)") == len(manifests), out

    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "ServiceAccount", "Service", "PodDisruptionBudget"} <= kinds
    assert ("ServiceMonitor" in kinds, "ConfigMap" in kinds, "NetworkPolicy" in kinds) == (
        (mode == "everything",) * 3
    )
    watched = values.get("watchNamespaces", [])
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in by_kind(manifests, "Role")}
    bindings = by_kind(manifests, "RoleBinding") + by_kind(manifests, "ClusterRoleBinding")
    assert all(
        b["subjects"]
        == [{"kind": "ServiceAccount", "name": "ops-detection-operator", "namespace": namespace}]
        for b in bindings
    )
    cluster_roles = {r["metadata"]["name"] for r in by_kind(manifests, "ClusterRole")}
    if watched:
        # Namespaced mode: the operator's rules only in the watched namespaces, told to watch just those.
        assert roles == {(ns, "ops-detection-operator") for ns in watched} | {
            (namespace, "ops-detection-operator-leader-election")
        }
        assert cluster_roles == {f"{namespace}-ops-detection-operator-discovery"}
        assert env_of(one(manifests, "Deployment"))["DETECTION_OPERATOR_NAMESPACES"] == ",".join(watched)
    else:
        assert roles == {(namespace, "ops-detection-operator-leader-election")}
        assert cluster_roles == {
            f"{namespace}-ops-detection-operator",
            f"{namespace}-ops-detection-operator-discovery",
        }
        assert "DETECTION_OPERATOR_NAMESPACES" not in env_of(one(manifests, "Deployment"))


def test_helm_install_and_uninstall(
    cluster: Cluster,
    kube: client.ApiClient,
    crds: list[str],
    namespace: str,
    new_namespace: Callable[[], str],
) -> None:
    watched = [new_namespace(), new_namespace()]
    out = install(cluster.kubeconfig, CHART, "ops", namespace, {"watchNamespaces": watched}, wait=False)
    assert "STATUS: deployed" in out
    assert f"Namespaced mode: it watches {watched[0]}, {watched[1]} only." in out
    rbac = client.RbacAuthorizationV1Api(kube)
    assert rbac.read_namespaced_role("ops-detection-operator", watched[1]).rules
    discovery = f"{namespace}-ops-detection-operator-discovery"
    assert rbac.read_cluster_role(discovery).rules
    uninstall(cluster.kubeconfig, "ops", namespace)
    # Nothing cluster-scoped is left behind (namespace deletion would not take it along).
    with pytest.raises(ApiException) as gone:
        rbac.read_cluster_role(discovery)
    assert gone.value.status == 404


def test_pod_is_locked_down_highly_available_and_probed(namespace: str) -> None:
    manifests = render(CHART, "ops", namespace)
    deployment = one(manifests, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["args"] == ["run", "--log-format=json"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    env = env_of(deployment)
    assert env["DETECTION_OPERATOR_LEADER_ELECTION"] == "true"
    assert env["DETECTION_OPERATOR_LEASE_NAMESPACE"] == namespace
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["DETECTION_OPERATOR_HTTP_PORT"] == "8080"
    # Soft spreading only: a small cluster must still schedule both replicas.
    anti = pod["affinity"]["podAntiAffinity"]
    assert set(anti) == {"preferredDuringSchedulingIgnoredDuringExecution"}
    assert all(c["whenUnsatisfiable"] == "ScheduleAnyway" for c in pod["topologySpreadConstraints"])
    assert one(manifests, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert one(manifests, "Service")["spec"]["ports"][0]["name"] == "http"
    # A single replica needs no disruption budget (minAvailable 1 would block every drain).
    single = render(CHART, "ops", namespace, {"replicas": 1})
    assert not by_kind(single, "PodDisruptionBudget")


def test_monitoring_extras(namespace: str) -> None:
    manifests = render(CHART, "ops", namespace, EVERYTHING)
    monitor = one(manifests, "ServiceMonitor")
    service = one(manifests, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    dashboard = one(manifests, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "detection-operator.json").read_text())
    assert json.loads(dashboard["data"]["detection-operator.json"]) == shipped
    env = env_of(one(manifests, "Deployment"))
    assert env["DETECTION_OPERATOR_PROMETHEUS_HEADERS"] == '{"X-Scope-OrgID":"team-a"}'
    assert env["DETECTION_OPERATOR_PROMETHEUS_USERNAME"] == "op"
    assert env["DETECTION_OPERATOR_PROMETHEUS_PASSWORD_FILE"] == "/var/run/prometheus-auth/password"
    assert env["DETECTION_OPERATOR_RECEIVERS_FILE"] == "/var/run/receivers/receivers.yaml"
    # Credentials reach the pod as mounted files, never as environment values.
    assert not any("secretKeyRef" in json.dumps(v) for v in env.values())


def test_history_store_settings_and_its_password_as_a_mounted_file(namespace: str) -> None:
    manifests = render(CHART, "ops", namespace, EVERYTHING)
    deployment = one(manifests, "Deployment")
    env = env_of(deployment)
    assert env["DETECTION_OPERATOR_HISTORY_POSTGRES_HOST"] == "pg.db.svc"
    assert env["DETECTION_OPERATOR_HISTORY_POSTGRES_PORT"] == "5432"
    assert env["DETECTION_OPERATOR_HISTORY_POSTGRES_USER"] == "detection_operator"
    assert env["DETECTION_OPERATOR_HISTORY_RETENTION"] == "90d"
    assert env["DETECTION_OPERATOR_HISTORY_SNAPSHOT_INTERVAL"] == "1m"
    assert env["DETECTION_OPERATOR_HISTORY_POSTGRES_PASSWORD_FILE"] == "/var/run/history-postgres/password"
    pod = deployment["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "history-postgres")
    assert volume["secret"] == {"secretName": "pg-auth", "items": [{"key": "pw", "path": "password"}]}
    egress = one(manifests, "NetworkPolicy")["spec"]["egress"]
    assert any(rule["ports"] == [{"port": 5432, "protocol": "TCP"}] for rule in egress)
    off = render(CHART, "ops", namespace, {"networkPolicy": {"enabled": True}})
    assert not any("HISTORY" in name for name in env_of(one(off, "Deployment")))
    assert all(
        rule["ports"] != [{"port": 5432, "protocol": "TCP"}]
        for rule in one(off, "NetworkPolicy")["spec"]["egress"]
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": "two"}, "at '/replicas': got string, want integer"),
        ({"replicas": 2, "leaderElection": {"enabled": False}}, "replicas: 2 needs leaderElection.enabled"),
        ({"watchNamespaces": "prod"}, "at '/watchNamespaces': got string, want array"),
        ({"watchNamespaces": ["Prod"]}, "/watchNamespaces/0"),
        ({"prometheus": {"url": "prometheus:9090"}}, "/prometheus/url"),
        ({"logFormat": "yaml"}, "/logFormat"),
        ({"history": {"postgres": {"retention": "90 days"}}}, "/history/postgres/retention"),
        ({"leaderElection": {"renewDeadlineSeconds": 20}}, "renewDeadlineSeconds must be less than"),
        ({"replicas": 3, "leaderElection": {"memberSlots": 2}}, "memberSlots (2) must be at least replicas"),
        ({"leaderElection": {"buckets": 0}}, "/leaderElection/buckets"),
    ],
)
def test_bad_values_are_refused_naming_the_field(values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError) as refused:
        render(CHART, "ops", "default", values)
    assert message in str(refused.value)


def _forbidden(call: Callable[[], object]) -> bool:
    try:
        call()
    except ApiException as exc:
        return exc.status == 403
    return False


@pytest.mark.parametrize("mode", ["namespaced", "cluster"])
def test_operator_works_as_its_service_account_and_nothing_more(
    mode: str,
    cluster: Cluster,
    kube: client.ApiClient,
    crds: list[str],
    namespace: str,
    new_namespace: Callable[[], str],
    exporter: MetricExporter,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    watched, other_watched, unwatched = new_namespace(), new_namespace(), new_namespace()
    watch = (watched, other_watched) if mode == "namespaced" else ()
    # Namespaced mode also narrows Secrets to a name; cluster mode keeps the default (get any, by name).
    secret_names = ["prom-conn"] if watch else []
    values = {"watchNamespaces": list(watch), "rbac": {"secretNames": secret_names}}
    manifests = render(CHART, "ops", namespace, values)
    # Everything but the workload: the operator runs here, as the chart's ServiceAccount.
    rbac = [m for m in manifests if m["kind"] not in ("Deployment", "Service", "PodDisruptionBudget")]
    apply(cluster.kubeconfig, rbac)
    rbac_api = client.RbacAuthorizationV1Api(kube)
    try:
        _run_as_service_account(kube, namespace, watch, watched, unwatched, prometheus, exporter, tmp_path)
    finally:
        # Namespace deletion does not take cluster-scoped objects along.
        for binding in by_kind(manifests, "ClusterRoleBinding"):
            rbac_api.delete_cluster_role_binding(binding["metadata"]["name"])
        for role in by_kind(manifests, "ClusterRole"):
            rbac_api.delete_cluster_role(role["metadata"]["name"])


def _run_as_service_account(
    kube: client.ApiClient,
    release_namespace: str,
    watch: tuple[str, ...],
    watched: str,
    unwatched: str,
    prometheus: PrometheusServer,
    exporter: MetricExporter,
    tmp_path: Path,
) -> None:
    """Evaluate a policy in ``watched`` as the ServiceAccount; ``watch`` empty is cluster mode."""
    core, apps, objects = client.CoreV1Api(kube), client.AppsV1Api(kube), client.CustomObjectsApi(kube)
    for ns in (watched, unwatched):
        apps.create_namespaced_deployment(ns, _deployment("detector"))
        for name in ("prom-conn", "other"):
            secret = client.V1Secret(
                metadata=client.V1ObjectMeta(name=name), string_data={"url": prometheus.url}
            )
            core.create_namespaced_secret(ns, secret)
    exporter.set("chart_rbac_latency", 350, {"namespace": watched})
    objects.create_namespaced_custom_object(GROUP, VERSION, watched, "detectionpolicies", _policy())

    sa_config = service_account_kubeconfig(
        kube, release_namespace, "ops-detection-operator", tmp_path / "sa-kubeconfig"
    )
    env = {
        # The default Prometheus points nowhere: only reading the referenced Secret reaches the real one.
        "DETECTION_OPERATOR_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "DETECTION_OPERATOR_LEADER_ELECTION": "true",
        "DETECTION_OPERATOR_LEASE_NAME": "detection-operator",
        "DETECTION_OPERATOR_LEASE_NAMESPACE": release_namespace,
        "POD_NAMESPACE": release_namespace,
    }
    log = tmp_path / "operator.log"
    with OperatorProcess(sa_config, log, namespaces=watch, env=env) as operator:

        def status() -> dict[str, Any]:
            obj = objects.get_namespaced_custom_object(GROUP, VERSION, watched, "detectionpolicies", "p")
            return dict(obj.get("status") or {})

        wait_for(lambda: status().get("profile") == "lean", timeout=90, what="policy evaluated as the SA")
        ready = next(c for c in status()["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", ready
        assert core.read_namespaced_config_map("p-detection-profile", watched).data["profile.json"]
        annotations = wait_for(
            lambda: apps.read_namespaced_deployment("detector", watched).spec.template.metadata.annotations,
            timeout=60,
            what="config checksum on the detector Deployment",
        )
        assert f"{GROUP}/config-checksum" in annotations
        # The policy's Events are delivered from the outbox after the status write: wait for one.
        wait_for(
            lambda: any(e.involved_object.name == "p" for e in core.list_namespaced_event(watched).items),
            timeout=30,
            what="an Event about the policy",
        )
        assert operator.alive()
        # Nothing the operator (or kopf) tried was refused.
        text = log.read_text()
        assert "Forbidden" not in text and "Not enough permissions" not in text, operator.log_tail()

    with api_client(sa_config) as sa:
        _assert_least_privilege(sa, release_namespace, watched, unwatched if watch else None)


def _assert_least_privilege(
    sa: client.ApiClient, release_ns: str, watched: str, unwatched: str | None
) -> None:
    """Real calls with the ServiceAccount's token; ``unwatched`` is None in cluster mode (none is)."""
    core, apps = client.CoreV1Api(sa), client.AppsV1Api(sa)
    objects, leases = client.CustomObjectsApi(sa), client.CoordinationV1Api(sa)
    # What it needs works, with the token, in a watched namespace.
    apps.patch_namespaced_deployment_scale("detector", watched, {"spec": {"replicas": 2}})
    core.read_namespaced_secret("prom-conn", watched)

    refused: dict[str, Callable[[], object]] = {
        "list Secrets": lambda: core.list_namespaced_secret(watched),
        "list Secrets cluster-wide": lambda: core.list_secret_for_all_namespaces(),
        "delete a ConfigMap": lambda: core.delete_namespaced_config_map("p-detection-profile", watched),
        "delete a Deployment": lambda: apps.delete_namespaced_deployment("detector", watched),
        "create a Deployment": lambda: apps.create_namespaced_deployment(watched, _deployment("evil")),
        "create a Pod": lambda: core.create_namespaced_pod(
            watched, {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "x", "image": "x"}]}}
        ),
        "patch a policy's spec": lambda: objects.patch_namespaced_custom_object(
            GROUP, VERSION, watched, "detectionpolicies", "p", {"spec": {"interval": "5s"}}
        ),
        "delete a policy": lambda: objects.delete_namespaced_custom_object(
            GROUP, VERSION, watched, "detectionpolicies", "p"
        ),
        "create a Lease outside the release namespace": lambda: leases.create_namespaced_lease(
            watched, {"metadata": {"name": "detection-operator"}, "spec": {}}
        ),
        "update another Lease in the release namespace": lambda: leases.replace_namespaced_lease(
            "kube-scheduler", release_ns, {"metadata": {"name": "kube-scheduler"}, "spec": {}}
        ),
        "read a Namespace": lambda: core.read_namespace(watched),
        "create a ClusterRoleBinding": lambda: client.RbacAuthorizationV1Api(sa).create_cluster_role_binding(
            {
                "metadata": {"name": "x"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [],
            }
        ),
    }
    if unwatched is not None:
        refused |= _namespaced_mode_calls(core, apps, objects, watched, unwatched)
    allowed = [what for what, call in refused.items() if not _forbidden(call)]
    assert not allowed, f"the chart's ServiceAccount may {allowed}"


def _namespaced_mode_calls(
    core: client.CoreV1Api,
    apps: client.AppsV1Api,
    objects: client.CustomObjectsApi,
    watched: str,
    unwatched: str,
) -> dict[str, Callable[[], object]]:
    """What only namespaced mode (with rbac.secretNames: [prom-conn]) refuses."""
    scale = {"spec": {"replicas": 2}}
    config_map = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x"), data={"a": "b"})
    return {
        "patch a Deployment in an unwatched namespace": lambda: apps.patch_namespaced_deployment(
            "detector", unwatched, {"metadata": {"annotations": {"x": "y"}}}
        ),
        "scale a Deployment in an unwatched namespace": lambda: apps.patch_namespaced_deployment_scale(
            "detector", unwatched, scale
        ),
        "create a ConfigMap in an unwatched namespace": lambda: core.create_namespaced_config_map(
            unwatched, config_map
        ),
        "read a Secret in an unwatched namespace": lambda: core.read_namespaced_secret(
            "prom-conn", unwatched
        ),
        "read a Secret not in rbac.secretNames": lambda: core.read_namespaced_secret("other", watched),
        "list policies in an unwatched namespace": lambda: objects.list_namespaced_custom_object(
            GROUP, VERSION, unwatched, "detectionpolicies"
        ),
    }


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }


def _policy() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DetectionPolicy",
        "metadata": {"name": "p"},
        "spec": {
            "interval": "1s",
            "minDwell": "0s",  # the first decision may come before Prometheus has the value
            "defaultProfile": "balanced",
            "profiles": [{"name": "lean"}, {"name": "balanced"}],
            "rules": [
                {
                    "name": "latency",
                    "query": 'max(chart_rbac_latency{namespace="$namespace"})',
                    "op": ">",
                    "threshold": 200,
                    "profile": "lean",
                    "reason": "high latency",
                }
            ],
            "prometheus": {"secretRef": {"name": "prom-conn"}, "timeout": "2s"},
            "output": {"deployment": "detector"},
        },
    }
