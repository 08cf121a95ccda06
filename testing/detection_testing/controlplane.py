"""A real local Kubernetes control plane for integration tests and the demo (the envtest approach).

``LocalControlPlane`` runs etcd, kube-apiserver and optionally kube-controller-manager as child
processes bound to 127.0.0.1 on free ports, with a throw-away PKI, and writes an admin kubeconfig.
By itself it has no nodes: objects are stored and controllers reconcile them, but no Pod ever runs.
Given a ``node_address`` it serves on that address too and gains what a kubelet needs (Node
authorization, kubelet client credentials, ServiceAccount admission, EndpointSlices):
:class:`~detection_testing.node.LocalNode` then runs Pods against it. The binaries come from
``make controlplane`` (``hack/build-controlplane.sh``).

Command line, used by the demo::

    python -m detection_testing.controlplane up WORKDIR
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import functools
import ipaddress
import os
import shutil
import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Final

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .lifecycle import Started
from .ports import free_port
from .processes import ManagedProcess

__all__ = [
    "DEFAULT_CONTROLLERS",
    "ControlPlaneError",
    "LocalControlPlane",
    "default_bin_dir",
    "main",
    "missing_binaries",
]

ETCD: Final = "etcd"
APISERVER: Final = "kube-apiserver"
CONTROLLER_MANAGER: Final = "kube-controller-manager"

#: Controllers that are useful without nodes or a cloud: enough for Deployments to get ReplicaSets,
#: for owner-reference garbage collection, namespace deletion and default ServiceAccounts.
DEFAULT_CONTROLLERS: Final[tuple[str, ...]] = (
    "deployment-controller",
    "replicaset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)

SERVICE_CLUSTER_IP_RANGE: Final = "10.0.0.0/24"
# The first address of the service range is what in-cluster clients dial as "kubernetes.default".
_KUBERNETES_SERVICE_IP: Final = "10.0.0.1"
#: What a node adds to the controllers: EndpointSlices for kube-proxy's Services, Pod garbage collection, and
#: the node lifecycle (it lifts the not-ready taint a kubelet registers with, and evicts from a lost node).
NODE_CONTROLLERS: Final[tuple[str, ...]] = (
    "endpointslice-controller",
    "pod-garbage-collector-controller",
    "node-lifecycle-controller",
)
_POLL_INTERVAL: Final = 0.1
_PORT_ATTEMPTS: Final = 3


class ControlPlaneError(RuntimeError):
    """The control plane could not be started, or a binary is missing."""


# --------------------------------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------------------------------


def _repo_root() -> Path | None:
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return None


def default_bin_dir() -> Path:
    """Where the control-plane binaries are looked up when no ``bin_dir`` is given.

    ``$CONTROLPLANE_BIN`` if set, else ``<repo>/.cache/controlplane/bin`` (what ``make controlplane``
    fills).
    """
    env = os.environ.get("CONTROLPLANE_BIN")
    if env:
        return Path(env)
    root = _repo_root()
    if root is None:
        raise ControlPlaneError(
            "cannot find the repository root (no pyproject.toml above "
            f"{Path(__file__).resolve()}); set CONTROLPLANE_BIN to the directory with etcd and kube-apiserver"
        )
    return root / ".cache" / "controlplane" / "bin"


def missing_binaries(bin_dir: Path | None = None, controller_manager: bool = False) -> list[str]:
    """Names of the binaries a control plane would need that are not executable in ``bin_dir``."""
    directory = bin_dir if bin_dir is not None else default_bin_dir()
    names = [ETCD, APISERVER] + ([CONTROLLER_MANAGER] if controller_manager else [])
    return [n for n in names if not os.access(directory / n, os.X_OK)]


# --------------------------------------------------------------------------------------------------
# PKI
# --------------------------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class _Pki:
    """A throw-away CA, apiserver serving cert, admin client cert and service-account key."""

    def __init__(self, directory: Path, node_address: str | None = None) -> None:
        self.dir = directory
        self.node_address = node_address
        self.ca_cert = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        self.serving_cert = directory / "apiserver.crt"
        self.serving_key = directory / "apiserver.key"
        self.admin_cert = directory / "admin.crt"
        self.admin_key = directory / "admin.key"
        self.sa_key = directory / "sa.key"
        self.sa_pub = directory / "sa.pub"
        self.kubelet_client_cert = directory / "apiserver-kubelet-client.crt"
        self.kubelet_client_key = directory / "apiserver-kubelet-client.key"
        # Signs further client certificates with the CA of the last generate().
        self._leaf: Callable[[x509.Name, x509.ObjectIdentifier], tuple[bytes, bytes]] | None = None

    def generate(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # Backdated: the apiserver and clients reject certs that are "not yet valid" on a skewed clock.
        now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
        until = now + datetime.timedelta(days=365)

        # ECDSA P-256 keeps generation fast; every TLS stack involved (Go, OpenSSL) accepts it.
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "detection-operator-test-ca")])

        def builder(
            subject: x509.Name, public_key: ec.EllipticCurvePublicKey, ca: bool
        ) -> x509.CertificateBuilder:
            """What the CA and the leaf certificates share; only the CA may sign certificates."""
            return (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(ca_name)
                .public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now)
                .not_valid_after(until)
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .add_extension(
                    x509.KeyUsage(
                        digital_signature=True,
                        content_commitment=False,
                        key_encipherment=False,
                        data_encipherment=False,
                        key_agreement=False,
                        key_cert_sign=ca,
                        crl_sign=ca,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    critical=True,
                )
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            )

        ca_cert = builder(ca_name, ca_key.public_key(), ca=True).sign(ca_key, hashes.SHA256())
        # Python 3.13's default SSL context sets VERIFY_X509_STRICT, which requires the AKI.
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

        def leaf(
            subject: x509.Name, usage: x509.ObjectIdentifier, sans: Sequence[x509.GeneralName] = ()
        ) -> tuple[bytes, bytes]:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (
                builder(subject, key.public_key(), ca=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(aki, critical=False)
            )
            if sans:
                cert = cert.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
            return _cert_pem(cert.sign(ca_key, hashes.SHA256())), _key_pem(key)

        addresses = ["127.0.0.1", "::1", _KUBERNETES_SERVICE_IP] + (
            [self.node_address] if self.node_address else []
        )
        serving_sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in addresses]
        serving_sans += [
            x509.DNSName(n)
            for n in (
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            )
        ]
        serving = leaf(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
            ExtendedKeyUsageOID.SERVER_AUTH,
            serving_sans,
        )
        # O=system:masters is the group the apiserver authorizes for everything, even under RBAC.
        admin = leaf(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
                ]
            ),
            ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        # Service-account tokens are RS256 by convention; JWKS consumers expect an RSA key.
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

        # The apiserver's own identity towards kubelets (logs, exec, port-forward).
        kubelet_client = leaf(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver-kubelet-client"),
                ]
            ),
            ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        self._leaf = leaf

        self.ca_cert.write_bytes(_cert_pem(ca_cert))
        self.kubelet_client_cert.write_bytes(kubelet_client[0])
        _write_private(self.kubelet_client_key, kubelet_client[1])
        _write_private(self.ca_key, _key_pem(ca_key))
        self.serving_cert.write_bytes(serving[0])
        _write_private(self.serving_key, serving[1])
        self.admin_cert.write_bytes(admin[0])
        _write_private(self.admin_key, admin[1])
        _write_private(self.sa_key, _key_pem(sa_key))
        self.sa_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def client(self, name: str, common_name: str, organizations: Sequence[str]) -> tuple[Path, Path]:
        """Issue a client certificate ``<name>.crt`` / ``<name>.key`` with this CN and O (after generate)."""
        subject = x509.Name(
            [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
            + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        )
        if self._leaf is None:
            raise ControlPlaneError("the PKI has not been generated (start the control plane first)")
        cert, key = self._leaf(subject, ExtendedKeyUsageOID.CLIENT_AUTH)
        cert_path, key_path = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        cert_path.write_bytes(cert)
        _write_private(key_path, key)
        return cert_path, key_path


def serving_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a serving certificate it signed for 127.0.0.1 and localhost, for a server other
    than the apiserver (a secured Prometheus): the CA certificate, certificate and key files."""
    pki = _Pki(directory)
    pki.generate()
    return pki.ca_cert, pki.serving_cert, pki.serving_key


# --------------------------------------------------------------------------------------------------
# The control plane
# --------------------------------------------------------------------------------------------------


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _etcd_health(http: httpx.Client, client_url: str) -> str | None:
    resp = http.get(f"{client_url}/health")
    if resp.status_code == 200 and resp.json().get("health") == "true":
        return None
    return f"/health -> {resp.status_code} {resp.text.strip()[:200]}"


class LocalControlPlane(Started):
    """etcd + kube-apiserver (+ kube-controller-manager) on 127.0.0.1, for tests and the demo.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Everything lives under
    ``workdir``: ``pki/``, ``etcd-data/``, ``kubeconfig`` and one ``<binary>.log`` per child.
    Each :meth:`start` begins with an empty etcd and a fresh PKI.
    """

    def __init__(
        self,
        workdir: Path,
        bin_dir: Path | None = None,
        controller_manager: bool = False,
        *,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        node_address: str | None = None,
    ) -> None:
        """Prepare (but do not start) a control plane.

        ``bin_dir`` defaults to :func:`default_bin_dir`. ``controllers`` is passed to
        kube-controller-manager's ``--controllers`` when ``controller_manager`` is true (with
        :data:`NODE_CONTROLLERS` added when there is a ``node_address``). ``node_address`` (this
        machine's non-loopback address) makes the apiserver listen on all addresses and advertise that
        one, so that Pods on a local node reach it through the ``kubernetes`` Service.
        """
        self.workdir = Path(workdir).resolve()
        self.bin_dir = Path(bin_dir) if bin_dir is not None else default_bin_dir()
        self.controller_manager = controller_manager
        self.node_address = node_address
        extra = [c for c in NODE_CONTROLLERS if c not in controllers] if node_address else []
        self.controllers = (*controllers, *extra)
        self._pki = _Pki(self.workdir / "pki", node_address)
        self._etcd: ManagedProcess | None = None
        self._apiserver: ManagedProcess | None = None
        self._kcm: ManagedProcess | None = None
        self._etcd_url: str | None = None
        self._apiserver_port: int | None = None
        #: Seconds each phase of the last start() took (``pki``, ``etcd``, ``kube-apiserver``, ...).
        self.timings: dict[str, float] = {}

    # ---- public properties -----------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (context ``local``), written by :meth:`start`."""
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        """The apiserver URL, ``https://127.0.0.1:<port>``; only known once :meth:`start` ran."""
        if self._apiserver_port is None:
            raise ControlPlaneError("the control plane has not been started")
        return f"https://127.0.0.1:{self._apiserver_port}"

    @property
    def ca_file(self) -> Path:
        """PEM of the CA that signed the apiserver serving cert and the admin client cert."""
        return self._pki.ca_cert

    @property
    def client_cert_file(self) -> Path:
        """PEM of the admin client certificate (CN=admin, O=system:masters)."""
        return self._pki.admin_cert

    @property
    def client_key_file(self) -> Path:
        """PEM of the admin client private key."""
        return self._pki.admin_key

    @property
    def service_account_key_file(self) -> Path:
        """PEM of the key that signs ServiceAccount tokens (kube-controller-manager's token controller)."""
        return self._pki.sa_key

    def client_kubeconfig(self, name: str, common_name: str, organizations: Sequence[str] = ()) -> Path:
        """A kubeconfig ``<name>.kubeconfig`` for a new client certificate (e.g. a kubelet's Node identity).

        Only after :meth:`start`; the server is the loopback URL, as for the admin kubeconfig.
        """
        cert, key = self._pki.client(name, common_name, organizations)
        path = self.workdir / f"{name}.kubeconfig"
        self._write_kubeconfig(path, name, cert, key)
        return path

    @property
    def etcd_url(self) -> str:
        """The etcd client URL (plain http on loopback)."""
        if self._etcd_url is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._etcd_url

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the running children by binary name (for tests that check for leaks)."""
        children = (self._etcd, self._apiserver, self._kcm)
        return {c.name: c.pid for c in children if c is not None and c.pid is not None and c.running()}

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 90) -> None:
        """Start etcd, kube-apiserver and (if asked) kube-controller-manager; return once usable.

        "Usable" means: ``/readyz`` is 200, the ``default`` namespace exists and
        ``apiextensions.k8s.io/v1`` is served; with the controller manager also that its ``/healthz``
        is 200 and it has created the ``default`` ServiceAccount (its informers run). On failure all
        started children are stopped and :class:`ControlPlaneError` carries the tail of the failing
        child's log.
        """
        if any(c is not None and c.running() for c in (self._etcd, self._apiserver, self._kcm)):
            raise ControlPlaneError("the control plane is already running")
        missing = missing_binaries(self.bin_dir, self.controller_manager)
        if missing:
            raise ControlPlaneError(
                f"missing control-plane binaries in {self.bin_dir}: {', '.join(missing)}; "
                "run `make controlplane` (hack/build-controlplane.sh) or set CONTROLPLANE_BIN"
            )
        deadline = time.monotonic() + timeout
        self.timings = {}
        self._apiserver_port = None
        self._etcd_url = None
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            with self._timed("pki"):
                self._pki.generate()
            with self._timed(ETCD):
                self._start_etcd(deadline)
            with self._timed(APISERVER):
                self._start_apiserver(deadline, self._apiserver_port)
            self._write_kubeconfig(self.kubeconfig, "admin", self.client_cert_file, self.client_key_file)
            if self.controller_manager:
                with self._timed(CONTROLLER_MANAGER):
                    self._start_controller_manager(deadline)
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = sum(self.timings.values())

    def stop(self) -> None:
        """Stop the children in dependency order: controller manager, apiserver, etcd.

        Each gets SIGTERM and a grace period, then SIGKILL. Safe to call more than once.
        """
        for child in (self._kcm, self._apiserver, self._etcd):
            if child is not None:
                child.stop()

    def restart_apiserver(self, timeout: float = 60) -> None:
        """Stop kube-apiserver and start it again on the same port with the same certificates.

        etcd (and so all objects) and the controller manager keep running; returns once the apiserver
        is ready again.
        """
        if self._apiserver is None or self._apiserver_port is None:
            raise ControlPlaneError("the control plane has not been started")
        self._apiserver.stop()
        self._start_apiserver(time.monotonic() + timeout, self._apiserver_port)

    def check_running(self) -> None:
        """Raise :class:`ControlPlaneError` if a child that should be running has exited."""
        for child in (self._etcd, self._apiserver, self._kcm):
            if child is not None and child.exit_code is not None:
                raise ControlPlaneError(child.describe("exited unexpectedly"))

    # ---- internals -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.timings[phase] = round(time.monotonic() - t0, 3)

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _child(self, name: str, argv: list[str]) -> ManagedProcess:
        # cwd: anything a binary writes relative to its working directory stays in the workdir too.
        return ManagedProcess(name, argv, self.workdir / f"{name}.log", cwd=self.workdir)

    def _tls_client(self) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.client_cert_file), str(self.client_key_file))
        # trust_env=False: an HTTPS_PROXY in the environment must not capture loopback traffic.
        return httpx.Client(verify=ctx, timeout=5.0, trust_env=False)

    def _wait(
        self,
        child: ManagedProcess,
        deadline: float,
        what: str,
        probe: Callable[[], str | None],
    ) -> None:
        """Poll ``probe`` (None = ready, else a reason) until ready, the child dies or time runs out."""
        reason = "not probed yet"
        while True:
            if not child.running():
                raise ControlPlaneError(child.describe(f"exited while waiting for {what}"))
            try:
                result = probe()
            except (httpx.HTTPError, OSError, ValueError) as exc:
                result = f"{type(exc).__name__}: {exc}"
            if result is None:
                return
            reason = result
            if time.monotonic() >= deadline:
                raise ControlPlaneError(child.describe(f"not ready in time ({what}: {reason})"))
            time.sleep(_POLL_INTERVAL)

    def _start_etcd(self, deadline: float) -> None:
        data_dir = self.workdir / "etcd-data"
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            # A fresh cluster each start: stale membership or SA-signed data would not match the new PKI.
            shutil.rmtree(data_dir, ignore_errors=True)
            client_port, peer_port = _distinct_free_ports(2)
            client_url = f"http://127.0.0.1:{client_port}"
            peer_url = f"http://127.0.0.1:{peer_port}"
            child = self._child(
                ETCD,
                [
                    self._bin(ETCD),
                    "--name=default",
                    f"--data-dir={data_dir}",
                    f"--listen-client-urls={client_url}",
                    f"--advertise-client-urls={client_url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=default={peer_url}",
                    "--initial-cluster-state=new",
                    # Test data is disposable; fsync dominates etcd latency on CI disks.
                    "--unsafe-no-fsync=true",
                ],
            )
            self._etcd = child
            child.start()
            try:
                with httpx.Client(timeout=2.0, trust_env=False) as http:
                    self._wait(child, deadline, "/health", functools.partial(_etcd_health, http, client_url))
            except ControlPlaneError:
                # free_port() hands out a port that anyone may grab before etcd binds it.
                if attempt < _PORT_ATTEMPTS and child.lost_port_race():
                    child.stop()
                    continue
                raise
            self._etcd_url = client_url
            return

    def _apiserver_argv(self, port: int) -> list[str]:
        pki = self._pki
        if self.node_address:
            # Pods dial the "kubernetes" Service (10.0.0.1), which kube-proxy sends to the advertised
            # address; the kubelet's serving cert is self-signed, so no --kubelet-certificate-authority.
            node = [
                "--bind-address=0.0.0.0",
                f"--advertise-address={self.node_address}",
                "--authorization-mode=Node,RBAC",
                f"--kubelet-client-certificate={pki.kubelet_client_cert}",
                f"--kubelet-client-key={pki.kubelet_client_key}",
                "--kubelet-preferred-address-types=InternalIP",
            ]
        else:
            node = [
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # Since 1.3x the apiserver refuses to start when the endpoint reconciler would publish a
                # loopback address for the "kubernetes" Service; there are no Pods here to dial it anyway.
                "--endpoint-reconciler-type=none",
                "--authorization-mode=RBAC",
                # As envtest: without the controller manager nothing creates the "default"
                # ServiceAccount, and the admission plugin would then reject every Pod.
                "--disable-admission-plugins=ServiceAccount",
            ]
        return [
            self._bin(APISERVER),
            f"--etcd-servers={self.etcd_url}",
            f"--secure-port={port}",
            *node,
            f"--cert-dir={pki.dir}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allow-privileged=true",
            f"--service-account-issuer=https://127.0.0.1:{port}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            # Otherwise SIGTERM waits out the 60s --request-timeout on the controller manager's open
            # watches (HTTP/2 graceful shutdown); with it the watches are closed and exit takes ~1s.
            "--shutdown-watch-termination-grace-period=5s",
        ]

    def _start_apiserver(self, deadline: float, port: int | None) -> None:
        fixed_port = port is not None
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            use_port = port if port is not None else _distinct_free_ports(1)[0]
            child = self._child(APISERVER, self._apiserver_argv(use_port))
            self._apiserver = child
            self._apiserver_port = use_port
            child.start()
            try:
                self._wait_apiserver(child, deadline, use_port)
            except ControlPlaneError:
                if not fixed_port and attempt < _PORT_ATTEMPTS and child.lost_port_race():
                    child.stop()
                    continue
                raise
            return

    def _wait_apiserver(self, child: ManagedProcess, deadline: float, port: int) -> None:
        base = f"https://127.0.0.1:{port}"
        with self._tls_client() as http:

            def probe() -> str | None:
                resp = http.get(f"{base}/readyz")
                if resp.status_code != 200:
                    failing = [ln for ln in resp.text.splitlines() if ln.startswith("[-]")]
                    return f"/readyz -> {resp.status_code} {' '.join(failing)[:300]}"
                # /readyz does not cover the bootstrap controller that creates "default".
                resp = http.get(f"{base}/api/v1/namespaces/default")
                if resp.status_code != 200:
                    return f"namespace default -> {resp.status_code}"
                groups: list[dict[str, Any]] = http.get(f"{base}/apis").json().get("groups", [])
                ext = next((g for g in groups if g.get("name") == "apiextensions.k8s.io"), None)
                if ext is None or not any(v.get("version") == "v1" for v in ext.get("versions", [])):
                    return "apiextensions.k8s.io/v1 not in discovery"
                resp = http.get(f"{base}/apis/apiextensions.k8s.io/v1")
                names = {r.get("name") for r in resp.json().get("resources", [])}
                if "customresourcedefinitions" not in names:
                    return "customresourcedefinitions not served"
                return None

            self._wait(child, deadline, "readiness", probe)

    def _write_kubeconfig(self, path: Path, user: str, cert: Path, key: Path) -> None:
        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": self.server, "certificate-authority-data": b64(self.ca_file)},
                }
            ],
            "users": [
                {"name": user, "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)}}
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
            "current-context": "local",
            "preferences": {},
        }
        _write_private(path, yaml.safe_dump(config, sort_keys=False).encode())

    def _controller_manager_argv(self, port: int) -> list[str]:
        pki = self._pki
        kubeconfig = str(self.kubeconfig)
        return [
            self._bin(CONTROLLER_MANAGER),
            f"--kubeconfig={kubeconfig}",
            # Its own /healthz authenticates our admin cert with the CA given here and delegates authz to
            # the apiserver. Skipping the lookup of kube-system/extension-apiserver-authentication avoids
            # a burst of "missing requestheader-client-ca-file" errors: we run no front proxy.
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--client-ca-file={pki.ca_cert}",
            "--authentication-skip-lookup=true",
            f"--controllers={','.join(self.controllers)}",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}",
            "--use-service-account-credentials=false",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            # The apiserver serving cert has the 127.0.0.1 SAN and our CA, so our client can verify it;
            # cert-dir keeps it from ever writing a self-signed pair to /var/run/kubernetes.
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--cert-dir={pki.dir}",
            # Where it would otherwise create /usr/libexec/kubernetes/kubelet-plugins on the host.
            f"--flex-volume-plugin-dir={self.workdir / 'flexvolume'}",
        ]

    def _start_controller_manager(self, deadline: float) -> None:
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = _distinct_free_ports(1)[0]
            child = self._child(CONTROLLER_MANAGER, self._controller_manager_argv(port))
            self._kcm = child
            child.start()
            try:
                self._wait_controller_manager(child, deadline, port)
            except ControlPlaneError:
                if attempt < _PORT_ATTEMPTS and child.lost_port_race():
                    child.stop()
                    continue
                raise
            return

    def _wait_controller_manager(self, child: ManagedProcess, deadline: float, port: int) -> None:
        wants_sa = any(c in ("serviceaccount-controller", "serviceaccount", "*") for c in self.controllers)
        with self._tls_client() as http:

            def probe() -> str | None:
                resp = http.get(f"https://127.0.0.1:{port}/healthz")
                if resp.status_code != 200:
                    return f"/healthz -> {resp.status_code} {resp.text.strip()[:300]}"
                # /healthz is up before the controllers are. The ServiceAccount controller creating
                # "default" proves the shared informers were started, which happens only after every
                # controller has been constructed; the rest then catch up by level-triggering.
                if wants_sa:
                    resp = http.get(f"{self.server}/api/v1/namespaces/default/serviceaccounts/default")
                    if resp.status_code != 200:
                        return f"default ServiceAccount -> {resp.status_code}"
                return None

            self._wait(child, deadline, "healthz and controllers", probe)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``up WORKDIR``: run a control plane until SIGINT/SIGTERM; prints ``export KUBECONFIG=...``."""
    parser = argparse.ArgumentParser(
        prog="python -m detection_testing.controlplane",
        description="Run a local etcd + kube-apiserver (+ kube-controller-manager) for tests and demos.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start and stay up until interrupted")
    up.add_argument("workdir", type=Path)
    up.add_argument(
        "--bin-dir", type=Path, default=None, help="default: $CONTROLPLANE_BIN or .cache/controlplane/bin"
    )
    up.add_argument(
        "--controller-manager",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run kube-controller-manager (default: yes)",
    )
    up.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for readiness")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    plane = LocalControlPlane(args.workdir, args.bin_dir, args.controller_manager)
    try:
        try:
            plane.start(timeout=args.timeout)
        except ControlPlaneError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(
            f"control plane up at {plane.server} in {plane.timings['total']:.1f}s; logs in {plane.workdir}",
            file=sys.stderr,
        )
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        while not stop.wait(1.0):
            try:
                plane.check_running()
            except ControlPlaneError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
        return 0
    finally:
        plane.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    raise SystemExit(main())
