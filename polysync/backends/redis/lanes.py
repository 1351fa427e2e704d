"""One connection per thread for the hot commands, bypassing redis-py's per-command layers.

Each thread that runs an operation gets a connection of its own, built from the client's
pool settings but kept outside the pool: not borrowed, so it never competes with the
pool's users, and not counted, so threads that come and go never exhaust the pool's
``max_connections`` (redis-py 8 defaults it to 100). It is closed when its thread ends.
Commands are packed, sent and read directly, and a script plus a BLPOP go out together.
Any error other than a server reply drops the connection (it may be half-way through a
reply) and the next command makes a fresh one. Redis Cluster clients have no single
pool: there the backend goes through the client as usual.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable
from typing import Any

import redis.exceptions

from polysync import derived

_log = logging.getLogger(__name__)


def _stale(conn: Any) -> bool:
    """An idle connection with something to read has been closed (or reset) by the server."""
    sock = getattr(conn, "_sock", None)
    if sock is None:
        return False
    try:
        if hasattr(select, "poll"):  # select() cannot watch descriptors past FD_SETSIZE
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


#: Errors of a server that stopped being a master under us: as a replica it refuses
#: writes, and when it became one it answered blocked BLPOPs with "UNBLOCKED ...".
_DEMOTED_ERRORS = (redis.exceptions.ReadOnlyError, redis.exceptions.MasterDownError)


def server_demoted(reply: object) -> bool:
    """Whether *reply* says the server is no longer a master (a failover happened)."""
    return isinstance(reply, _DEMOTED_ERRORS) or (
        isinstance(reply, redis.exceptions.ResponseError) and str(reply).startswith("UNBLOCKED")
    )


class _Lane:
    """One thread's connection; closed as soon as its thread ends, not when the GC runs."""

    __slots__ = ("conn", "pid")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.pid = derived.current_pid()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            # try/except, not contextlib.suppress: at interpreter exit __del__ may run after
            # module globals are cleared.
            try:  # noqa: SIM105
                conn.disconnect()  # redis-py shuts the socket down only in its own process
            except Exception:  # already broken: nothing more to release
                pass

    def __del__(self) -> None:
        self.close()


class Lanes:
    def __init__(self, client: Any, handshake_timeout: float) -> None:
        pool: Any = getattr(client, "connection_pool", None)
        usable = hasattr(pool, "connection_class") and hasattr(pool, "connection_kwargs")
        self._pool = pool if usable else None
        # A lane's own socket timeout only bounds its handshake (redis-py sends commands
        # of its own on connect): every exchange sets the timeout it needs.
        self._kwargs = (
            {**pool.connection_kwargs, "socket_timeout": handshake_timeout} if usable else {}
        )
        # Connecting is bounded too, by this or by the exchange's own timeout if shorter:
        # redis-py 8 would wait 5 s for a connect that a network partition swallows.
        self._connect_timeout = float(
            self._kwargs.get("socket_connect_timeout") or handshake_timeout
        )
        self._local = threading.local()

    @property
    def available(self) -> bool:
        return self._pool is not None

    def _connection(self, timeout: float) -> Any:
        lane: _Lane | None = getattr(self._local, "lane", None)
        if lane is not None and lane.conn is not None:
            conn = lane.conn
            if lane.pid == derived.current_pid() and conn._sock is not None and not _stale(conn):
                return conn
            if lane.pid == derived.current_pid():
                self._local.dropped = "the server closed it while idle (a restart?)"
            lane.close()  # a forked child's copy, or closed by the server (a restart) while idle
        assert self._pool is not None
        # A new connection (after a drop: a timeout, a restart) within the exchange's
        # timeout, handshake included: a caller's timeout holds across a reconnect.
        kwargs = dict(self._kwargs)
        kwargs["socket_connect_timeout"] = min(self._connect_timeout, timeout)
        kwargs["socket_timeout"] = min(float(kwargs["socket_timeout"]), timeout)
        conn = self._pool.connection_class(**kwargs)
        # Connected here, through the class's own connect(): a Sentinel-managed connection
        # asks the sentinels for the master there. Left to connect lazily on its first
        # command, it would go to its default address instead.
        conn.connect()
        dropped = getattr(self._local, "dropped", None)
        if dropped is not None:
            self._local.dropped = None
            _log.info("reconnected to redis at %s (%s)", self._address(conn), dropped)
        self._local.lane = _Lane(conn)
        return conn

    @staticmethod
    def _address(conn: Any) -> str:
        host, port = getattr(conn, "host", None), getattr(conn, "port", None)
        return f"{host}:{port}" if host is not None else getattr(conn, "path", "?")

    def _drop(self, reason: str = "an exchange with it failed") -> None:
        lane: _Lane | None = getattr(self._local, "lane", None)
        if lane is not None:
            if lane.conn is not None:
                self._local.dropped = reason
            lane.close()

    def execute(
        self,
        *commands: tuple[Any, ...],
        timeout: float,
        on_reply: Callable[[int, Any], object] | None = None,
    ) -> list[Any]:
        """Send *commands* in one write and read their replies; a server error is returned
        in place of its reply (so every reply is read), anything else is raised.

        *timeout* bounds each socket operation of this exchange: a server that stops
        answering raises redis-py's ``TimeoutError`` instead of holding the caller.
        *on_reply* is called with each reply's index and the reply as soon as it is read,
        before the next one is waited for (a blocking command behind it may be woken).
        """
        conn = self._connection(timeout)
        conn._sock.settimeout(timeout)
        try:
            if len(commands) == 1:
                conn.send_command(*commands[0])
            else:
                conn.send_packed_command(conn.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    reply = conn.read_response()
                except redis.exceptions.ResponseError as exc:
                    if server_demoted(exc):
                        # It points at a replica now: drop it (and a BLPOP queued behind)
                        # at once; the next command finds the master.
                        _log.warning(
                            "failover: the redis server at %s is no longer a master; the "
                            "next command finds the new one",
                            self._address(conn),
                        )
                        self._drop("the server was demoted to a replica (a failover)")
                        return replies + [exc] * (len(commands) - len(replies))
                    reply = exc
                if on_reply is not None:
                    on_reply(len(replies), reply)
                replies.append(reply)
            return replies
        except BaseException:
            self._drop()
            raise
