"""Private PostgreSQL clusters (and PgBouncers before them) for the tests: start, kill, stop.

A :class:`PrivatePostgres` is a ``postgres`` postmaster run as a direct child process (not
through ``pg_ctl start``, which detaches it: a child can be killed with its parent by
``PR_SET_PDEATHSIG``) on a free loopback port, with its unix socket, its data directory
and its log in a fresh temporary directory, never the machine's own cluster. The data
directory is a copy of one template that ``initdb`` makes once per session.

Authentication: the superuser is :data:`USER`; TCP needs its password
(:data:`PASSWORD`, scram-sha-256), the unix socket trusts it. When the tests run as root
(which ``initdb`` and ``postgres`` refuse), both run as the ``postgres`` OS user and the
temporary directories belong to it.

Nothing started here outlives the Python process that started it: every instance is
registered and stopped by :func:`stop_all` (``atexit`` and the ``pytest_sessionfinish``
hook), each fixture stops its own in a ``finally`` clause, and the kernel SIGKILLs a
postmaster whose starting thread dies. A killed postmaster's backends exit on their own
(they watch the postmaster); :meth:`PrivatePostgres.kill` waits for them and removes the
System V segment the cluster leaves behind.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tests.redis_servers.processes import _die_with_parent
from tests.redis_servers.processes import _port_free as port_free
from tests.redis_servers.processes import free_port as _free_port

if TYPE_CHECKING:
    import pwd  # POSIX only: imported where used, so the module loads on Windows too

HOST = "127.0.0.1"
#: The superuser of every private cluster, and its password over TCP.
USER = "polysync"
PASSWORD = "polysync-test-secret"
#: The machine's own cluster: never started, stopped or used here.
RESERVED_PORTS = frozenset({5432, 6432})
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
INSTALL_HINT = (
    "install the PostgreSQL server binaries with `.ci/redis-setup.sh` "
    "(apt-get install -y postgresql-15, or set POLYSYNC_PG_BINDIR)"
)
PGBOUNCER_HINT = "install PgBouncer with `.ci/redis-setup.sh` (apt-get install -y pgbouncer)"


class PostgresSupportError(RuntimeError):
    """A private server did not start, or did not reach the expected state in time."""


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll *predicate* until true; raise :class:`PostgresSupportError` after *timeout* s."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise PostgresSupportError(f"{what}: not reached within {timeout:g} s")
        time.sleep(0.02)


# -- binaries, users, ports --------------------------------------------------------------


def find_bindir() -> Path | None:
    """Where ``initdb`` and ``postgres`` are: $POLYSYNC_PG_BINDIR, ``pg_config --bindir``,
    the newest ``/usr/lib/postgresql/*/bin`` (Debian), or ``PATH``."""
    candidates: list[Path] = []
    if os.environ.get("POLYSYNC_PG_BINDIR"):
        candidates.append(Path(os.environ["POLYSYNC_PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
            if out:
                candidates.append(Path(out))

    def version(path: str) -> tuple[int, ...]:
        number = Path(path).parent.name
        return tuple(int(p) for p in number.split(".") if p.isdigit())

    candidates += [
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    ]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    return None


def find_pgbouncer() -> str | None:
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


def _bindir() -> Path:
    found = find_bindir()
    if found is None:
        raise PostgresSupportError(f"initdb/postgres not found: {INSTALL_HINT}")
    return found


def _run_as() -> pwd.struct_passwd | None:
    """The OS user the servers run as: ``postgres`` when we are root, else ourselves."""
    import pwd

    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresSupportError(
            "running as root, and initdb refuses root: create a 'postgres' OS user "
            "(Debian's postgresql package does)"
        ) from None


def _user_kwargs() -> dict[str, Any]:
    user = _run_as()
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _own_dir(prefix: str) -> Path:
    """A new temporary directory that the servers' OS user owns."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    user = _run_as()
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


def free_port() -> int:
    """A loopback TCP port that is free right now (never one of :data:`RESERVED_PORTS`)."""
    return _free_port(avoid=RESERVED_PORTS)


def processes_matching(needle: str) -> list[int]:
    """Pids whose command line contains *needle* (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry))
    return found


def children_of(pid: int) -> list[int]:
    """Pids whose parent is *pid* (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry))
    return found


def _sysv_segments_of(pid: int) -> list[tuple[int, int]]:
    """``(shmid, nattch)`` of the System V segments that process *pid* created."""
    out = []
    with contextlib.suppress(OSError), open("/proc/sysvipc/shm", encoding="ascii") as fh:
        next(fh, None)
        for line in fh:
            cols = line.split()
            if len(cols) > 6 and int(cols[4]) == pid:
                out.append((int(cols[1]), int(cols[6])))
    return out


# -- bookkeeping -------------------------------------------------------------------------

_live: dict[int, Any] = {}
_live_lock = threading.Lock()
_template_lock = threading.Lock()
_template: Path | None = None


def stop_all() -> None:
    """Stop every server this process started and has not stopped; remove the template."""
    global _template
    me = os.getpid()
    with _live_lock:
        managed = [m for m in _live.values() if m.owner_pid == me]
    for m in managed:
        with contextlib.suppress(Exception):
            m.stop()
    with _template_lock:
        if _template is not None and _template_owner == me:
            shutil.rmtree(_template.parent, ignore_errors=True)
            _template = None


atexit.register(stop_all)
_template_owner = os.getpid()


def template_data_dir() -> Path:
    """A data directory made by ``initdb`` once per session, copied by every server."""
    global _template, _template_owner
    with _template_lock:
        if _template is not None:
            return _template
        base = _own_dir("polysync-pg-template-")
        pwfile = base / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        user = _run_as()
        if user is not None:
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        data = base / "data"
        result = subprocess.run(
            [
                str(_bindir() / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=base,
            **_user_kwargs(),
        )
        pwfile.unlink()
        if result.returncode != 0:
            shutil.rmtree(base, ignore_errors=True)
            raise PostgresSupportError(
                f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        _template, _template_owner = data, os.getpid()
        return data


class _Process:
    """One server process of ours, run as the servers' OS user, with its own directory."""

    prefix = "polysync-proc-"

    def __init__(self, port: int | None) -> None:
        self.port = port if port is not None else free_port()
        if self.port in RESERVED_PORTS:
            raise PostgresSupportError(f"refusing to use reserved port {self.port}")
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.owner_pid = os.getpid()
        self._log: Any = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        return None if self.dir is None else self.dir / "server.log"

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty)"

    def _args(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _spawn(self, timeout: float) -> None:
        if self.running:
            return
        assert self.dir is not None
        args = self._args()
        self._log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - closed in _reap()
        self.owner_pid = os.getpid()
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            start_new_session=True,  # Ctrl-C reaches us, not the server; we stop it
            preexec_fn=_die_with_parent,  # before any thread of ours
            **_user_kwargs(),
        )
        with _live_lock:
            _live[id(self)] = self
        end = time.monotonic() + timeout
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > end:
                code = self.proc.poll()
                self.kill()
                raise PostgresSupportError(
                    f"{type(self).__name__} on port {self.port} "
                    + ("did not start" if code is None else f"exited with code {code}")
                    + f" within {timeout:g} s.\ncommand: {' '.join(args)}\n"
                    f"log:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _reap(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT)
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
        self._signal(signal.SIGKILL)
        self._reap()

    def stop(self) -> None:
        """Stop (SIGINT, then SIGKILL after a while) and remove the directory."""
        try:
            if self.running:
                assert self.proc is not None
                self._signal(signal.SIGINT)
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.kill()
            self.kill()
        finally:
            with _live_lock:
                _live.pop(id(self), None)
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class PrivatePostgres(_Process):
    """A private PostgreSQL cluster on a free loopback port and a unix socket.

    ``start()`` copies the session's template data directory and starts the
    postmaster; ``kill()`` SIGKILLs it (its backends follow); ``restart()`` starts it
    again on the same port and data (after crash recovery, for a killed one); ``stop()``
    shuts it down fast and removes everything. Use it as a context manager or call
    ``start()`` (returns ``self``) and ``stop()``.
    """

    def __init__(self, port: int | None = None, *, dbname: str = "postgres") -> None:
        super().__init__(port)
        self.dbname = dbname
        self._shm: list[int] = []

    @property
    def cluster_name(self) -> str:
        return f"polysync-pg-{self.port}"

    @property
    def socket_dir(self) -> str:
        assert self.dir is not None, "the server is not started"
        return str(self.dir)

    @property
    def url(self) -> str:
        """``postgresql://polysync:PASSWORD@127.0.0.1:PORT/postgres`` (TCP, password)."""
        return f"postgresql://{USER}:{quote(PASSWORD, safe='')}@{HOST}:{self.port}/{self.dbname}"

    def url_with_password(self, password: str) -> str:
        return f"postgresql://{USER}:{quote(password, safe='')}@{HOST}:{self.port}/{self.dbname}"

    @property
    def keyword_dsn(self) -> str:
        """``host=<socket dir> port=PORT dbname=postgres user=polysync`` (unix socket, trust)."""
        return f"host={self.socket_dir} port={self.port} dbname={self.dbname} user={USER}"

    def _args(self) -> list[str]:
        assert self.dir is not None
        settings = {
            "listen_addresses": HOST,
            "unix_socket_directories": str(self.dir),
            "cluster_name": self.cluster_name,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "40",
            "shared_buffers": "16MB",
            # Segments in the data directory, not /dev/shm: a kill leaves none behind.
            "dynamic_shared_memory_type": "mmap",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        args = [str(_bindir() / "postgres"), "-D", str(self.dir / "data"), "-p", str(self.port)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        return args

    def _ready(self) -> bool:
        assert self.dir is not None
        try:
            lines = (self.dir / "data" / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        # Line 1 is the postmaster's pid (a killed one leaves its file behind), line 8
        # its status (PostgreSQL 10+): "ready" once it accepts connections.
        return len(lines) >= 8 and lines[0].strip() == str(self.pid) and lines[7].strip() == "ready"

    def start(self, timeout: float = START_TIMEOUT) -> PrivatePostgres:
        """Start the cluster and wait until it accepts connections (at most *timeout* s)."""
        if self.running:
            return self
        if self.dir is None:
            template = template_data_dir()
            self.dir = _own_dir("polysync-pg-")
            # cp -a keeps the owner (the postgres user) and the 0700 mode initdb gave it.
            subprocess.run(
                ["cp", "-a", str(template), str(self.dir / "data")], check=True, timeout=60
            )
        try:
            self._spawn(timeout)
        except BaseException:
            self.stop()
            raise
        self._shm = [shmid for shmid, _ in _sysv_segments_of(self.pid or -1)]
        return self

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (a crash); wait until they are all gone."""
        postmaster = self.pid if self.running else None
        backends = children_of(postmaster) if postmaster is not None else []
        super().kill()
        if postmaster is None:
            return
        for pid in backends:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(PostgresSupportError):
            wait_for(
                lambda: (
                    not any(os.path.exists(f"/proc/{pid}") for pid in backends)
                    and not processes_matching(f"postgres: {self.cluster_name}:")
                ),
                STOP_TIMEOUT,
                f"the backends of {self.cluster_name} exited",
            )
        # The postmaster's System V segment outlives it (a new postmaster on the same
        # data directory would remove it; a removed directory never will).
        for shmid, nattch in _sysv_segments_of(postmaster):
            if nattch == 0:
                subprocess.run(["ipcrm", "-m", str(shmid)], check=False, capture_output=True)

    def restart(self, timeout: float = START_TIMEOUT) -> PrivatePostgres:
        """Kill the postmaster and start a new one on the same port and data directory."""
        self.kill()
        wait_for(lambda: port_free(self.port), STOP_TIMEOUT, f"port {self.port} released")
        self._spawn(timeout)
        return self

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __repr__(self) -> str:
        return f"<PrivatePostgres {HOST}:{self.port} pid={self.pid} running={self.running}>"


class PrivatePgBouncer(_Process):
    """A private PgBouncer on a free loopback port before a :class:`PrivatePostgres`.

    Clients log in as :data:`USER` without a password (``auth_type = trust``); PgBouncer
    reaches the server over its unix socket. *pool_mode*: ``session``, ``transaction``
    or ``statement``.
    """

    def __init__(self, server: PrivatePostgres, pool_mode: str, port: int | None = None) -> None:
        super().__init__(port)
        self.server = server
        self.pool_mode = pool_mode

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@{HOST}:{self.port}/{self.server.dbname}"

    def _args(self) -> list[str]:
        exe = find_pgbouncer()
        if exe is None:
            raise PostgresSupportError(f"pgbouncer not found: {PGBOUNCER_HINT}")
        assert self.dir is not None
        (self.dir / "userlist.txt").write_text(f'"{USER}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={self.server.socket_dir} port={self.server.port} user={USER}\n"
            "[pgbouncer]\n"
            f"listen_addr = {HOST}\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'userlist.txt'}\n"
            f"pool_mode = {self.pool_mode}\n"
            "default_pool_size = 5\n"
            "max_client_conn = 50\n"
            "query_wait_timeout = 10\n"
        )
        user = _run_as()
        if user is not None:
            for name in ("userlist.txt", "pgbouncer.ini"):
                os.chown(self.dir / name, user.pw_uid, user.pw_gid)
        return [exe, str(self.dir / "pgbouncer.ini")]

    def _ready(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            return s.connect_ex((HOST, self.port)) == 0

    def start(self, timeout: float = START_TIMEOUT) -> PrivatePgBouncer:
        if self.dir is None:
            self.dir = _own_dir("polysync-pgbouncer-")
        try:
            self._spawn(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> PrivatePgBouncer:
        return self.start()
