"""Private Redis servers for the tests (a pytest plugin module) and for the Redis benchmarks.

Every server this module starts is a ``redis-server`` child process on a free loopback
port (never the machine's own ``:6379``), with no persistence and its files in a fresh
temporary directory. Nothing it starts outlives the Python process that started it:

* every process is registered and stopped by :func:`stop_all`, which runs from ``atexit``
  and from the ``pytest_sessionfinish`` hook, and every fixture stops its own processes
  in a ``finally`` clause;
* on Linux each server is also started with ``PR_SET_PDEATHSIG = SIGKILL``, so the kernel
  kills it when the thread that started it dies, even by ``SIGKILL``.

Classes: :class:`RedisServer` (one server; ACL and unix socket options), :class:`RedisCluster`
(three masters, no replicas), :class:`RedisSentinel` (one master and one sentinel, and
optionally a replica to fail over to).
Fixtures: ``redis_server`` and ``redis_cluster`` and ``redis_sentinel`` (session scope),
``redis_server_fresh`` and ``redis_sentinel_with_replica`` (function scope, for
kill/restart/pause/failover tests).

It talks to the servers through a small RESP client of its own (:class:`RespConnection`),
so it needs no Redis client library. When ``redis-server`` is missing the fixtures skip,
or fail when the environment variable ``CI`` is ``true``.
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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import pytest

HOST = "127.0.0.1"
#: The machine's own Redis: never used, never touched.
RESERVED_PORTS = frozenset({6379, 16379, 26379})
#: How to get the binaries on Debian (the message of a skipped or failed fixture).
INSTALL_HINT = (
    "install them with `.ci/redis-setup.sh` "
    "(apt-get update && apt-get install -y redis-server redis-tools)"
)
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


class RedisSupportError(RuntimeError):
    """A test server did not start, or did not reach the expected state in time."""


class RespError(Exception):
    """An error reply (``-ERR ...``) from the server."""


# -- a tiny RESP2 client -----------------------------------------------------------------


def _encode(args: Sequence[object]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RespConnection:
    """One blocking connection speaking RESP2; replies decoded to ``str``/``int``/lists."""

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = HOST,
        unix_path: str | None = None,
        password: str | None = None,
        username: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        if port in RESERVED_PORTS and unix_path is None:
            raise ValueError(f"port {port} is reserved for the machine's own Redis")
        if unix_path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            target: Any = unix_path
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            target = (host, port)
        try:
            self.sock.connect(target)
        except OSError:
            self.sock.close()
            raise
        self._file = self.sock.makefile("rb")
        if password is not None:
            auth: list[object] = ["AUTH", username, password] if username else ["AUTH", password]
            self.command(*auth)

    def command(self, *args: object) -> Any:
        """Send one command and return its reply; an error reply raises :class:`RespError`."""
        self.sock.sendall(_encode(args))
        return self._read()

    def _read(self) -> Any:
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("connection closed by the server")
        kind, body = line[:1], line[1:-2]
        if kind == b"+":
            return body.decode()
        if kind == b"-":
            raise RespError(body.decode())
        if kind == b":":
            return int(body)
        if kind == b"$":
            size = int(body)
            if size < 0:
                return None
            data = self._file.read(size + 2)
            return data[:-2].decode(errors="replace")
        if kind == b"*":
            count = int(body)
            return None if count < 0 else [self._read() for _ in range(count)]
        raise ConnectionError(f"unexpected reply {line!r}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RespConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_info(text: str) -> dict[str, str]:
    """``INFO`` / ``CLUSTER INFO`` text as a dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            out[key.strip()] = value.strip()
    return out


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


# -- one server --------------------------------------------------------------------------


class RedisServer(_Managed):
    """A private ``redis-server`` on a free loopback port, without persistence.

    ``RedisServer(password=..., username=...)``: with a password only, ``--requirepass``;
    with a username too, an ACL user with every permission, and the default user off.
    ``unixsocket=<path>`` (or ``True`` for one in the server's directory) adds a unix socket.
    ``extra_args`` are appended to the command line (e.g. ``["--maxclients", "50"]``).

    Use it as a context manager, or call :meth:`start` (returns ``self``) and :meth:`stop`.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        password: str | None = None,
        username: str | None = None,
        unixsocket: str | os.PathLike[str] | bool | None = None,
        extra_args: Sequence[str] = (),
        name: str = "redis",
    ) -> None:
        if username is not None and password is None:
            raise ValueError("an ACL username needs a password")
        super().__init__(name, port if port is not None else free_port())
        self.password = password
        self.username = username
        self.extra_args = list(extra_args)
        self._unix_auto = unixsocket is True
        self._unixsocket: str | None = None
        if unixsocket is True:
            self._unixsocket = str(self._make_dir() / "redis.sock")
        elif unixsocket:
            self._unixsocket = os.fspath(unixsocket)

    # addresses
    @property
    def host(self) -> str:
        return HOST

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.port)

    def _credentials(self) -> str:
        if self.password is None:
            return ""
        user = quote(self.username, safe="") if self.username else ""
        return f"{user}:{quote(self.password, safe='')}@"

    @property
    def url(self) -> str:
        """``redis://[user:password@]127.0.0.1:PORT/0``."""
        return f"redis://{self._credentials()}{HOST}:{self.port}/0"

    @property
    def unixsocket(self) -> str | None:
        return self._unixsocket

    @property
    def unix_url(self) -> str:
        """``unix://[user:password@]/path/to/redis.sock?db=0`` (needs ``unixsocket``)."""
        if self._unixsocket is None:
            raise RedisSupportError("this server was started without unixsocket=")
        return f"unix://{self._credentials()}{self._unixsocket}?db=0"

    # life cycle
    def _args(self) -> list[str]:
        assert self.dir is not None
        if self._unix_auto:  # the directory is new after a stop()
            self._unixsocket = str(self.dir / "redis.sock")
        args = [
            _require("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.dir),
            "--logfile",
            "",
            "--loglevel",
            "notice",
        ]
        if self.password is not None and self.username is None:
            args += ["--requirepass", self.password]
        elif self.password is not None:
            args += [
                "--user",
                str(self.username),
                "on",
                f">{self.password}",
                "~*",
                "&*",
                "+@all",
                "--user",
                "default",
                "off",
            ]
        if self._unixsocket is not None:
            args += ["--unixsocket", self._unixsocket, "--unixsocketperm", "700"]
        return args + self.extra_args

    def connect(self, timeout: float = 5.0, *, unix: bool = False) -> RespConnection:
        """A new :class:`RespConnection`, authenticated if the server has a password."""
        return RespConnection(
            None if unix else self.port,
            unix_path=self._unixsocket if unix else None,
            password=self.password,
            username=self.username,
            timeout=timeout,
        )

    def command(self, *args: object, timeout: float = 5.0) -> Any:
        """Run one command on a short-lived connection."""
        with self.connect(timeout) as conn:
            return conn.command(*args)

    def ping(self, timeout: float = 1.0) -> bool:
        """Whether the server answers PING with PONG within *timeout* s."""
        try:
            return bool(self.command("PING", timeout=timeout) == "PONG")
        except (OSError, RespError, ConnectionError):
            return False

    def _ready(self) -> bool:
        return self.ping(timeout=1.0)

    def start(self, timeout: float = START_TIMEOUT) -> RedisServer:
        """Start the server and wait until it answers PING (at most *timeout* s)."""
        self._spawn(timeout)
        return self

    def restart(self, timeout: float = START_TIMEOUT) -> RedisServer:
        """Kill the server and start a new one on the same port, with empty data."""
        self.kill()
        if self.dir is not None:
            for entry in self.dir.iterdir():  # no persistence, but be sure: fresh data
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                elif entry.suffix in (".rdb", ".aof"):
                    entry.unlink()
        wait_for(lambda: _port_free(self.port), 10.0, f"port {self.port} released")
        return self.start(timeout)

    def flushall(self) -> None:
        self.command("FLUSHALL")

    def info(self, section: str = "server") -> dict[str, str]:
        return parse_info(self.command("INFO", section))

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {HOST}:{self.port} pid={self.pid} {state}>"


# -- cluster -----------------------------------------------------------------------------


class RedisCluster:
    """Three cluster-enabled masters (no replicas), joined by ``redis-cli --cluster create``."""

    def __init__(self, masters: int = 3, node_timeout_ms: int = 5000) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.servers: list[RedisServer] = []
        used: list[int] = []
        for i in range(masters):
            port = free_port(avoid=used)
            bus = free_port(avoid=[*used, port])
            used += [port, bus]
            extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(node_timeout_ms),
                "--cluster-port",
                str(bus),
            ]
            self.servers.append(RedisServer(port, extra_args=extra, name=f"cluster{i}"))

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [s.address for s in self.servers]

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self, timeout: float = 60.0) -> RedisCluster:
        """Start the nodes, create the cluster, wait for ``cluster_state:ok`` everywhere."""
        cli = _require("redis-cli")
        try:
            for s in self.servers:
                s.start()
            hosts = [f"{h}:{p}" for h, p in self.nodes]
            done = subprocess.run(
                [cli, "--cluster", "create", *hosts, "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if done.returncode != 0:
                raise RedisSupportError(
                    f"redis-cli --cluster create failed ({done.returncode}):\n"
                    f"{done.stdout}\n{done.stderr}"
                )
            count = len(self.servers)

            def ok() -> bool:
                for s in self.servers:
                    info = parse_info(s.command("CLUSTER", "INFO"))
                    if info.get("cluster_state") != "ok":
                        return False
                    if info.get("cluster_slots_ok") != "16384":
                        return False
                    if info.get("cluster_known_nodes") != str(count):
                        return False
                return True

            wait_for(ok, timeout, "cluster_state:ok on every node", interval=0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def node_for(self, key: str) -> RedisServer:
        """The master that serves *key*'s hash slot."""
        slot = int(self.servers[0].command("CLUSTER", "KEYSLOT", key))
        for entry in self.servers[0].command("CLUSTER", "SLOTS"):
            low, high, master = int(entry[0]), int(entry[1]), entry[2]
            if low <= slot <= high:
                port = int(master[1])
                for s in self.servers:
                    if s.port == port:
                        return s
        raise RedisSupportError(f"no node serves slot {slot}")

    def stop(self) -> None:
        for s in self.servers:
            s.stop()

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.servers if s.pid is not None]

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- sentinel ----------------------------------------------------------------------------


class _SentinelProcess(_Managed):
    def __init__(self, master_port: int, service_name: str) -> None:
        super().__init__("sentinel", free_port())
        self.master_port = master_port
        self.service_name = service_name

    def _args(self) -> list[str]:
        assert self.dir is not None
        conf = self.dir / "sentinel.conf"  # sentinel rewrites its config: it must be writable
        conf.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    f"bind {HOST}",
                    "daemonize no",
                    f"dir {self.dir}",
                    'logfile ""',
                    f"sentinel monitor {self.service_name} {HOST} {self.master_port} 1",
                    f"sentinel down-after-milliseconds {self.service_name} 5000",
                    f"sentinel failover-timeout {self.service_name} 10000",
                    "",
                ]
            )
        )
        return [_require("redis-server"), str(conf), "--sentinel"]

    def command(self, *args: object, timeout: float = 5.0) -> Any:
        with RespConnection(self.port, timeout=timeout) as conn:
            return conn.command(*args)

    def _ready(self) -> bool:
        return bool(self.command("PING", timeout=1.0) == "PONG")


class RedisSentinel:
    """One master and one sentinel monitoring it as :attr:`service_name` (quorum 1).

    ``RedisSentinel(replica=True)`` adds a replica of the master, so that
    :meth:`failover` can promote it.
    """

    def __init__(self, service_name: str = "mymaster", *, replica: bool = False) -> None:
        self.service_name = service_name
        self.master = RedisServer(name="sentinel-master")
        self.sentinel = _SentinelProcess(self.master.port, service_name)
        self.replica = (
            RedisServer(
                name="sentinel-replica", extra_args=["--replicaof", HOST, str(self.master.port)]
            )
            if replica
            else None
        )

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        return [(HOST, self.sentinel.port)]

    @property
    def master_address(self) -> tuple[str, int]:
        return self.master.address

    def master_state(self) -> dict[str, str]:
        """``SENTINEL MASTER <service>`` as a dict."""
        flat = self.sentinel.command("SENTINEL", "MASTER", self.service_name)
        return dict(zip(flat[::2], flat[1::2], strict=True))

    def start(self, timeout: float = 30.0) -> RedisSentinel:
        """Start both; wait until the sentinel has heard from the master (INFO received)."""
        try:
            self.master.start()
            self.sentinel._spawn()

            def knows_master() -> bool:
                addr = self.sentinel.command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name
                )
                if addr != [HOST, str(self.master.port)]:
                    return False
                state = self.master_state()
                return (
                    state.get("flags") == "master"
                    and int(state.get("info-refresh", "1000000000")) < 60_000
                    and state.get("role-reported") == "master"
                )

            wait_for(knows_master, timeout, "sentinel reports the master", interval=0.05)
            if self.replica is not None:
                self.replica.start()
                replica = self.replica

                def replica_ready() -> bool:
                    link = replica.info("replication").get("master_link_status")
                    known = self.sentinel.command("SENTINEL", "REPLICAS", self.service_name)
                    return link == "up" and len(known) > 0

                wait_for(replica_ready, timeout, "the replica is in sync and known", interval=0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def failover(self, timeout: float = 30.0) -> None:
        """Promote the replica (``SENTINEL FAILOVER``) and wait until it is the master."""
        replica = self.replica
        if replica is None:
            raise RedisSupportError("failover needs RedisSentinel(replica=True)")
        self.sentinel.command("SENTINEL", "FAILOVER", self.service_name)

        def promoted() -> bool:
            addr = self.sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
            role = replica.info("replication").get("role")
            old = self.master.info("replication")
            return (
                addr == [HOST, str(replica.port)]
                and role == "master"
                and old.get("role") == "slave"
                and old.get("master_link_status") == "up"
            )

        wait_for(promoted, timeout, "the replica is promoted", interval=0.05)

    def stop(self) -> None:
        self.sentinel.stop()
        if self.replica is not None:
            self.replica.stop()
        self.master.stop()

    @property
    def pids(self) -> list[int]:
        servers = (self.master, self.sentinel, self.replica)
        return [s.pid for s in servers if s is not None and s.pid is not None]

    def __enter__(self) -> RedisSentinel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- pytest fixtures ---------------------------------------------------------------------


def require_redis(*binaries: str) -> None:
    """Skip the test (or fail it when ``CI=true``) if a Redis binary is missing."""
    missing = [b for b in (binaries or ("redis-server",)) if find_binary(b) is None]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed: {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


_Startable = TypeVar("_Startable", RedisServer, RedisCluster, RedisSentinel)


def _running(deployment: _Startable) -> Iterator[_Startable]:
    """Start *deployment* for a fixture and stop it afterwards, even if starting failed."""
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private server for the whole session (flush it yourself if a test needs to)."""
    require_redis()
    yield from _running(RedisServer(name="redis-session"))


@pytest.fixture
def redis_server_fresh() -> Iterator[RedisServer]:
    """A server of the test's own: kill, restart or pause it freely."""
    require_redis()
    yield from _running(RedisServer(name="redis-fresh"))


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """Three masters, ``cluster_state:ok`` on each."""
    require_redis("redis-server", "redis-cli")
    yield from _running(RedisCluster())


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinel]:
    """A master and one sentinel that reports it as ``mymaster``."""
    require_redis()
    yield from _running(RedisSentinel())


@pytest.fixture
def redis_sentinel_with_replica() -> Iterator[RedisSentinel]:
    """A master, a replica and one sentinel, of the test's own (it may fail them over)."""
    require_redis()
    yield from _running(RedisSentinel(replica=True))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Whatever a test started and did not stop goes now (atexit is the second net)."""
    stop_all()
