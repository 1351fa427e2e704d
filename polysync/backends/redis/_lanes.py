"""One connection per thread for the hot commands, bypassing redis-py's per-command layers.

Each thread that runs an operation gets a connection of its own from the client's pool
(made, not borrowed, so it never competes with the pool's users) and keeps it: commands
are packed, sent and read directly, and a script plus a BLPOP go out together. Any error
other than a server reply drops the connection (it may be half-way through a reply) and
the next command makes a fresh one. Redis Cluster clients have no single pool: there the
backend goes through the client as usual.
"""

from __future__ import annotations

import contextlib
import select
import threading
from typing import Any

import redis.exceptions

from polysync import _derived


def _stale(conn: Any) -> bool:
    """An idle connection with something to read has been closed (or reset) by the server."""
    sock = getattr(conn, "_sock", None)
    if sock is None:
        return False
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


class Lanes:
    def __init__(self, client: Any) -> None:
        pool = getattr(client, "connection_pool", None)
        self._pool = pool if hasattr(pool, "make_connection") else None
        self._local = threading.local()

    @property
    def available(self) -> bool:
        return self._pool is not None

    def _connection(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is not None and (local.pid != _derived.current_pid() or _stale(conn)):
            self._drop()  # a forked child's copy, or closed by the server (a restart) while idle
            conn = None
        if conn is None:
            assert self._pool is not None
            conn = local.conn = self._pool.make_connection()
            local.pid = _derived.current_pid()
        return conn

    def _drop(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken: nothing more to release
                conn.disconnect()

    def execute(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send *commands* in one write and read their replies; a server error is returned
        in place of its reply (so every reply is read), anything else is raised."""
        conn = self._connection()
        try:
            if len(commands) == 1:
                conn.send_command(*commands[0])
            else:
                conn.send_packed_command(conn.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except redis.exceptions.ResponseError as exc:
                    replies.append(exc)
            return replies
        except BaseException:
            self._drop()
            raise
