"""The sqlite backend's kernels: a counting semaphore and a block of cells, as SQL statements.

A semaphore is one row of ``objects``, its count in ``value``; a block of cells is one row
of ``objects`` and one row of ``cells`` per index. Each operation is one statement, so
each is atomic. ``acquire`` is one ``UPDATE ... WHERE value > 0``; when that changes no
row, it waits by polling: it reads the count again after 0.5 ms, doubling the pause up to
10 ms, until it can take a permit or its deadline passes. Nothing wakes a waiter, so a
hand-off costs up to one pause: this backend is an example of the contract, not a fast
one (on one host, use ``posix``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from polysync.errors import NotFoundError
from polysync.kernel import ObjectName
from polysync_sqlite.store import Store

__all__ = ["FIRST_PAUSE", "MAX_PAUSE", "SqliteCells", "SqliteSemaphore"]

#: The first and the longest pause of a waiting acquire, in seconds.
FIRST_PAUSE = 0.0005
MAX_PAUSE = 0.01

_TAKE = "UPDATE objects SET value = value - 1 WHERE id = ? AND value > 0"
_GIVE_BACK = "UPDATE objects SET value = value + 1 WHERE id = ?"
_ADD = "UPDATE objects SET value = value + ? WHERE id = ?"
_VALUE = "SELECT value FROM objects WHERE id = ?"
_READ = "SELECT value FROM cells WHERE obj = ? AND idx = ?"
_WRITE = "UPDATE cells SET value = ? WHERE obj = ? AND idx = ?"


class _Row:
    """What both kernels share: the object's row, its name for messages, closing."""

    __slots__ = ("_closed", "_name", "_oid", "_on_close", "_store")

    def __init__(
        self, store: Store, name: ObjectName, oid: int, on_close: Callable[[], None] | None
    ) -> None:
        self._store = store
        self._name = name
        self._oid = oid
        self._on_close = on_close
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._on_close is not None:
            self._on_close()

    def _gone(self) -> NotFoundError:
        return NotFoundError(
            f"{self._name.describe()} was removed from the SQLite database {self._store.path} "
            "while this handle was open (it was unlinked)"
        )


class SqliteSemaphore(_Row):
    """A counting semaphore: one row; acquire takes a permit with one UPDATE, or polls."""

    __slots__ = ()

    def acquire(self, blocking: bool, timeout: float | None) -> bool:
        if self._take():
            return True
        now = time.monotonic()
        deadline = now if not blocking else None if timeout is None else now + timeout
        pause = FIRST_PAUSE
        while True:
            # Read first: a poll that finds nothing to take needs no write lock.
            if self.get_value() > 0 and self._take():
                return True
            if deadline is None:
                time.sleep(pause)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(pause, left))
            pause = min(pause * 2, MAX_PAUSE)

    def _take(self) -> bool:
        return self._store.change("take a permit", _TAKE, (self._oid,), _GIVE_BACK)

    def release(self, n: int = 1) -> None:
        # No row changed: the object was unlinked, and nobody can be waiting for it.
        self._store.run("release a permit", lambda conn: conn.execute(_ADD, (n, self._oid)))

    def get_value(self) -> int:
        row: tuple[int] | None = self._store.run(
            "read a semaphore", lambda conn: conn.execute(_VALUE, (self._oid,)).fetchone()
        )
        if row is None:
            raise self._gone()
        return row[0]


class SqliteCells(_Row):
    """A block of signed 64-bit cells: one row per cell, each read or write one statement."""

    __slots__ = ("_size",)

    def __init__(
        self,
        store: Store,
        name: ObjectName,
        oid: int,
        size: int,
        on_close: Callable[[], None] | None,
    ) -> None:
        super().__init__(store, name, oid, on_close)
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: int, /) -> int:
        self._check(index)
        row: tuple[int] | None = self._store.run(
            "read a cell", lambda conn: conn.execute(_READ, (self._oid, index)).fetchone()
        )
        if row is None:
            raise self._gone()
        return row[0]

    def __setitem__(self, index: int, value: int, /) -> None:
        self._check(index)
        changed: bool = self._store.run(
            "write a cell",
            lambda conn: conn.execute(_WRITE, (value, self._oid, index)).rowcount > 0,
        )
        if not changed:
            raise self._gone()

    def _check(self, index: int) -> None:
        if not 0 <= index < self._size:
            raise IndexError(f"cell {index} is out of range: the block has {self._size} cells")
