"""The Redis benchmark's private server: a ``redis-server`` of its own on a free loopback port.

:class:`RedisServer` starts ``redis-server`` with no persistence (``--save ""
--appendonly no``) in a temporary directory, bound to 127.0.0.1 on a port the kernel has
just handed out (never the machine's own :6379), waits until it answers ``PING``, and
stops it again (SIGTERM, then SIGKILL after a bound). Use it as a context manager; the
kernel also kills the server when the process that started it dies
(``PR_SET_PDEATHSIG``), so a killed benchmark leaves no server behind.

It needs redis-py (``pip install redis``) to talk to the server.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

#: The port of the machine's own server: never started on, never talked to.
SYSTEM_PORT = 6379

_PR_SET_PDEATHSIG = 1


class RedisServerError(RuntimeError):
    """The private server could not be started (or redis-py is missing)."""


def redis_version(executable: str = "redis-server") -> str | None:
    """The version ``redis-server --version`` reports (``None``: not installed)."""
    path = shutil.which(executable)
    if path is None:
        return None
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"v=(\S+)", out)
    return found.group(1) if found else (out.strip() or None)


def _free_port() -> int:
    """A loopback port nobody listens on right now (the kernel's choice, never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port != SYSTEM_PORT:
            return port


def _die_with_parent() -> None:
    """In the server's child before exec: the kernel sends SIGKILL when our parent dies."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class RedisServer:
    """A private ``redis-server``: ``with RedisServer() as server: ... server.url ...``."""

    def __init__(
        self,
        executable: str = "redis-server",
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        attempts: int = 3,
    ) -> None:
        self.executable = executable
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.attempts = attempts
        self.host = "127.0.0.1"
        self.port = 0
        self.version: str | None = None  # INFO's redis_version once the server answers
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._owner = 0  # the pid that started the server: only it stops the server

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def client(self, timeout: float = 5.0) -> Any:
        """A new redis-py client of this server (close it after use)."""
        import redis

        return redis.Redis(
            host=self.host, port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    @contextlib.contextmanager
    def connect(self, timeout: float = 5.0) -> Iterator[Any]:
        """A redis-py client of this server for the block."""
        client = self.client(timeout)
        try:
            yield client
        finally:
            client.close()

    # -- start ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait for its PING (a no-op when it is running already).

        Raises :class:`RedisServerError` when ``redis-server`` or redis-py is missing, or
        the server does not answer within ``start_timeout`` seconds.
        """
        if self._proc is not None:
            return
        try:
            import redis  # noqa: F401
        except ImportError as exc:
            raise RedisServerError(f"redis-py is needed ({exc}); pip install redis") from None
        path = shutil.which(self.executable)
        if path is None:
            raise RedisServerError(f"{self.executable} not found (run .ci/redis-setup.sh)")
        problem = ""
        for _ in range(max(1, self.attempts)):
            try:
                self._launch(path)
                return
            except RedisServerError as exc:  # e.g. another program took the port meanwhile
                problem = str(exc)
        raise RedisServerError(problem)

    def _launch(self, path: str) -> None:
        self.port = _free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="psbench-redis-"))
        argv = [
            path,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._dir),
            "--logfile",
            str(self._dir / "redis.log"),
            "--daemonize",
            "no",
        ]
        self._owner = os.getpid()
        # What it prints before its log file is open (a bad option, say) goes here.
        with open(self._dir / "console.log", "wb") as console:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the benchmark, which then stops it
                preexec_fn=_die_with_parent,
            )
        try:
            self.version = self._await_ping()
        except BaseException:
            self.stop()
            raise

    def _await_ping(self) -> str | None:
        """Poll PING until the server answers; its version (INFO), or raise."""
        import redis

        assert self._proc is not None
        end = time.monotonic() + self.start_timeout
        last: Exception | None = None
        while time.monotonic() < end:
            code = self._proc.poll()
            if code is not None:
                raise RedisServerError(
                    f"redis-server exited with code {code} on port {self.port}: {self._log_tail()}"
                )
            client = self.client(timeout=1.0)
            try:
                if client.ping():
                    info = client.info("server")
                    if info.get("process_id") != self._proc.pid:  # not ours: port taken
                        raise RedisServerError(f"port {self.port} answered by another server")
                    version = info.get("redis_version")
                    return None if version is None else str(version)
            except redis.RedisError as exc:
                last = exc
            finally:
                client.close()
            time.sleep(0.05)
        raise RedisServerError(
            f"redis-server on port {self.port} did not answer PING within "
            f"{self.start_timeout:g} s ({last}): {self._log_tail()}"
        )

    def _log_tail(self) -> str:
        """The last lines the server wrote (console, then log file), for an error message."""
        lines: list[str] = []
        for name in ("console.log", "redis.log"):
            if self._dir is not None:
                with contextlib.suppress(OSError):
                    lines += (self._dir / name).read_text(errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in lines[-4:] if line.strip()) or "(no output)"

    # -- stop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after ``stop_timeout`` s) and remove its dir.

        In a process forked from the one that started it, this only forgets the server.
        """
        proc, self._proc = self._proc, None
        if os.getpid() != self._owner:
            self._dir = None
            return
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(self.stop_timeout)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
