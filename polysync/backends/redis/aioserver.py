"""The redis exchanges of native asyncio waits: redis.asyncio connections per event loop.

:class:`AsyncServer` is :class:`~polysync.backends.redis.server.RedisServer`'s twin for
coroutines: the same scripts (by their SHA, loaded with ``EVAL`` when the server lacks
them), the same bounds on every exchange, the same error translation. Each event loop
gets connections of its own (a redis.asyncio connection belongs to the loop that opened
it), built from the sync client's pool settings; a connection is borrowed for one
exchange and kept for the next, and those a loop leaves idle are closed when
``asyncio.run`` (or anything else calling ``loop.shutdown_asyncgens()``) ends it. Any
error other than a server reply, a timeout or a cancellation included, drops the
connection (it may be half-way through a reply). Only plain, TLS and Unix-socket
clients have such settings: Cluster and Sentinel clients get no AsyncServer, and their
kernels wait in polysync.aio's threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import select
import sys
import threading
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio.connection as _aconnection
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from polysync.backends.redis.server import CLEANUP_TIMEOUT, READ_SLACK, text
from polysync.errors import PolysyncError

if sys.version_info >= (3, 11):
    from asyncio import timeout as _within
else:  # redis-py depends on async-timeout below 3.11.3
    from async_timeout import timeout as _within

if TYPE_CHECKING:
    from polysync.backends.redis.server import RedisServer

__all__ = ["AsyncServer"]

#: The sync connection classes that have a redis.asyncio twin (Sentinel's do not).
_TWINS: dict[type, type] = {
    redis.Connection: _aconnection.Connection,
    redis.SSLConnection: _aconnection.SSLConnection,
    redis.UnixDomainSocketConnection: _aconnection.UnixDomainSocketConnection,
}
#: Pool settings a twin takes as they are; anything else (a sync retry, credential
#: provider, cache) is the sync client's own.
_CARRIED = frozenset(
    {
        "host",
        "port",
        "path",
        "db",
        "username",
        "password",
        "client_name",
        "protocol",
        "encoding",
        "encoding_errors",
        "decode_responses",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_keepalive_options",
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_check_hostname",
        "lib_name",
        "lib_version",
    }
)
#: Idle connections a loop keeps (one per handle waiting at once is the common need).
_IDLE_KEPT = 32


def _closed(conn: Any) -> bool:
    """Whether *conn* was dropped, or closed by the server while idle (a restart).

    An idle connection has nothing to read: anything there (end of file, a reset) means
    the server closed it, perhaps while the loop was busy and has not read it yet.
    """
    reader, writer = getattr(conn, "_reader", None), getattr(conn, "_writer", None)
    if reader is None or writer is None or reader.at_eof() or getattr(reader, "_buffer", b""):
        return True
    sock = writer.get_extra_info("socket")
    if sock is None:
        return False
    try:
        if hasattr(select, "poll"):  # select() cannot watch descriptors past FD_SETSIZE
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock.fileno()], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _close_now(conn: Any) -> None:
    """Close *conn* without awaiting (it may be half-way through an exchange)."""
    writer = getattr(conn, "_writer", None)
    if writer is not None:
        with contextlib.suppress(Exception):
            writer.close()
    conn._writer = conn._reader = None


class _Loop:
    """One event loop's idle connections."""

    __slots__ = ("closer", "idle")

    def __init__(self) -> None:
        self.idle: list[Any] = []
        self.closer: AsyncIterator[None] | None = None


async def _close_at_shutdown(state: _Loop) -> AsyncIterator[None]:
    """Held open per loop: the loop's ``shutdown_asyncgens()`` closes what it left idle."""
    try:
        yield
    finally:
        idle, state.idle = state.idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.disconnect()


class AsyncServer:
    """Coroutine exchanges with the server behind *server* (see the module docstring)."""

    def __init__(self, server: RedisServer, connection_class: type, kwargs: dict[str, Any]):
        self._server = server
        self._class = connection_class
        self._kwargs = kwargs
        self._connect_timeout = float(kwargs.get("socket_connect_timeout") or CLEANUP_TIMEOUT)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Loop] = (
            weakref.WeakKeyDictionary()
        )
        self._loops_lock = threading.Lock()

    @classmethod
    def for_server(cls, server: RedisServer) -> AsyncServer | None:
        """The async twin of *server*'s client, or ``None`` (Cluster, Sentinel, custom)."""
        pool: Any = getattr(server.client, "connection_pool", None)
        twin = _TWINS.get(getattr(pool, "connection_class", None))  # type: ignore[arg-type]
        kwargs = getattr(pool, "connection_kwargs", None)
        if twin is None or not isinstance(kwargs, dict):
            return None
        carried = {k: v for k, v in kwargs.items() if k in _CARRIED}
        # No socket timeout: each exchange, the handshake of a new connection included,
        # is bounded as a whole (execute). With one, redis-py would also run every write
        # in a task of its own (asyncio.wait_for).
        carried["socket_timeout"] = None
        carried["retry"] = Retry(NoBackoff(), 0)  # a retry would outlast the caller's bound
        return cls(server, twin, carried)

    # -- connections ----------------------------------------------------------------------

    async def _loop_state(self) -> _Loop:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is not None:
            return state
        with self._loops_lock:
            state = self._loops.get(loop)
            if state is None:
                state = self._loops[loop] = _Loop()
                fresh = True
            else:
                fresh = False
        if fresh:
            closer = _close_at_shutdown(state)
            await closer.__anext__()  # started on this loop: the loop now tracks it
            state.closer = closer
        return state

    async def _borrow(self, state: _Loop, limit: float) -> Any:
        while state.idle:
            conn = state.idle.pop()
            if not _closed(conn):
                return conn
            _close_now(conn)
        kwargs = dict(self._kwargs)
        kwargs["socket_connect_timeout"] = min(self._connect_timeout, limit)
        conn = self._class(**kwargs)
        await conn.connect()
        return conn

    @staticmethod
    def _give_back(state: _Loop, conn: Any) -> None:
        if len(state.idle) < _IDLE_KEPT:
            state.idle.append(conn)
        else:
            _close_now(conn)

    # -- exchanges --------------------------------------------------------------------------

    async def execute(
        self, *commands: tuple[Any, ...], limit: float, stop_if_missing: bool = False
    ) -> list[Any]:
        """Send *commands* in one write and read their replies within *limit* seconds,
        connecting included; a server error is returned in place of its reply, anything
        else (a timeout: redis-py's ``TimeoutError``) raised, the connection dropped.

        With *stop_if_missing*, a first reply saying the script is missing ends the
        exchange (the rest read as ``None``): the blocking pop behind it would wait its
        whole slice for nothing, and goes with its connection.
        """
        state = await self._loop_state()
        conn: Any = None
        try:
            async with _within(limit):
                conn = await self._borrow(state, limit)
                await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                replies: list[Any] = []
                for _ in commands:
                    try:
                        reply = await conn.read_response(timeout=math.inf)
                    except redis.exceptions.ResponseError as exc:
                        reply = exc
                    replies.append(reply)
                    if stop_if_missing and isinstance(reply, redis.exceptions.NoScriptError):
                        _close_now(conn)
                        return replies + [None] * (len(commands) - len(replies))
        except BaseException as exc:
            if conn is not None:
                _close_now(conn)
            if isinstance(exc, asyncio.TimeoutError):
                raise redis.exceptions.TimeoutError(
                    f"no reply within {limit:g} s (a frozen server?)"
                ) from exc
            raise
        self._give_back(state, conn)
        return replies

    def _translated(self, exc: redis.exceptions.RedisError | OSError) -> PolysyncError:
        """*exc* of an exchange as polysync's error (as the sync server translates it)."""
        return self._server.translate(
            exc if isinstance(exc, redis.exceptions.RedisError) else _unreachable(exc)
        )

    async def run(
        self,
        script: str,
        keys: list[str],
        args: list[Any],
        timeout: float | None = None,
        *,
        exact: bool = False,
    ) -> Any:
        """``RedisServer.run``, awaited."""
        registered = self._server._script(script)
        limit = self._server.limit(timeout, exact)
        try:
            (reply,) = await self.execute(
                ("EVALSHA", registered.sha, len(keys), *keys, *args), limit=limit
            )
            if isinstance(reply, redis.exceptions.NoScriptError):
                (reply,) = await self.execute(
                    ("EVAL", registered.script, len(keys), *keys, *args), limit=limit
                )
            if isinstance(reply, redis.exceptions.ResponseError):
                raise reply
            return reply
        except (redis.exceptions.RedisError, OSError) as exc:
            raise self._translated(exc) from exc

    async def run_then_pop(
        self, script: str, keys: list[str], before: list[Any] | None, key: str, step: float
    ) -> tuple[Any, str | None]:
        """``RedisServer.run_then_pop``, awaited: *script* with *before* (if any) and a
        BLPOP of *key* for at most *step* seconds, in one round trip; the script's reply
        and the popped message or ``None``."""
        step = max(0.001, step)  # 0 would be forever
        registered = self._server._script(script)
        n = len(keys)
        commands: list[tuple[Any, ...]] = []
        if before is not None:
            commands.append(("EVALSHA", registered.sha, n, *keys, *before))
        commands.append(("BLPOP", key, step))
        limit = step + READ_SLACK
        try:
            if before is not None:
                replies = await self.execute(*commands, limit=limit, stop_if_missing=True)
                if isinstance(replies[0], redis.exceptions.NoScriptError):
                    # The script did not run, so nothing queued the caller: nothing can
                    # be pushed to *key*, and the BLPOP (dropped with its connection)
                    # lost nothing. Sent again with the body, which loads it.
                    commands[0] = ("EVAL", registered.script, n, *keys, *before)
                    replies = await self.execute(*commands, limit=limit)
            else:
                replies = await self.execute(*commands, limit=limit)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise self._translated(exc) from exc
        for reply in replies:
            if isinstance(reply, redis.exceptions.ResponseError):
                raise self._server.translate(reply) from reply
        first = replies[0] if before is not None else None
        found = replies[-1]
        return first, None if found is None else text(found[1])


def _unreachable(exc: OSError) -> redis.exceptions.ConnectionError:
    return redis.exceptions.ConnectionError(str(exc) or type(exc).__name__)
