"""``PostgresServer``: the connections of one backend instance, its liveness session, its waits.

* **The idle pool.** Short statements, and every acquisition of a Lock or RLock, take a
  connection from a small pool of idle sessions (``pool_size``) and give it back; a
  session that holds a lock stays with its holder until the release (a session advisory
  lock belongs to its session). Server connections therefore grow with the holders and
  the blocked Lock waiters of a process (each waits in a session of its own, blocked in
  the server), plus one liveness session, plus at most ``pool_size`` idle ones.
* **The liveness session** (:class:`Liveness`): one connection per backend instance that
  ``LISTEN``\\ s on the schema's channel and whose backend pid and start time mark the
  rows this process records (permits, Condition waiters, Barrier parties, uses of
  anonymous objects): a row whose session is gone belongs to a process that is gone. Its
  thread wakes local waiters on ``NOTIFY`` (never a sleep loop), and watches the
  sockets of the sessions that hold locks, so that a holder whose session the server
  closed (a restart, ``pg_terminate_backend``, a network loss seen by TCP keepalives)
  learns it at once (``lost``).
* **Bounded answers.** Every statement runs with a client-side bound
  (:meth:`PostgresServer.execute`): one that blocks in the server, its own timeout and
  ``ANSWER_MARGIN``; any other, the ``answer_timeout`` option. A server that stops
  answering (frozen: its sockets stay open and its kernel answers keepalives) costs the
  caller that bound and a :class:`~polysync.BackendConnectionError`, never a hang; the
  session is closed, and the server releases what it held once it runs again.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import math
import os
import re
import select
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polysync import errors
from polysync.backends.postgres import connection as _connection
from polysync.backends.postgres import sql as _sql

if TYPE_CHECKING:
    import psycopg

__all__ = ["Liveness", "PostgresServer"]

#: Seconds between two looks of a waiter at what no NOTIFY announces: a permit holder,
#: a notified Condition waiter or a Barrier party that died (their session ended).
WATCH_SLICE = 1.0
#: Seconds a client waits for the server's answer past the server-side timeout.
ANSWER_MARGIN = 1.0
#: How long closing a backend waits for the server to forget its sessions' rows.
CLOSE_BOUND = 1.0
#: Seconds the liveness thread sleeps between two attempts to reconnect.
RECONNECT_PAUSE = 0.5
#: libpq keepalive settings added to a URL that sets none: a dead peer is seen in ~15 s.
KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
}

#: What each session asks of the server's side of its TCP connection (ignored on unix
#: sockets): a client silent for ~16 s is dropped, and what it held is released.
SERVER_KEEPALIVES = (
    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3"
)

Row = tuple[Any, ...]
_servers: weakref.WeakSet[PostgresServer] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for server in list(_servers):
        server._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class PostgresServer:
    """One backend instance's sessions on one server, schema and advisory classid."""

    def __init__(
        self, options: _connection.PostgresSettings, *, classid: int, pool_size: int
    ) -> None:
        self.options = _with_keepalives(options)
        self.where = options.where
        self.schema = options.schema
        self.classid = classid
        self.channel = _sql.channel(options.schema)
        self.pool_size = pool_size
        self.answer_timeout = options.answer_timeout
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._liveness: Liveness | None = None
        #: Who each session last recorded, in ``sessions``, that it acts for
        #: ("pid:host:thread"): a Lock's acquire writes it only when it changes.
        self.acting_for: weakref.WeakKeyDictionary[psycopg.Connection[Any], str] = (
            weakref.WeakKeyDictionary()
        )
        self._recorded: set[int] = set()  # backend pids whose sessions row is ours
        #: The statements prepared on each session (:meth:`value`).
        self._prepared: weakref.WeakKeyDictionary[psycopg.Connection[Any], set[bytes]] = (
            weakref.WeakKeyDictionary()
        )
        _servers.add(self)
        conn = self.connect()
        try:
            _connection.refuse_transaction_pooling(conn, self.options)
            self._install(conn)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        self.give(conn)

    # -- connections -----------------------------------------------------------------

    def connect(self, timeout: float | None = None) -> psycopg.Connection[Any]:
        """A new session (autocommit), set up to notice a client that went away.

        A caller with *timeout* seconds left waits at most that long (but libpq's
        minimum, 2 s) for the connection, not the whole ``connect_timeout``.
        """
        options = self.options
        if timeout is not None and timeout + ANSWER_MARGIN < options.connect_timeout:
            from dataclasses import replace

            bound = max(_connection.MIN_CONNECT_TIMEOUT, timeout + ANSWER_MARGIN)
            options = replace(options, connect_timeout=bound)
        conn = _connection.connect(options)
        with self.translated():
            # The server drops a client cut off silently (a partition) within ~16 s, a few
            # seconds after that client's own keepalives tell it (~11 s): a holder learns
            # it lost the lock before anyone else can be granted it.
            setup = SERVER_KEEPALIVES
            if conn.info.server_version >= 140000:
                # A session blocked in a lock wait notices a client that is gone.
                setup += "; SET client_connection_check_interval = 2000"
            conn.execute(setup.encode())
        return conn

    def _install(self, conn: psycopg.Connection[Any]) -> None:
        s = self.schema
        mark = f"polysync {_sql.SCHEMA_VERSION}"
        with self.translated():
            row = conn.execute(
                "SELECT obj_description(to_regnamespace(%s), 'pg_namespace')", (s,)
            ).fetchone()
            if row is not None and row[0] == mark:
                return
            with conn.transaction():
                conn.execute(_sql.install_script(s, self.classid).encode())
                conn.execute(f"COMMENT ON SCHEMA {s} IS '{mark}'".encode())

    def take(self, timeout: float | None = None) -> psycopg.Connection[Any]:
        """An idle session of the pool, or a new one (within *timeout*, see :meth:`connect`)."""
        self._check_fork()
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self.connect(timeout)
            if _alive(conn):
                return conn
            self.discard(conn)  # closed by the server (a restart): try the next one

    def give(self, conn: psycopg.Connection[Any]) -> None:
        """Give back a session that holds nothing."""
        if os.getpid() != self._pid:
            return  # a parent's session: never touch it
        usable = not conn.closed and not conn.broken and conn.info.transaction_status == 0
        with self._lock:
            if usable and len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        self.discard(conn)

    def discard(self, conn: psycopg.Connection[Any]) -> None:
        """Close a session (the server releases whatever it held)."""
        if os.getpid() == self._pid:
            with contextlib.suppress(Exception):
                conn.close()

    def _flush(self) -> None:
        """Drop the idle sessions (after a connection error: they are likely dead too)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            self.discard(conn)

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:
            self._forked()

    def _forked(self) -> None:
        """In a child: the parent's sessions are the parent's; start afresh, closing none."""
        if os.getpid() == self._pid:
            return
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._idle = []  # psycopg never finishes a connection of another process
        parents, self._liveness = self._liveness, None
        if parents is not None:
            parents.forsake()
        self.acting_for = weakref.WeakKeyDictionary()
        self._recorded = set()
        self._prepared = weakref.WeakKeyDictionary()

    def recorded(self, conn: psycopg.Connection[Any], who: str) -> None:
        """*conn*'s session wrote, in ``sessions``, that it acts for *who*."""
        self.acting_for[conn] = who
        self._recorded.add(conn.info.backend_pid)

    def close(self) -> None:
        """Close the idle sessions and the liveness session (held ones stay), removing
        the ``sessions`` rows this process wrote (else the next clean exit of any
        process sweeps them: see ``forget``)."""
        recorded, self._recorded = self._recorded, set()
        if recorded and os.getpid() == self._pid:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is not None:
                with contextlib.suppress(Exception):  # a courtesy: gc sweeps them too
                    self.execute(
                        conn,
                        f"DELETE FROM {self.schema}.sessions WHERE pid = ANY(%s)",
                        (sorted(recorded),),
                        min(self.answer_timeout, CLOSE_BOUND),
                    )
                self.discard(conn)
        self._flush()
        liveness, self._liveness = self._liveness, None
        if liveness is not None:
            liveness.stop()

    # -- statements -------------------------------------------------------------------

    @contextlib.contextmanager
    def translated(self) -> Iterator[None]:
        """psycopg's errors as polysync's; a connection error also drops the idle pool."""
        try:
            with _connection.translated(self.where):
                yield
        except errors.BackendConnectionError:
            self._flush()
            raise

    def execute(
        self,
        conn: psycopg.Connection[Any],
        sql: str | bytes,
        params: Sequence[object],
        limit: float | None,
    ) -> psycopg.Cursor[Any]:
        """Run *sql* on *conn*, waiting at most *limit* seconds (``None``: as long as the
        server takes) for its answer: its cursor, to read the rows from.

        Past *limit*, *conn* is closed and :class:`~polysync.BackendConnectionError`
        raised. Errors are translated as :meth:`translated` does, without its context
        managers (a few microseconds of each acquire and release). Ctrl-C cancels the
        statement in the server (psycopg does) and propagates. psycopg before 3.2 has
        no bounded wait: the server's bounds only.
        """
        statement = sql.encode() if isinstance(sql, str) else sql
        overrun = _wait_timeout()
        try:
            if limit is None or overrun is None:
                return conn.execute(statement, params)
            cur: Any = conn.cursor()
            with conn.lock:
                conn.wait(cur._execute_gen(statement, params), timeout=limit)
            cursor: psycopg.Cursor[Any] = cur
            return cursor
        except Exception as exc:
            raise self._failed(conn, exc, limit, overrun) from exc

    def _failed(
        self,
        conn: psycopg.Connection[Any],
        exc: Exception,
        limit: float | None,
        overrun: type[BaseException] | None,
    ) -> Exception:
        """What a statement on *conn* that raised *exc* raises instead (see :meth:`execute`)."""
        if overrun is not None and isinstance(exc, overrun):
            self.discard(conn)
            return errors.server_unreachable(
                "PostgreSQL", self.where, f"no answer within {limit:g} s"
            )
        if isinstance(exc, _connection._psycopg().Error):
            error = _connection.translate(exc, self.where)
            if isinstance(error, errors.BackendConnectionError):
                self._flush()
            return error
        return exc

    def value(
        self,
        conn: psycopg.Connection[Any],
        statement: Prepared,
        params: Sequence[int | str | None],
        limit: float | None,
    ) -> bytes | None:
        """The first column of the first row of *statement* run on *conn*, as the text
        the server sent (``None``: NULL, or no row), bounded as :meth:`execute` is.

        The statement is prepared once per session and run through psycopg's libpq
        layer (``psycopg.pq``), without a cursor: a Lock's acquire and release are one
        such statement each, and psycopg's cursor layer would cost more client time
        than the whole round trip's client side (callgrind: 29,000 instructions per
        pair of prepared calls; 150,000 for a pair of ``conn.execute``).
        """
        overrun = _wait_timeout()
        if overrun is None:  # psycopg 3.1: no bounded wait; the cursor path
            row = self.first_row(conn, statement.cursor_text, params, limit)
            found = None if row is None else row[0]
            if found is None:
                return None
            if isinstance(found, bool):
                return b"t" if found else b"f"
            return str(found).encode()
        generators = _generators()
        pgconn = conn.pgconn
        sent = [None if p is None else str(p).encode() for p in params]
        try:
            with conn.lock:
                prepared = self._prepared.get(conn)
                if prepared is None:
                    prepared = self._prepared[conn] = set()
                if statement.name not in prepared:
                    pgconn.send_prepare(statement.name, statement.text)
                    _result(conn.wait(generators.execute(pgconn), timeout=limit), conn)
                    prepared.add(statement.name)
                pgconn.send_query_prepared(statement.name, sent)
                result = _result(conn.wait(generators.execute(pgconn), timeout=limit), conn)
        except Exception as exc:
            raise self._failed(conn, exc, limit, overrun) from exc
        if result.ntuples == 0:
            return None
        text: bytes | None = result.get_value(0, 0)
        return text

    def first_row(
        self,
        conn: psycopg.Connection[Any],
        sql: str | bytes,
        params: Sequence[object],
        limit: float | None,
    ) -> Row | None:
        """:meth:`execute`'s first row (``None``: no row)."""
        cur = self.execute(conn, sql, params, limit)
        row: Row | None = cur.fetchone() if cur.description is not None else None
        return row

    def query(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        """Run *sql* on an idle session: its first row (``None``: no row)."""
        conn = self.take()
        try:
            row = self.first_row(conn, sql, params, self.answer_timeout)
        except BaseException:
            self.discard(conn)
            raise
        self.give(conn)
        return row

    def query_all(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        """Run *sql* on an idle session: all its rows."""
        conn = self.take()
        try:
            cur = self.execute(conn, sql, params, self.answer_timeout)
            with self.translated():
                rows = cur.fetchall() if cur.description is not None else []
        except BaseException:
            self.discard(conn)
            raise
        self.give(conn)
        return rows

    # -- the liveness session ----------------------------------------------------------

    @property
    def liveness(self) -> Liveness:
        """The liveness session of this process (started on first use)."""
        self._check_fork()
        live = self._liveness
        if live is None:
            with self._lock:
                live = self._liveness
                if live is None:
                    live = self._liveness = Liveness(self)
                    weakref.finalize(self, live.stop)
        return live

    def unwatch(self, conn: psycopg.Connection[Any]) -> None:
        """Stop watching the holder session *conn* (never starting a liveness session)."""
        live = self._liveness
        if live is not None:
            live.unwatch(conn)

    def identity(self) -> tuple[int, datetime.datetime]:
        """(backend pid, start) of this process's liveness session: what marks its rows."""
        return self.liveness.identity()


class Liveness:
    """The liveness session: ``LISTEN``, wake-ups of local waiters, watched holder sessions."""

    def __init__(self, server: PostgresServer) -> None:
        # Weakly: a backend nobody uses any more is collected, and its finalizer stops
        # this thread (which would otherwise keep it, and its sessions, alive).
        self._server_ref = weakref.ref(server)
        self._where = server.where
        self._mutex = threading.Lock()
        self._waiters: dict[int, set[threading.Event]] = {}
        #: The holder sessions watched, by id: each with its on_lost and, where there is
        #: an epoll set, the descriptor registered in it.
        self._watched: dict[
            int, tuple[psycopg.Connection[Any], Callable[[], object], int | None]
        ] = {}
        # Where the kernel has one (Linux), the watched sockets are in an epoll set that
        # any thread changes at once, and the thread selects on the epoll's own fd: a
        # released session's answers (the release's own, then the next acquirer's) do
        # not wake this thread, as they would a select() already under way on its socket.
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        self._conn: psycopg.Connection[Any] | None = None
        self._identity: tuple[int, datetime.datetime] | None = None
        #: Identities of this process's liveness sessions that ended, whose rows the
        #: next session claims (``claim``).
        self._replaced: list[tuple[int, datetime.datetime]] = []
        self._error: errors.PolysyncError | None = None
        self._stopped = False
        self._reconnecting = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._connect()
        self._thread = threading.Thread(
            target=self._run, name="polysync-postgres-liveness", daemon=True
        )
        self._thread.start()

    @property
    def _server(self) -> PostgresServer:
        server = self._server_ref()
        if server is None:
            self._stopped = True
            raise errors.server_unreachable("PostgreSQL", self._where, "the backend is gone")
        return server

    def _discard(self, conn: psycopg.Connection[Any]) -> None:
        server = self._server_ref()
        if server is not None:
            server.discard(conn)
        else:
            with contextlib.suppress(Exception):
                conn.close()

    def _connect(self) -> None:
        server = self._server
        conn = server.connect()
        try:
            server.execute(conn, f'LISTEN "{server.channel}"', (), server.answer_timeout)
            row = server.first_row(
                conn,
                "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()",
                (),
                server.answer_timeout,
            )
        except BaseException:
            server.discard(conn)
            raise
        assert row is not None
        identity = (int(row[0]), row[1])
        try:
            for old in self._replaced:  # this process's rows, marked by a session now gone
                server.execute(
                    conn,
                    f"SELECT {server.schema}.claim(%s, %s, %s, %s)",
                    (*old, *identity),
                    server.answer_timeout,
                )
        except BaseException:
            server.discard(conn)
            raise
        self._replaced = []
        self._conn = conn
        self._identity = identity
        self._error = None

    def identity(self) -> tuple[int, datetime.datetime]:
        ident = self._identity
        if ident is None:
            raise self._error or errors.server_unreachable(
                "PostgreSQL", self._where, "the liveness session is reconnecting"
            )
        return ident

    # -- waiters -------------------------------------------------------------------------

    def subscribe(self, oid: int) -> threading.Event:
        """An Event set by the next NOTIFY about object *oid* (or a reconnection)."""
        event = threading.Event()
        with self._mutex:
            self._waiters.setdefault(oid, set()).add(event)
        return event

    def unsubscribe(self, oid: int, event: threading.Event) -> None:
        with self._mutex:
            found = self._waiters.get(oid)
            if found is not None:
                found.discard(event)
                if not found:
                    del self._waiters[oid]

    def _wake(self, oid: int | None) -> None:
        with self._mutex:
            if oid is None:
                events = [e for group in self._waiters.values() for e in group]
            else:
                events = list(self._waiters.get(oid, ()))
        for event in events:
            event.set()

    # -- watched holder sessions -------------------------------------------------------

    def watch(self, conn: psycopg.Connection[Any], on_lost: Callable[[], object]) -> None:
        """Call *on_lost* (from this thread) if the server closes *conn* while it holds."""
        with self._mutex:
            epoll = self._epoll
            fd: int | None = None
            if epoll is not None:
                with contextlib.suppress(Exception):  # closed: the next look finds it gone
                    fd = conn.pgconn.socket
            self._watched[id(conn)] = (conn, on_lost, fd)
            if epoll is None or fd is None:
                return
            try:
                epoll.register(fd, select.EPOLLIN)
            except FileExistsError:
                epoll.modify(fd, select.EPOLLIN)
            except (OSError, ValueError):
                pass  # stopped (its epoll closed): nothing is watched any more

    def unwatch(self, conn: psycopg.Connection[Any]) -> None:
        with self._mutex:
            _, _, fd = self._watched.pop(id(conn), (None, None, None))
            if fd is None or self._epoll is None:
                return
            try:
                still = conn.pgconn.socket == fd
            except Exception:
                still = False
            if still:  # else libpq closed it: gone from the set, and its number reusable
                with contextlib.suppress(OSError, ValueError):
                    self._epoll.unregister(fd)

    def _check_watched(self, ready: list[int]) -> None:
        with self._mutex:
            watched = list(self._watched.values())
        for conn, on_lost, _ in watched:
            try:
                fd = conn.pgconn.socket
            except Exception:
                fd = -1
            if fd != -1 and fd not in ready:
                continue
            if not conn.lock.acquire(blocking=False):
                continue  # a statement is running on it: it will hear of it itself
            try:
                with self._mutex:
                    if self._watched.get(id(conn), (None,))[0] is not conn:
                        continue
                gone = fd == -1 or conn.closed
                if not gone:
                    try:
                        conn.pgconn.consume_input()
                    except Exception:
                        gone = True
                    gone = gone or conn.pgconn.status != 0
            finally:
                conn.lock.release()
            if gone:
                self.unwatch(conn)
                with contextlib.suppress(Exception):
                    on_lost()

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped:
            conn = self._conn
            if conn is None:
                # In a thread of its own: a reconnect can take connect_timeout (a
                # partition), and the holders' sessions must be watched meanwhile.
                self._start_reconnect()
            with self._mutex:
                watched = [c for c, _, _ in self._watched.values()]
            fds = [self._wake_r]
            if conn is not None:
                try:
                    fds.append(conn.pgconn.socket)
                except Exception:
                    self._lost_session(None)
                    continue
            epoll = self._epoll
            if epoll is not None:
                fds.append(epoll.fileno())
            else:
                for held in watched:
                    with contextlib.suppress(Exception):
                        fds.append(held.pgconn.socket)
            try:
                ready, _, _ = select.select(fds, [], [], WATCH_SLICE)
            except (OSError, ValueError):
                ready = list(fds)  # a socket closed meanwhile: look at each
            if self._stopped:
                break
            if epoll is not None and epoll.fileno() in ready:
                with contextlib.suppress(OSError):
                    ready = ready + [fd for fd, _ in epoll.poll(0)]
            if self._wake_r in ready:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 4096)
            if watched:
                self._check_watched(ready)
            if conn is None:
                continue
            try:
                own = conn.pgconn.socket
            except Exception:
                own = -1
            if own in ready or own == -1:
                self._consume(conn)
        self._close_all()

    def _consume(self, conn: psycopg.Connection[Any]) -> None:
        try:
            with conn.lock:
                conn.pgconn.consume_input()
                if conn.pgconn.status != 0:
                    raise OSError("connection closed")
                while True:
                    notify = conn.pgconn.notifies()
                    if notify is None:
                        break
                    try:
                        oid: int | None = int(notify.extra)
                    except ValueError:
                        oid = None
                    self._wake(oid)
        except Exception as exc:
            self._lost_session(exc)

    def _lost_session(self, exc: Exception | None) -> None:
        conn, self._conn = self._conn, None
        if self._identity is not None:
            self._replaced.append(self._identity)
        self._identity = None
        self._error = errors.server_unreachable(
            "PostgreSQL",
            self._where,
            f"the liveness session was closed ({_connection.mask(str(exc or 'closed'))})",
        )
        if conn is not None:
            self._discard(conn)
        self._wake(None)  # every waiter looks again (and hears of the error)

    def _start_reconnect(self) -> None:
        """Start one reconnecting thread, unless one is under way."""
        with self._mutex:
            if self._reconnecting:
                return
            self._reconnecting = True
        threading.Thread(
            target=self._reconnect, name="polysync-postgres-reconnect", daemon=True
        ).start()

    def _reconnect(self) -> None:
        try:
            self._connect()
        except Exception:
            if not self._stopped:  # the backend is gone otherwise
                time.sleep(RECONNECT_PAUSE)
        else:
            if self._stopped:  # stopped meanwhile: this session is nobody's
                conn, self._conn = self._conn, None
                if conn is not None:
                    self._discard(conn)
            self._wake(None)  # notifications may have been missed meanwhile
        finally:
            with self._mutex:
                self._reconnecting = False
            if not self._stopped:
                with contextlib.suppress(OSError):
                    os.write(self._wake_w, b"x")  # the watch loop looks again

    def forsake(self) -> None:
        """In a forked child: close the descriptors this parent's liveness gave it (its
        wake pipe and epoll set), and nothing of its sessions, which are the parent's."""
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._epoll is not None:
            self._epoll.close()

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _close_all(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._discard(conn)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._epoll is not None:
            with self._mutex:
                self._epoll.close()


@dataclass(frozen=True)
class Prepared:
    """A statement that :meth:`PostgresServer.value` prepares once per session, as
    *name*: *text* with ``$1``-style parameters, *cursor_text* the same with ``%s``."""

    name: bytes
    text: bytes

    @property
    def cursor_text(self) -> bytes:
        return re.sub(rb"\$\d+", b"%s", self.text)


@functools.cache
def _generators() -> Any:
    """psycopg's generators module (what ``Connection.wait`` consumes), imported once."""
    from psycopg import generators

    return generators


@functools.cache
def _succeeded() -> frozenset[int]:
    """The ``PGresult`` statuses of a statement that succeeded."""
    status = _connection._psycopg().pq.ExecStatus
    return frozenset({status.TUPLES_OK, status.COMMAND_OK})


def _result(results: list[Any], conn: psycopg.Connection[Any]) -> Any:
    """The last result of a statement (psycopg's ``PGresult``), raising its error."""
    result = results[-1]
    if result.status not in _succeeded():
        pg = _connection._psycopg()
        raise pg.errors.error_from_result(result, encoding=conn.info.encoding)
    return result


def _alive(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle session is still open: a server that closed it (a restart, an
    administrator) left it readable, with an error message and the end of the stream."""
    if conn.closed or conn.broken:
        return False
    try:
        fd = conn.pgconn.socket
        ready, _, _ = select.select([fd], [], [], 0)
        if ready:
            conn.pgconn.consume_input()
    except Exception:
        return False
    return bool(conn.pgconn.status == 0)


def _with_keepalives(options: _connection.PostgresSettings) -> _connection.PostgresSettings:
    """*options* whose URL asks libpq for TCP keepalives, unless it sets them itself."""
    from dataclasses import replace

    from psycopg import conninfo as _conninfo

    given = _conninfo.conninfo_to_dict(options.conninfo)
    extra = {k: v for k, v in KEEPALIVES.items() if k not in given}
    if not extra:
        return options
    return replace(options, conninfo=_conninfo.make_conninfo(options.conninfo, **extra))


_WAIT_TIMEOUT: list[type[BaseException] | None] = []


def _wait_timeout() -> type[BaseException] | None:
    """psycopg's error for a wait past its timeout (3.2+), looked up once."""
    if not _WAIT_TIMEOUT:
        _WAIT_TIMEOUT.append(getattr(_connection._psycopg().errors, "_WaitTimeout", None))
    return _WAIT_TIMEOUT[0]


def milliseconds(timeout: float) -> int:
    """A timeout in whole milliseconds, at least 1 (the server's lock_timeout unit)."""
    return max(1, math.ceil(timeout * 1000))
