"""Run a real PostgreSQL server (Debian's) as a child process for tests, benchmarks and the demo.

Each :class:`PostgresServer` has a cluster of its own: ``initdb`` into a private data directory, the
postmaster on 127.0.0.1 at a free port (no Unix socket), a database and a login role with a password (not
a superuser: what the operator gets in production), all removed by :meth:`PostgresServer.close`.
:meth:`~PostgresServer.stop` and :meth:`~PostgresServer.start` in between keep the data and the port, so an
outage test takes the database away and gives the same one back.

The server refuses to run as root; as root the binaries run as the ``postgres`` user (the Debian package
creates it) through ``setpriv``, and the data directory lives in a directory of its own under the system
temp dir, because pytest's temp dirs are private to root.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from .lifecycle import Started
from .ports import LOOPBACK, LoopbackServer, free_port
from .processes import ManagedProcess

__all__ = ["PostgresNotFoundError", "PostgresServer", "find_postgres_bin"]

_POLL_INTERVAL = 0.1
_PORT_ATTEMPTS = 3
_SERVICE_USER = "postgres"


class PostgresNotFoundError(FileNotFoundError):
    """No PostgreSQL server binaries were found."""


def find_postgres_bin(bindir: str | None = None) -> Path:
    """The directory with ``initdb`` and ``postgres``: ``bindir`` → ``$POSTGRES_BIN`` → Debian's newest.

    An explicitly given directory that lacks them is an error, never a reason to look elsewhere.
    """
    explicit = bindir or os.environ.get("POSTGRES_BIN")
    candidates = [explicit] if explicit else sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version)
    for candidate in reversed(candidates):
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "postgres").is_file():
            return path
    if explicit:
        raise PostgresNotFoundError(f"no initdb and postgres in {explicit} (from POSTGRES_BIN or bindir)")
    raise PostgresNotFoundError(
        "PostgreSQL server not found: run `make deps` (it installs Debian's `postgresql`), or point"
        " POSTGRES_BIN at a directory holding initdb and postgres"
    )


def _version(bindir: str) -> int:
    name = Path(bindir).parent.name
    return int(name) if name.isdigit() else 0


class PostgresServer(LoopbackServer, Started):
    """A PostgreSQL cluster of its own on 127.0.0.1; :attr:`dsn` connects as its non-superuser role.

    ``workdir`` holds the server's log (appended across restarts). ``fsync=False`` (the default) suits
    tests; a benchmark of write cost passes ``fsync=True`` to measure what a real server would pay.
    """

    database = "detection"
    user = "detection_operator"

    def __init__(self, workdir: Path, *, bindir: str | None = None, fsync: bool = False) -> None:
        """Prepare (but do not start) a server; raises PostgresNotFoundError without the binaries."""
        self.workdir = Path(workdir)
        self.bindir = find_postgres_bin(bindir)
        self.fsync = fsync
        self.password = secrets.token_urlsafe(18)
        self._superuser_password = secrets.token_urlsafe(18)
        self._port = 0
        self._datadir: Path | None = None
        self._process: ManagedProcess | None = None

    # -- properties ----------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        """Where the postmaster's output goes."""
        return self.workdir / "postgres.log"

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return LOOPBACK

    @property
    def dsn(self) -> str:
        """A libpq connection string for the operator's role and database."""
        return self._dsn(self.user, self.password, self.database)

    @property
    def running(self) -> bool:
        """Whether the postmaster is alive."""
        return self._process is not None and self._process.running()

    def _dsn(self, user: str, password: str, database: str) -> str:
        return f"host={LOOPBACK} port={self.port} dbname={database} user={user} password={password}"

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        """Create the cluster on first use, start the postmaster and wait until it accepts connections.

        A no-op while running. After :meth:`stop` it comes back on the same port with the same data.
        """
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        first = self._datadir is None
        if first:
            self._initdb()
        deadline = time.monotonic() + timeout
        chosen = self._port == 0
        for _ in range(_PORT_ATTEMPTS if chosen else 1):
            if chosen:
                self._port = free_port()
            self._process = ManagedProcess("postgres", self._argv(), self.log_path)
            self._process.start()
            if self._wait_ready(deadline):
                break
            if not (chosen and self._process.lost_port_race()):
                raise RuntimeError(self._process.describe("did not accept connections"))
        else:
            raise RuntimeError("postgres lost the race for a free port several times")
        if first:
            self._create_role_and_database()

    def stop(self, timeout: float = 30) -> None:
        """Shut the server down at once (``fast``: sessions are ended, as in an outage); keep the data."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.running():
            # SIGTERM would be a "smart" shutdown, which waits for every client to disconnect.
            process.send_signal(signal.SIGINT)
            deadline = time.monotonic() + timeout
            while process.running() and time.monotonic() < deadline:
                time.sleep(_POLL_INTERVAL)
        process.stop()

    def close(self) -> None:
        """Stop the server and remove its data directory."""
        self.stop()
        datadir, self._datadir = self._datadir, None
        if datadir is not None:
            shutil.rmtree(datadir.parent, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()

    def operator_env(self, password_file: Path, database: str | None = None) -> dict[str, str]:
        """The operator's (and its commands') settings for this store; the password goes to
        ``password_file``, as a mounted Secret key holds it."""
        password_file.write_text(self.password)
        return {
            "DETECTION_OPERATOR_HISTORY_POSTGRES_HOST": self.host,
            "DETECTION_OPERATOR_HISTORY_POSTGRES_PORT": str(self.port),
            "DETECTION_OPERATOR_HISTORY_POSTGRES_DATABASE": database or self.database,
            "DETECTION_OPERATOR_HISTORY_POSTGRES_USER": self.user,
            "DETECTION_OPERATOR_HISTORY_POSTGRES_PASSWORD_FILE": str(password_file),
        }

    def create_database(self, name: str) -> None:
        """A further empty database owned by the operator's role (one per test on a shared server)."""
        with psycopg.connect(
            self._dsn(_SERVICE_USER, self._superuser_password, "postgres"), autocommit=True
        ) as conn:
            conn.execute(
                psycopg.sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    psycopg.sql.Identifier(name), psycopg.sql.Identifier(self.user)
                )
            )

    def execute(self, sql: str, *, superuser: bool = False) -> list[tuple[object, ...]]:
        """Run one statement in the test database and return its rows (empty when it returns none)."""
        dsn = self._dsn(_SERVICE_USER, self._superuser_password, self.database) if superuser else self.dsn
        with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(sql.encode())
            return list(cur.fetchall()) if cur.description else []

    # -- internals -----------------------------------------------------------------------------

    def _as_service_user(self) -> list[str]:
        """The argv prefix that runs a server binary as a non-root user (none needed when not root)."""
        if os.geteuid() != 0:
            return []
        try:
            pwd.getpwnam(_SERVICE_USER)
        except KeyError as exc:
            raise RuntimeError(
                f"running as root needs a {_SERVICE_USER!r} user (Debian's package makes it)"
            ) from exc
        # --pdeathsig after the uid change: the kernel clears the death signal when credentials change.
        return ["setpriv", f"--reuid={_SERVICE_USER}", f"--regid={_SERVICE_USER}", "--clear-groups",
                "--pdeathsig", "KILL", "--"]  # fmt: skip

    def _initdb(self) -> None:
        root = Path(tempfile.mkdtemp(prefix="detection-postgres-"))
        datadir = root / "data"
        pwfile = root / "pwfile"
        pwfile.write_text(self._superuser_password + "\n")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(_SERVICE_USER)
            os.chown(root, entry.pw_uid, entry.pw_gid)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        os.chmod(pwfile, 0o600)
        argv = [*self._as_service_user(), str(self.bindir / "initdb"), "-D", str(datadir),
                "-U", _SERVICE_USER, "--pwfile", str(pwfile), "--auth=scram-sha-256",
                "--encoding=UTF8", "--locale=C", "--no-instructions"]  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        pwfile.unlink()
        if result.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        self._datadir = datadir

    def _argv(self) -> list[str]:
        assert self._datadir is not None
        settings = {
            "listen_addresses": LOOPBACK,
            "port": str(self._port),
            "unix_socket_directories": "",
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            "max_connections": "50",
            "shared_buffers": "64MB",
        }
        flags = [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")]
        return [*self._as_service_user(), str(self.bindir / "postgres"), "-D", str(self._datadir), *flags]

    def _wait_ready(self, deadline: float) -> bool:
        assert self._process is not None
        dsn = self._dsn(_SERVICE_USER, self._superuser_password, "postgres")
        while time.monotonic() < deadline and self._process.running():
            with contextlib.suppress(psycopg.OperationalError):
                psycopg.connect(dsn, connect_timeout=2).close()
                return True
            time.sleep(_POLL_INTERVAL)
        return False

    def _create_role_and_database(self) -> None:
        dsn = self._dsn(_SERVICE_USER, self._superuser_password, "postgres")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    psycopg.sql.Identifier(self.user), psycopg.sql.Literal(self.password)
                )
            )
        self.create_database(self.database)
