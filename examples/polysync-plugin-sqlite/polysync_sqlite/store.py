"""The database file: its schema, one connection per thread and process, retries while locked.

Every process of the host opens the same file. SQLite lets one writer at a time hold the
file's write lock; this module never lets SQLite wait for that lock itself (its busy
timeout is 0) but retries in Python, sleeping a little longer each time, so a wait for
the lock stays interruptible (Ctrl-C) and a timed acquire can give up at its deadline.
Every ``sqlite3.Error`` leaves this module as a polysync error, with the original chained.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from polysync.derived.liveness import current_pid
from polysync.errors import BackendError, PolysyncError

__all__ = ["LOCKED_LIMIT", "Store", "store_for"]

T = TypeVar("T")

#: Seconds an operation keeps retrying while other connections hold the write lock.
LOCKED_LIMIT = 30.0
_FIRST_PAUSE = 0.0005
_MAX_PAUSE = 0.01
_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (extended codes keep them in the low byte)

#: ``objects`` holds every stored object under its flat name (``str(ObjectName)``): a
#: semaphore's count is ``value``, a block's length is ``size``. Ids are never reused
#: (AUTOINCREMENT), so a handle keeps meaning the object it opened even if the name is
#: unlinked and made again. ``users`` says which processes (``liveness.identity()``)
#: have an anonymous object open; ``holds`` keeps a pickled primitive for its receiver.
SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    primitive TEXT NOT NULL,
    anonymous INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('semaphore', 'cells')),
    value INTEGER,
    size INTEGER
);
CREATE INDEX IF NOT EXISTS objects_anonymous ON objects (anonymous);
CREATE TABLE IF NOT EXISTS cells (
    obj INTEGER NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (obj, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS users (
    obj INTEGER NOT NULL REFERENCES objects (id) ON DELETE CASCADE,
    ident INTEGER NOT NULL,
    uses INTEGER NOT NULL,
    PRIMARY KEY (obj, ident)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS users_ident ON users (ident);
CREATE TABLE IF NOT EXISTS holds (
    primitive TEXT NOT NULL,
    until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS holds_primitive ON holds (primitive);
"""

# SQLite's rule: a child must neither use nor close a connection made before fork. The
# forking thread closes its own first (if idle); any other is kept here, never touched.
_inherited: list[sqlite3.Connection] = []


class _ThreadState(threading.local):
    """This thread's connections, the process they belong to, and how deep it is in a call."""

    def __init__(self) -> None:
        self.pid = 0
        self.conn: sqlite3.Connection | None = None
        self.spare: sqlite3.Connection | None = None
        self.depth = 0
        self.flushing = False


class Store:
    """One database file as this process sees it; thread-safe, shared by backend instances."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = _ThreadState()
        self._deferred: deque[Callable[[], object]] = deque()
        self._schema_ready = False
        self._pid = current_pid()
        self._pid_lock = threading.Lock()
        self._file_lock = threading.Lock()
        #: Called with the first connection a forked child makes (before anything else).
        self.after_fork: list[Callable[[sqlite3.Connection], None]] = []

    # -- calls ------------------------------------------------------------------------------

    def run(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """*work* on this thread's connection, retried while the file is locked.

        *what* completes "cannot ..." in error messages. *work* must be one statement or
        a :meth:`transaction`, so that a retry never repeats something that took effect.
        """
        local = self._local
        depth = local.depth
        try:
            local.depth = depth + 1
            conn = self._connection(depth)
            return self._retry(what, lambda: work(conn))
        finally:
            local.depth = depth
            if not depth and self._deferred:
                self._run_deferred()

    def transaction(self, what: str, body: Callable[[sqlite3.Connection], T]) -> T:
        """*body* as one write transaction, retried while the file is locked.

        ``BEGIN IMMEDIATE`` takes the write lock first, so only the ``BEGIN`` can find the
        file locked, and a retry starts from nothing.
        """

        def attempt(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn)
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                raise
            return result

        return self.run(what, attempt)

    def change(self, what: str, sql: str, args: tuple[object, ...], undo: str) -> bool:
        """Run the UPDATE *sql* (retried while locked): whether it changed a row.

        If an exception (Ctrl-C) interrupts this call after the UPDATE changed a row, *undo*
        (with the same *args*) reverts it before the exception propagates: a wait that is
        interrupted takes nothing. ``total_changes`` tells, as no other statement runs on
        this connection meanwhile (deferred work waits for the next :meth:`run`).
        """
        local = self._local
        depth = local.depth
        conn = self._connection(depth)
        before = conn.total_changes
        try:
            local.depth = depth + 1
            return self._retry(what, lambda: conn.execute(sql, args).rowcount > 0)
        except BaseException:
            # Read while still inside the call: a finalizer cannot have run on conn since.
            changed = conn.total_changes != before
            local.depth = depth
            if changed:
                self.run(what, lambda c: c.execute(undo, args))
            raise
        finally:
            local.depth = depth

    # -- calls from finalizers ----------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether this thread is inside a call of this store right now.

        The garbage collector runs finalizers (handles nobody closed) in whichever thread
        allocates, possibly in the middle of one of our transactions: such a close must
        not run its statements on this thread's connection, inside that transaction.
        """
        return self._local.depth > 0

    def defer(self, work: Callable[[], object]) -> None:
        """Run *work* as soon as this thread (or any other) finishes its current call."""
        self._deferred.append(work)

    def _run_deferred(self) -> None:
        local = self._local
        if local.flushing:
            return
        local.flushing = True
        try:
            while self._deferred:
                try:
                    work = self._deferred.popleft()
                except IndexError:  # another thread took the last one
                    return
                # Best effort, like any close: the users of a process are reaped once it exits.
                with contextlib.suppress(PolysyncError):
                    work()
        finally:
            local.flushing = False

    # -- connections --------------------------------------------------------------------------

    def close_connections(self) -> None:
        """Close this thread's connections (the next call opens new ones)."""
        local = self._local
        if local.depth or local.pid != current_pid():
            return
        for conn in (local.conn, local.spare):
            if conn is not None:
                conn.close()
        local.conn = local.spare = None

    def _connection(self, depth: int) -> sqlite3.Connection:
        local = self._local
        pid = current_pid()
        if local.pid != pid:
            _inherited.extend(c for c in (local.conn, local.spare) if c is not None)
            local.conn = local.spare = None
            local.pid = pid
        if depth:
            # Re-entered (a finalizer, a signal handler): a connection of its own keeps its
            # statements out of the outer call's transaction.
            if local.spare is None:
                local.spare = self._connect()
            return local.spare
        if local.conn is None:
            local.conn = self._connect()
        return local.conn

    def _connect(self) -> sqlite3.Connection:
        with self._file_lock:
            _create_private(self.path)

        def attempt() -> sqlite3.Connection:
            conn = sqlite3.connect(self.path, timeout=0, isolation_level=None)
            try:
                conn.execute("PRAGMA foreign_keys = ON")  # cells and users go with their object
                conn.execute("PRAGMA synchronous = NORMAL")  # no fsync per commit in WAL mode
                if not self._schema_ready:
                    conn.execute("PRAGMA journal_mode = WAL")  # readers never wait for writers
                    conn.executescript(SCHEMA)
                    self._schema_ready = True
                self._check_fork(conn)
            except BaseException:
                conn.close()
                raise
            return conn

        return self._retry("open the database", attempt)

    def _check_fork(self, conn: sqlite3.Connection) -> None:
        with self._pid_lock:
            pid = current_pid()
            if self._pid == pid:
                return
            for hook in self.after_fork:
                hook(conn)
            self._pid = pid

    def reset_after_fork(self) -> None:
        """In a forked child: nothing another thread of the parent held is held here."""
        self._pid_lock = threading.Lock()
        self._file_lock = threading.Lock()
        self._deferred.clear()

    # -- retries and errors -------------------------------------------------------------------

    def _retry(self, what: str, work: Callable[[], T]) -> T:
        deadline = time.monotonic() + LOCKED_LIMIT
        pause = _FIRST_PAUSE
        while True:
            try:
                return work()
            except sqlite3.Error as exc:
                if not _is_locked(exc) or time.monotonic() > deadline:
                    raise self._error(what, exc) from exc
            time.sleep(pause)
            pause = min(pause * 2, _MAX_PAUSE)

    def _error(self, what: str, exc: sqlite3.Error) -> BackendError:
        if _is_locked(exc):
            return BackendError(
                f"cannot {what}: the SQLite database {self.path} stayed locked by other "
                f"connections for {LOCKED_LIMIT:g} s"
            )
        code = getattr(exc, "sqlite_errorname", None)  # Python 3.11+
        detail = f"{exc} ({code})" if code else str(exc)
        return BackendError(f"cannot {what} in the SQLite database {self.path}: {detail}")


def _is_locked(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if isinstance(code, int):
        return code & 0xFF in _BUSY_CODES
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _create_private(path: str) -> None:
    """Create the file readable and writable by its user only, before SQLite opens it.

    SQLite gives the ``-wal`` and ``-shm`` files it makes next to it the same mode. An
    existing file is never opened here: closing a descriptor of a file drops every lock
    the process holds on it (POSIX), SQLite's included, and another process could then
    checkpoint the WAL away under our connections. The caller serialises this with the
    connections it makes, so no connection of ours can have a file that this creates.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise BackendError(f"cannot create the SQLite database file {path}: {exc}") from exc
    else:
        os.close(fd)
    try:
        owner = os.stat(path).st_uid
    except OSError as exc:
        raise BackendError(f"cannot open the SQLite database file {path}: {exc}") from exc
    if hasattr(os, "getuid") and owner != os.getuid():
        raise BackendError(
            f"the SQLite database file {path} belongs to another user: its objects would "
            "be shared with them; pass a path of your own (option path=...)"
        )


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def store_for(path: str) -> Store:
    """The process-wide :class:`Store` of the file *path* (an absolute path)."""
    with _stores_lock:
        store = _stores.get(path)
        if store is None:
            store = _stores[path] = Store(path)
        return store


def _before_fork() -> None:
    for store in list(_stores.values()):
        with contextlib.suppress(sqlite3.Error):
            store.close_connections()


def _after_fork_in_child() -> None:
    global _stores_lock
    _stores_lock = threading.Lock()
    for store in _stores.values():
        store.reset_after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
