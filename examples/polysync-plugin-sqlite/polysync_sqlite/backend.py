"""``SqliteBackend``: its options, and opening, holding and unlinking rows of the database file.

It stands on polysync's floor alone (:class:`polysync.derived.BaseBackend`): it supplies
``semaphore_kernel``, ``cells_kernel`` and ``unlink``, and polysync derives the seven
primitives from them. Every object is rows of one SQLite file, which every process of
the host opens; see :mod:`polysync_sqlite.store` for the file, :mod:`.lifetimes` for
when anonymous objects go, and :mod:`.kernels` for the semaphore and the cells.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import tempfile
from collections.abc import Callable, Mapping
from typing import ClassVar, NamedTuple

from polysync.derived import BaseBackend
from polysync.errors import KindMismatchError, NotFoundError
from polysync.kernel import Capability, Cells, ObjectName, Scope
from polysync_sqlite.kernels import SqliteCells, SqliteSemaphore
from polysync_sqlite.lifetimes import TRANSFER_GRACE, lifetimes_for
from polysync_sqlite.store import store_for

__all__ = ["SqliteBackend", "database_path"]

_FIND = "SELECT id, kind, size FROM objects WHERE name = ?"
_INSERT = """
INSERT INTO objects (name, primitive, anonymous, kind, value, size) VALUES (?, ?, ?, ?, ?, ?)
"""
# One row per cell, all reading 0, made by one statement.
_FILL = """
WITH RECURSIVE seq (i) AS (SELECT 0 WHERE ?1 > 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < ?1)
INSERT INTO cells (obj, idx, value) SELECT ?2, i, 0 FROM seq
"""


class _Opened(NamedTuple):
    oid: int
    size: int
    created: bool
    registered: bool


class SqliteBackend(BaseBackend):
    """Objects as rows of one SQLite file, shared by the processes of one host; waits poll."""

    name = "sqlite"
    capabilities = frozenset(
        {
            Capability.CROSS_PROCESS,
            Capability.NAMED,
            Capability.READABLE_VALUE,
            Capability.SHARED_CELLS,
        }
    )
    #: ``path``: the database file; ``None`` is ``polysync-sqlite-<uid>.db`` in the temp dir.
    options: ClassVar[Mapping[str, object]] = {"path": None}

    def __init__(self, *, path: str | os.PathLike[str] | None = None) -> None:
        resolved = database_path(path)
        # The resolved path is the setting: a child process reopens this very file.
        super().__init__(path=resolved)
        self.path = resolved
        self._store = store_for(resolved)
        self._lifetimes = lifetimes_for(self._store)

    @property
    def cleanup_bound(self) -> float:
        # An unused object goes at the next open or close of any object (a check that it
        # is gone is one); a pickled one is held for TRANSFER_GRACE seconds first.
        return TRANSFER_GRACE + 5.0

    # -- the floor -----------------------------------------------------------------------

    def semaphore_kernel(self, name: ObjectName, value: int, *, create: bool) -> SqliteSemaphore:
        opened = self._open(name, "semaphore", value, create=create)
        return SqliteSemaphore(self._store, name, opened.oid, self._closer(opened))

    def cells_kernel(self, name: ObjectName, size: int, *, create: bool) -> tuple[Cells, bool]:
        opened = self._open(name, "cells", size, create=create)
        cells = SqliteCells(self._store, name, opened.oid, opened.size, self._closer(opened))
        return cells, opened.created

    def close_cells(self, cells: Cells) -> None:
        assert isinstance(cells, SqliteCells)
        cells.close()

    def unlink(self, name: ObjectName) -> bool:
        flat = str(name)
        if self._store.busy:
            # From a finalizer inside one of our calls (a waiter's thread ended): the delete
            # waits for that call to end; the answer is what a read sees now.
            self._store.defer(functools.partial(self._delete, flat))
            row = self._store.run(
                "look an object up", lambda conn: conn.execute(_FIND, (flat,)).fetchone()
            )
            return row is not None
        return self._delete(flat)

    def hold_for_transfer(self, name: ObjectName) -> None:
        self._lifetimes.hold(str(name.primitive))

    # -- the rest of the backend ---------------------------------------------------------

    def describe(self) -> str:
        return f"sqlite (rows of the SQLite file {self.path}, this host; waits poll)"

    def close(self) -> None:
        self._store.close_connections()

    # -- helpers -------------------------------------------------------------------------

    def _open(self, name: ObjectName, kind: str, amount: int, *, create: bool) -> _Opened:
        """Find (or make) the object *name* of *kind* and register this process as a user.

        *amount* is a new semaphore's value or a new block's size. Everything happens in
        one transaction, so a concurrent opener sees the object whole or not at all, and a
        reaper never sees an anonymous object between its creation and its first user.
        """
        flat = str(name)

        def body(conn: sqlite3.Connection) -> _Opened | None:
            self._lifetimes.reap(conn)
            row: tuple[int, str, int | None] | None = conn.execute(_FIND, (flat,)).fetchone()
            if row is None:
                if not create:
                    return None  # after the commit: the reaping above must stay done
                values = (flat, str(name.primitive), name.is_anonymous, kind)
                if kind == "semaphore":
                    cursor = conn.execute(_INSERT, (*values, amount, None))
                else:
                    cursor = conn.execute(_INSERT, (*values, None, amount))
                oid = cursor.lastrowid
                assert oid is not None
                if kind == "cells":
                    conn.execute(_FILL, (amount, oid))
                size, created = amount, True
            else:
                oid, found, stored_size = row
                if found != kind:
                    raise KindMismatchError(
                        f"{name.describe()} is stored as {found}, not as {kind}, in {self.path}"
                    )
                size, created = stored_size or 0, False
            # A waiter belongs to its creator: a process that merely wakes it does not keep it.
            registered = name.scope is Scope.ANONYMOUS or (name.scope is Scope.WAITER and created)
            if registered:
                self._lifetimes.register(conn, oid)
            return _Opened(oid, size, created, registered)

        opened = self._store.transaction(f"open {name.describe()}", body)
        if opened is None:
            raise NotFoundError(
                f"{name.describe()} is not in the SQLite database {self.path} (it was "
                "unlinked, or every process that used it is done)"
            )
        return opened

    def _closer(self, opened: _Opened) -> Callable[[], None] | None:
        if not opened.registered:
            return None
        return functools.partial(self._lifetimes.release, opened.oid)

    def _delete(self, flat: str) -> bool:
        # Its cells and users rows go with it (ON DELETE CASCADE).
        deleted: bool = self._store.run(
            "unlink an object",
            lambda conn: conn.execute("DELETE FROM objects WHERE name = ?", (flat,)).rowcount > 0,
        )
        return deleted


def database_path(path: object) -> str:
    """The absolute path of the database file the option *path* names (``None``: the default)."""
    if path is None:
        user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
        return os.path.join(tempfile.gettempdir(), f"polysync-sqlite-{user}.db")
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not isinstance(text, str):
        raise TypeError(
            "path must be a str or os.PathLike naming the database file, not "
            f"{type(path).__name__} {path!r}"
        )
    if text in ("", ":memory:"):
        # SQLite would make a private database: no other process could open it.
        raise ValueError(
            f"path must name a database file that every process can open, not {text!r}"
        )
    return os.path.abspath(text)
