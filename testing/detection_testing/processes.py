"""Child processes of the test helpers (control plane, Prometheus, the operator): start, stop, no leftovers.

:class:`ManagedProcess` is the one place that starts a helper binary, appends its output to a log file,
stops it (SIGTERM, then SIGKILL after a grace period) and reads the end of that log for error messages.
Every process it starts is also killed when the interpreter exits, and, where the platform allows, by
the kernel when the test runner dies without running exit handlers.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

__all__ = ["ManagedProcess", "log_tail"]

_LOG_TAIL_LINES: Final = 40
_EXIT_WAIT: Final = 5.0

# Every process started and not reaped yet. The atexit hook kills what is left, so a test that forgets
# stop() (or dies on an exception) leaves no etcd, apiserver, Prometheus or operator, nor their ports
# and data directories, behind.
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _kill_leftovers() -> None:
    with _LIVE_LOCK:
        leftovers = list(_LIVE)
        _LIVE.clear()
    for proc in leftovers:
        proc.kill()  # SIGKILL also ends a SIGSTOPped (paused) process; a no-op once it has exited
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_EXIT_WAIT)


def _die_with_parent_prefix() -> list[str]:
    """Return an argv prefix that makes the kernel SIGKILL the child when its parent dies.

    This covers what atexit cannot: a test runner killed by SIGKILL, the OOM killer or a CI timeout.
    Both ways of setting PR_SET_PDEATHSIG were in use here; this one, ``setpriv --pdeathsig KILL``
    (util-linux) in front of the argv, was chosen over a ``preexec_fn`` calling ``prctl()`` through
    ctypes because a ``preexec_fn`` runs Python in the forked child before exec: that can deadlock on
    a lock another thread held at fork time (the MetricExporter's server threads, HTTP clients,
    logging), and it takes subprocess off its vfork fast path. What setpriv gives up: the parent
    dying in the instant between fork and setpriv's prctl() goes unnoticed (the preexec version
    re-checked getppid()), and without setpriv on PATH only atexit remains.

    Linux ties the death signal to the *thread* that forked, not to the process, so a child started
    from a short-lived worker thread would be killed as soon as that thread finished. It is therefore
    only armed from the main thread; children started elsewhere rely on the atexit handler alone.
    """
    if threading.current_thread() is not threading.main_thread():
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the log at ``path``, or why it cannot be read."""
    try:
        with path.open("rb") as f:
            # deque keeps only the tail in memory however long the log has grown.
            return b"".join(deque(f, maxlen=lines)).decode(errors="replace").rstrip("\n")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"


class ManagedProcess:
    """One child process: its argv, its log file and, between :meth:`start` and :meth:`stop`, its process.

    Each :meth:`start` appends to ``log_path``, so the log of a restarted process keeps the history
    that led to the restart. ``env`` replaces the environment when given; ``cwd`` defaults to ours.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Prepare (but do not start) the process; ``name`` is how error messages call it."""
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = None if env is None else dict(env)
        self.cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id from :meth:`start` until :meth:`stop` or :meth:`kill` reaps it."""
        return None if self._proc is None else self._proc.pid

    @property
    def exit_code(self) -> int | None:
        """The exit status if the process ended on its own and was not reaped by stop() or kill() yet."""
        return None if self._proc is None else self._proc.poll()

    def running(self) -> bool:
        """Whether the process is alive (a paused one counts as running)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the process with stdout and stderr appended to the log; raise if it is running."""
        if self.running():
            raise RuntimeError(f"{self.name} is already running")
        self._forget()
        argv = [*_die_with_parent_prefix(), *self.argv]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n==== {time.strftime('%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                # Own session: a Ctrl-C in the terminal must not reach the children directly; the
                # parent decides when and in which order they stop (e.g. the apiserver before etcd).
                start_new_session=True,
            )
        with _LIVE_LOCK:
            _LIVE.add(proc)
        self._proc = proc

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if the process has not exited after ``grace`` seconds; then reap it.

        Safe to call when it never started or already exited.
        """
        proc = self._proc
        if proc is None:
            return
        try:
            # A stopped (paused) process acts on SIGTERM only once continued; to a running one
            # SIGCONT is harmless. Both are no-ops on a process that has already exited.
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        finally:
            self._forget()

    def kill(self) -> None:
        """SIGKILL the process, as an OOM kill or node loss would, and reap it."""
        proc = self._proc
        if proc is None:
            return
        try:
            proc.kill()
            proc.wait()
        finally:
            self._forget()

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` (e.g. SIGSTOP/SIGCONT to pause and resume); raise if the process is not running."""
        if self._proc is None or not self.running():
            raise RuntimeError(f"{self.name} is not running")
        self._proc.send_signal(sig)

    def tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the log."""
        return log_tail(self.log_path, lines)

    def describe(self, what: str) -> str:
        """An error message: ``name what (exit code)``, then the end of the log, where the reason is."""
        code = self.exit_code
        state = "" if code is None else f" (exit code {code})"
        return f"{self.name} {what}{state}; last {_LOG_TAIL_LINES} lines of {self.log_path}:\n{self.tail()}"

    def lost_port_race(self) -> bool:
        """Whether the process exited because the port it was given was taken.

        :func:`~detection_testing.ports.free_port` hands out a port that anyone may grab
        before the child binds it; a caller that picked the port itself may then retry with another.
        """
        return not self.running() and "address already in use" in self.tail().lower()

    def _forget(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
