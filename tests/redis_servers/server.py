"""One private Redis server, :class:`RedisServer`: ACL and unix socket options, kill/restart."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

from .processes import (
    START_TIMEOUT,
    RedisSupportError,
    _Managed,
    _port_free,
    _require,
    free_port,
    wait_for,
)
from .resp import HOST, RespConnection, RespError, parse_info


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
