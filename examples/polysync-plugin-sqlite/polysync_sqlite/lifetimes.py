"""Who uses each anonymous object: registering users, reaping dead ones, holds for pickles.

Anonymous objects and waiter semaphores go once no process uses them. A process that
opens one is a row of ``users`` (its ``liveness.identity()``, which survives PID reuse,
and how many handles it has open); when the last handle of the last user closes, the
object is deleted. A process that exits without closing (killed, even by SIGKILL) leaves
its rows behind: whoever opens or closes an object next reaps the rows of processes that
are no longer alive, and deletes the anonymous objects that nobody uses any more. A
pickled anonymous primitive is held for its receiver for ``TRANSFER_GRACE`` seconds
(``holds``), whoever closes meanwhile. Named objects have no users: they stay until
unlinked.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time

from polysync.derived.liveness import identity, is_alive
from polysync_sqlite.store import Store

__all__ = ["TRANSFER_GRACE", "Lifetimes", "lifetimes_for"]

#: Seconds a pickled anonymous primitive stays for its receiver, whoever closes meanwhile.
TRANSFER_GRACE = 5.0

_REGISTER = """
INSERT INTO users (obj, ident, uses) VALUES (?, ?, 1)
ON CONFLICT (obj, ident) DO UPDATE SET uses = uses + 1
"""
# A forked child inherited its parent's handles: it uses what the parent uses.
_ADOPT = """
INSERT INTO users (obj, ident, uses) SELECT obj, ?, uses FROM users WHERE ident = ?
ON CONFLICT (obj, ident) DO NOTHING
"""
_UNREGISTER = "UPDATE users SET uses = uses - 1 WHERE obj = ? AND ident = ?"
_DROP_USER = "DELETE FROM users WHERE obj = ? AND ident = ? AND uses <= 0"
_DELETE_UNUSED = """
DELETE FROM objects WHERE anonymous
  AND NOT EXISTS (SELECT 1 FROM users WHERE users.obj = objects.id)
  AND NOT EXISTS (SELECT 1 FROM holds WHERE holds.primitive = objects.primitive)
"""
_DELETE_IF_UNUSED = _DELETE_UNUSED + "  AND id = ?"


class Lifetimes:
    """The users of one store's anonymous objects, as this process takes part in them."""

    def __init__(self, store: Store) -> None:
        self._store = store
        store.after_fork.append(self._adopt)

    def register(self, conn: sqlite3.Connection, oid: int) -> None:
        """Inside the opener's transaction: this process uses object *oid* once more."""
        conn.execute(_REGISTER, (oid, identity()))

    def release(self, oid: int) -> None:
        """A handle of *oid* closed: drop the use, and the object if that was the last one."""
        if self._store.busy:  # a finalizer inside one of our calls: not in its transaction
            self._store.defer(functools.partial(self._release_now, oid, identity()))
        else:
            self._release_now(oid, identity())

    def _release_now(self, oid: int, ident: int) -> None:
        if not os.path.exists(self._store.path):
            return  # the database file was deleted, and its objects with it

        def body(conn: sqlite3.Connection) -> None:
            self.reap(conn)
            conn.execute(_UNREGISTER, (oid, ident))
            conn.execute(_DROP_USER, (oid, ident))
            conn.execute(_DELETE_IF_UNUSED, (oid,))

        self._store.transaction("close an object", body)

    def hold(self, primitive: str) -> None:
        """Keep the objects of the primitive *primitive* (a flat name) for ``TRANSFER_GRACE`` s."""
        until = time.time() + TRANSFER_GRACE  # wall clock: shared by every process
        self._store.run(
            "hold a pickled object",
            lambda conn: conn.execute("INSERT INTO holds VALUES (?, ?)", (primitive, until)),
        )

    def reap(self, conn: sqlite3.Connection) -> None:
        """Inside a transaction: forget dead users and expired holds, delete what is unused."""
        me = identity()
        idents: list[tuple[int]] = conn.execute("SELECT DISTINCT ident FROM users").fetchall()
        dead = [(ident,) for (ident,) in idents if ident != me and not is_alive(ident)]
        if dead:
            conn.executemany("DELETE FROM users WHERE ident = ?", dead)
        expired = conn.execute("DELETE FROM holds WHERE until <= ?", (time.time(),)).rowcount
        if dead or expired:
            conn.execute(_DELETE_UNUSED)

    def _adopt(self, conn: sqlite3.Connection) -> None:
        """A forked child's first connection: the handles it inherited are uses of its own."""
        if _parent is not None:
            conn.execute(_ADOPT, (identity(), _parent))


_all: dict[str, Lifetimes] = {}
_all_lock = threading.Lock()
# The identity of the process about to fork, and in a forked child that of its parent,
# whose uses the child inherited.
_forking: int | None = None
_parent: int | None = None


def lifetimes_for(store: Store) -> Lifetimes:
    """The process-wide :class:`Lifetimes` of *store*."""
    with _all_lock:
        found = _all.get(store.path)
        if found is None:
            found = _all[store.path] = Lifetimes(store)
        return found


def _before_fork() -> None:
    global _forking
    _forking = identity()


def _after_fork_in_child() -> None:
    global _all_lock, _parent
    _all_lock = threading.Lock()
    _parent = _forking


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
