"""What a local node changes on the host, recorded before it starts and undone after it stops.

A kubelet, containerd and kube-proxy leave state outside any directory we give them: mounts, iptables
chains, the CNI bridge, sysctls, cgroups, a few fixed directories, and container processes that outlive
containerd (their shims re-parent to init). :class:`HostLease` holds the machine-wide lock (one local node
per machine: two kubelets would fight over the same chains and cgroups), keeps a record of what was
there before in ``/run/detection-operator-node/state.json``, and :func:`restore` undoes everything.
A record found at start-up belongs to a run that was killed before it could clean up (the lock is free,
so its holder is dead): it is swept first. :func:`snapshot` and :func:`leftovers` are how tests check
that the machine is as it was found.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

__all__ = [
    "BRIDGE",
    "HOST_DIRS",
    "HostLease",
    "NodeRecord",
    "leftovers",
    "restore",
    "snapshot",
]

STATE_DIR: Final = Path("/run/detection-operator-node")
#: The CNI bridge the node's Pods hang off; named so that it is recognisably ours.
BRIDGE: Final = "detop0"
#: Directories at fixed places that the kubelet, containerd, runc or CNI create whatever they are told.
HOST_DIRS: Final[tuple[str, ...]] = (
    "/var/lib/kubelet",
    "/usr/libexec/kubernetes",
    "/run/containerd",
    "/run/runc",
    "/etc/cni",
    "/var/lib/cni",
    "/opt/cni",
    "/var/log/pods",
    "/var/log/containers",
    "/run/kubernetes",
    "/var/lib/containerd",
    "/opt/containerd",
)
#: Sysctls that the kubelet (kernel defaults it insists on), the bridge plugin and kube-proxy may set.
SYSCTLS: Final[tuple[str, ...]] = (
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
_CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
#: The kubelet's cgroup for Pods (cgroupfs driver, default cgroupRoot), in every v1 hierarchy.
KUBEPODS: Final = "kubepods"
_CHAIN_PREFIXES: Final = ("KUBE-", "CNI-")
_TABLES: Final = ("filter", "nat", "mangle")
#: Netfilter accounting objects kube-proxy creates for its chains' counters (they outlive the chains).
_NFACCT: Final = ("ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts")
_PROGRAMS: Final = ("kubelet", "kube-scheduler", "kube-proxy", "containerd", "containerd-shim-runc-v2")
_KILL_DEADLINE: Final = 15.0


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


@dataclass
class NodeRecord:
    """What a node run needs to know to undo itself, written before anything is started."""

    workdir: str
    containerd_socket: str
    sysctls: dict[str, str] = field(default_factory=dict)
    created_dirs: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)

    @classmethod
    def before_start(cls, workdir: Path, containerd_socket: Path) -> NodeRecord:
        """The host as it is now: sysctl values and which fixed directories do not exist yet."""
        sysctls = {name: v for name in SYSCTLS if (v := _read(Path("/proc/sys") / name)) is not None}
        missing = [d for d in HOST_DIRS if not os.path.lexists(d)]
        return cls(str(workdir), str(containerd_socket), sysctls, missing)


class HostLease:
    """The machine-wide lock of the one local node, with its :class:`NodeRecord` on disk."""

    def __init__(self) -> None:
        """Prepare; :meth:`acquire` takes the lock."""
        self._fd: int | None = None
        #: What the sweep of a killed earlier run found and removed (empty when there was none).
        self.swept: list[str] = []

    @property
    def _state(self) -> Path:
        return STATE_DIR / "state.json"

    def acquire(self, timeout: float) -> None:
        """Take the lock (waiting up to ``timeout`` for a running node), then sweep a dead run's leftovers."""
        deadline = time.monotonic() + timeout
        while True:
            STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(STATE_DIR, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"another local node holds {STATE_DIR} (a parallel test run?); waited {timeout:.0f}s"
                    ) from None
                time.sleep(1)
                continue
            # The previous holder removes the directory when it is done: a lock on a removed one is none.
            if os.path.exists(STATE_DIR) and os.stat(STATE_DIR).st_ino == os.fstat(fd).st_ino:
                self._fd = fd
                break
            os.close(fd)
        stale = self.read()
        if stale is not None:
            self.swept = restore(stale)

    def read(self) -> NodeRecord | None:
        """The record on disk, if any."""
        try:
            return NodeRecord(**json.loads(self._state.read_text()))
        except FileNotFoundError:
            return None

    def write(self, record: NodeRecord) -> None:
        """Save ``record`` (atomically) so that a later run can undo this one if it dies."""
        partial = self._state.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(record)))
        partial.rename(self._state)

    def release(self) -> None:
        """Drop the record and the lock (call once the host is restored)."""
        if self._fd is None:
            return
        self._state.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            STATE_DIR.rmdir()
        os.close(self._fd)
        self._fd = None


# --------------------------------------------------------------------------------------------------
# Undo
# --------------------------------------------------------------------------------------------------


def restore(record: NodeRecord) -> list[str]:
    """Undo everything a node run may have left on the host; what was found and removed, one line each.

    Every step runs even when an earlier one fails, so a partial start or a killed run is cleaned up
    as far as possible; the order matters (processes before mounts before directories).
    """
    done: list[str] = []
    steps: tuple[Callable[[], list[str]], ...] = (
        lambda: _kill_processes(record),
        lambda: _unmount_under((record.workdir, "/run/containerd", "/var/lib/kubelet")),
        _delete_bridge,
        _delete_chains,
        _delete_nfacct,
        lambda: _restore_sysctls(record.sysctls),
        _remove_cgroups,
        lambda: _remove_dirs(record.created_dirs),
    )
    errors: list[str] = []
    for step in steps:
        try:
            done += step()
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    return done + [f"error: {e}" for e in errors]


def _pids_in_cgroups() -> set[int]:
    pids: set[int] = set()
    for hierarchy in _hierarchies():
        root = hierarchy / KUBEPODS
        if root.is_dir():
            for procs in root.rglob("cgroup.procs"):
                pids.update(int(p) for p in (_read(procs) or "").split())
    return pids


def _our_processes(record: NodeRecord) -> set[int]:
    """Processes of this node: recorded PIDs still running our binaries, and shims of our containerd."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        cmdline = (_read_bytes(entry / "cmdline") or b"").replace(b"\0", b" ").decode(errors="replace")
        mine = record.workdir in cmdline or record.containerd_socket in cmdline
        if mine and any(Path(cmdline.split(" ", 1)[0]).name == p for p in _PROGRAMS):
            found.add(int(entry.name))
    return found


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _kill_processes(record: NodeRecord) -> list[str]:
    # Containers first (their shims would otherwise restart nothing but hold mounts), then the rest.
    done: list[str] = []
    killed: set[int] = set()
    deadline = time.monotonic() + _KILL_DEADLINE
    while True:
        pids = _pids_in_cgroups() | _our_processes(record)
        pids.discard(os.getpid())
        if not pids:
            # A process that is exiting has no command line any more: wait until it is gone (or a
            # zombie, which holds nothing but its PID until init reaps it).
            while any(_alive(pid) for pid in killed) and time.monotonic() < deadline:
                time.sleep(0.1)
            return done
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
                done.append(f"killed process {pid} ({_comm(pid)})")
        if time.monotonic() > deadline:
            raise OSError(f"processes survived SIGKILL: {sorted(pids)}")
        time.sleep(0.2)
        # Reap what is ours to reap; others are reaped by init.
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    status = _read(Path(f"/proc/{pid}/stat"))
    return status is not None and status.rsplit(")", 1)[-1].split()[0] != "Z"


def _comm(pid: int) -> str:
    return _read(Path(f"/proc/{pid}/comm")) or "?"


def _mounts() -> list[str]:
    """Mount points, in mount order (a later one may sit on top of an earlier one)."""
    lines = (_read(Path("/proc/self/mountinfo")) or "").splitlines()
    return [_unescape(line.split()[4]) for line in lines if len(line.split()) > 4]


def _unescape(path: str) -> str:
    return path.encode().decode("unicode_escape")


def _unmount_under(roots: Iterable[str]) -> list[str]:
    done: list[str] = []
    prefixes = tuple(r.rstrip("/") for r in roots)
    for _ in range(5):  # mounts propagate and stack: go again until none is left
        targets = [m for m in _mounts() if any(m == p or m.startswith(p + "/") for p in prefixes)]
        if not targets:
            return done
        for target in reversed(targets):
            result = subprocess.run(["umount", target], capture_output=True)
            if result.returncode != 0:
                subprocess.run(["umount", "-l", target], capture_output=True)
            done.append(f"unmounted {target}")
    return done


def _delete_bridge() -> list[str]:
    bridge = Path(f"/sys/class/net/{BRIDGE}")
    if not bridge.exists():
        return []
    done: list[str] = []
    # The host ends of the Pods' veth pairs: a network namespace can outlive its processes for a while
    # (the kernel frees it asynchronously), and its veth with it. Once the bridge is gone, they are no
    # longer recognisably ours.
    for port in sorted(p.name for p in (bridge / "brif").iterdir()):
        subprocess.run(["ip", "link", "delete", port], capture_output=True)
        done.append(f"deleted link {port}")
    subprocess.run(["ip", "link", "delete", BRIDGE], check=True, capture_output=True)
    return [*done, f"deleted link {BRIDGE}"]


def _iptables_tools() -> list[str]:
    tools = [t for t in ("iptables", "ip6tables", "iptables-legacy", "ip6tables-legacy") if shutil.which(t)]
    return [t for t in tools if subprocess.run([t, "-w", "-S"], capture_output=True).returncode == 0]


def _rules(tool: str, table: str) -> list[str]:
    done = subprocess.run([tool, "-w", "-t", table, "-S"], capture_output=True, text=True)
    return done.stdout.splitlines() if done.returncode == 0 else []


def _ours(chain: str) -> bool:
    return chain.startswith(_CHAIN_PREFIXES)


def _delete_chains() -> list[str]:
    done: list[str] = []
    for tool in _iptables_tools():
        for table in _TABLES:
            rules = _rules(tool, table)
            chains = [r.split()[1] for r in rules if r.startswith("-N ") and _ours(r.split()[1])]
            for rule in rules:
                words = shlex.split(rule)
                # Jumps from chains that are not ours (INPUT, OUTPUT, ...) into ours.
                if (
                    words[0] == "-A"
                    and not _ours(words[1])
                    and "-j" in words
                    and _ours(words[words.index("-j") + 1])
                ):
                    subprocess.run([tool, "-w", "-t", table, "-D", *words[1:]], capture_output=True)
                    done.append(f"{tool} -t {table}: deleted {rule}")
            for chain in chains:
                subprocess.run([tool, "-w", "-t", table, "-F", chain], capture_output=True)
            for chain in chains:
                subprocess.run([tool, "-w", "-t", table, "-X", chain], capture_output=True)
                done.append(f"{tool} -t {table}: deleted chain {chain}")
    return done


def _nfacct_names() -> list[str]:
    if not shutil.which("nfacct"):
        return []
    done = subprocess.run(["nfacct", "list"], capture_output=True, text=True)
    return [line.rsplit("=", 1)[1].strip(" ;") for line in done.stdout.splitlines() if "=" in line]


def _delete_nfacct() -> list[str]:
    done: list[str] = []
    for name in _nfacct_names():
        if name in _NFACCT:
            subprocess.run(["nfacct", "delete", name], capture_output=True)
            done.append(f"deleted nfacct object {name}")
    return done


def _restore_sysctls(values: dict[str, str]) -> list[str]:
    done: list[str] = []
    for name, value in values.items():
        path = Path("/proc/sys") / name
        if _read(path) != value:
            path.write_text(value)
            done.append(f"sysctl {name.replace('/', '.')} restored to {value}")
    return done


def _hierarchies() -> list[Path]:
    if not _CGROUP_ROOT.is_dir():
        return []
    return [h for h in sorted(_CGROUP_ROOT.iterdir()) if h.is_dir() and not h.is_symlink()]


def _remove_cgroups() -> list[str]:
    done: list[str] = []
    for hierarchy in _hierarchies():
        root = hierarchy / KUBEPODS
        if not root.is_dir():
            continue
        # Depth first: a cgroup can only be removed once its children are.
        for directory in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(FileNotFoundError):
                directory.rmdir()
        root.rmdir()
        done.append(f"removed cgroup {root}")
    return done


def _remove_dirs(created: Iterable[str]) -> list[str]:
    done: list[str] = []
    for directory in created:
        if os.path.lexists(directory):
            shutil.rmtree(directory)
            done.append(f"removed {directory}")
    return done


# --------------------------------------------------------------------------------------------------
# Checking
# --------------------------------------------------------------------------------------------------


def snapshot() -> dict[str, list[str]]:
    """What a node could leave behind, as it is now: compare two with :func:`leftovers`."""
    chains = [
        f"{tool} -t {table} {rule}"
        for tool in _iptables_tools()
        for table in _TABLES
        for rule in _rules(tool, table)
    ]
    processes = sorted(
        f"{entry.name} {comm}"
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and _alive(int(entry.name))
        and (comm := _read(entry / "comm")) is not None
        and any(p.startswith(comm) for p in _PROGRAMS)
    )
    return {
        "mounts": sorted(set(_mounts())),
        "iptables": sorted(chains),
        "links": sorted(p.name for p in Path("/sys/class/net").iterdir()),
        "nfacct": sorted(_nfacct_names()),
        "sysctls": [f"{name}={_read(Path('/proc/sys') / name)}" for name in SYSCTLS],
        "dirs": [d for d in HOST_DIRS if os.path.lexists(d)],
        "cgroups": [str(h / KUBEPODS) for h in _hierarchies() if (h / KUBEPODS).exists()],
        "processes": processes,
    }


def leftovers(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[str]:
    """What ``after`` has that ``before`` did not (and sysctls that changed), one line each."""
    found: list[str] = []
    for kind, items in after.items():
        previous = set(before.get(kind, []))
        found += [f"{kind}: {item}" for item in items if item not in previous]
    return found


@contextlib.contextmanager
def unchanged_host() -> Iterator[dict[str, list[str]]]:
    """Take a :func:`snapshot` before the block; after it, raise AssertionError naming any leftover."""
    before = snapshot()
    yield before
    left = leftovers(before, snapshot())
    if left:
        raise AssertionError("left on the host:\n  " + "\n  ".join(left))
