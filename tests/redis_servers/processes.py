"""The life of each private ``redis-server`` process: ports, binaries, start, stop, clean-up.

Every process is a ``redis-server`` child on a free loopback port (never the machine's own
``:6379``), with its files in a fresh temporary directory. Nothing started here outlives
the Python process that started it:

* every process is registered and stopped by :func:`stop_all`, which runs from ``atexit``
  and from the ``pytest_sessionfinish`` hook (see :mod:`.fixtures`), and every fixture stops
  its own processes in a ``finally`` clause;
* on Linux each process is also started with ``PR_SET_PDEATHSIG = SIGKILL``, so the kernel
  kills it when the thread that started it dies, even by ``SIGKILL``.

:class:`_Managed` is the base of a server, a cluster node and a sentinel; :func:`wait_for`
polls for the state a deployment must reach.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .resp import HOST, RESERVED_PORTS, RespError

#: How to get the binaries on Debian (the message of a skipped or failed fixture).
INSTALL_HINT = (
    "install them with `.ci/redis-setup.sh` "
    "(apt-get update && apt-get install -y redis-server redis-tools)"
)
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


class RedisSupportError(RuntimeError):
    """A test server did not start, or did not reach the expected state in time."""


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.02
) -> None:
    """Poll *predicate* until true; raise :class:`RedisSupportError` after *timeout* s."""
    end = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            if predicate():
                return
        except (OSError, RespError, ConnectionError) as exc:
            last = exc
        if time.monotonic() > end:
            detail = f" (last error: {last!r})" if last else ""
            raise RedisSupportError(f"{what}: not reached within {timeout:g} s{detail}")
        time.sleep(interval)


# -- ports and binaries ------------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As redis-server binds: the killed server's connections linger in TIME_WAIT.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(avoid: Sequence[int] = ()) -> int:
    """A loopback TCP port that is free right now (never one of :data:`RESERVED_PORTS`)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port not in RESERVED_PORTS and port not in avoid:
            return port
    raise RedisSupportError("no free loopback port found")


def find_binary(name: str) -> str | None:
    """Path of *name* on ``PATH`` or in ``/usr/sbin``/``/usr/bin`` (Debian puts it there)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/usr/local/bin")


def redis_version() -> str | None:
    """The installed ``redis-server`` version (``7.0.15``), or ``None`` when not installed."""
    exe = find_binary("redis-server")
    if exe is None:
        return None
    out = subprocess.run(
        [exe, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return out.strip() or None


def _require(exe_name: str) -> str:
    exe = find_binary(exe_name)
    if exe is None:
        raise RedisSupportError(f"`{exe_name}` is not installed: {INSTALL_HINT}")
    return exe


# -- process bookkeeping -----------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_libc: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _die_with_parent() -> None:
    """``preexec_fn``: the kernel SIGKILLs the child when the starting thread dies."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_live: dict[int, _Managed] = {}
_live_lock = threading.Lock()


def stop_all() -> None:
    """Stop every process this module started and has not stopped yet (atexit, finalizers).

    Only the process that started a server stops it: a forked child that exits normally
    (and so runs ``atexit``) leaves its parent's servers alone.
    """
    me = os.getpid()
    with _live_lock:
        managed = [m for m in _live.values() if m.owner_pid == me]
    for m in managed:
        with contextlib.suppress(Exception):
            m.stop()


atexit.register(stop_all)


def live_pids() -> list[int]:
    """Pids of the processes this module started that are still registered as running."""
    with _live_lock:
        return [m.pid for m in _live.values() if m.pid is not None]


def pid_alive(pid: int) -> bool:
    """Whether *pid* exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state not in ("Z", "X")


class _Managed:
    """One ``redis-server`` process (a server, a cluster node or a sentinel)."""

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir: Path | None = None
        self.log_path: Path | None = None
        self._log: Any = None
        self.owner_pid = os.getpid()

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _make_dir(self) -> Path:
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix=f"polysync-{self.name}-"))
        return self.dir

    def _args(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:]) or "(empty log)"

    def _spawn(self, timeout: float = START_TIMEOUT) -> None:
        if self.port in RESERVED_PORTS:
            raise RedisSupportError(f"refusing to start a server on reserved port {self.port}")
        if self.running:
            return
        directory = self._make_dir()
        try:
            args = self._args()
        except BaseException:
            self._remove_dir()
            raise
        self.log_path = directory / f"{self.name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
        self.owner_pid = os.getpid()
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            start_new_session=True,  # Ctrl-C reaches us, not the server; we stop it
            preexec_fn=_die_with_parent,  # before any thread of ours exists
        )
        with _live_lock:
            _live[id(self)] = self
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self._reap()
                log = self.log_tail()
                self._remove_dir()
                raise RedisSupportError(
                    f"{self.name} on port {self.port} exited with code {code} while "
                    f"starting.\ncommand: {' '.join(args)}\nlog:\n{log}"
                )
            with contextlib.suppress(OSError, RespError, ConnectionError):
                if self._ready():
                    return
            if time.monotonic() > end:
                self.kill()
                log = self.log_tail()
                self._remove_dir()
                raise RedisSupportError(
                    f"{self.name} on port {self.port} did not answer PING within "
                    f"{timeout:g} s.\ncommand: {' '.join(args)}\nlog:\n{log}"
                )
            time.sleep(0.01)

    def _reap(self) -> None:
        with _live_lock:
            _live.pop(id(self), None)
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the process and reap it (no-op when it is not running)."""
        if self.proc is None:
            return
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(STOP_TIMEOUT)
        self._reap()

    def stop(self) -> None:
        """Graceful stop (SIGCONT then SIGTERM), SIGKILL after a few seconds; removes files."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self._signal(signal.SIGCONT)  # a suspended process cannot handle SIGTERM
                self._signal(signal.SIGTERM)
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.kill()
            self._reap()
        self._remove_dir()

    def _remove_dir(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def suspend(self) -> None:
        """SIGSTOP: the server stops answering but keeps its connections and data."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`suspend`."""
        self._signal(signal.SIGCONT)

    def pause(self, seconds: float, *, block: bool = False) -> threading.Timer | None:
        """Suspend for *seconds*; without *block*, returns at once (a timer resumes it)."""
        self.suspend()
        if block:
            try:
                time.sleep(seconds)
            finally:
                self.resume()
            return None
        timer = threading.Timer(seconds, self.resume)
        timer.daemon = True
        timer.start()
        return timer
