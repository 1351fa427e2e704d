"""The sqlite backend against polysync's conformance suite, and the promises of its own.

Children the suite starts reopen the backend by name through its entry point: install
the plugin first (``pip install -e examples/polysync-plugin-sqlite``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from polysync_sqlite.backend import SqliteBackend
from polysync_sqlite.store import store_for

import polysync
from polysync.kernel import ObjectName
from polysync.testing import BackendSuite
from polysync.testing.helpers import PROMPT, SHORT


@contextlib.contextmanager
def _fresh_folder() -> Iterator[str]:
    # Not tmp_path: pytest keeps those folders after the run, and this run leaves nothing.
    folder = tempfile.mkdtemp(prefix="polysync-sqlite-test-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """One database file for the whole suite, as the processes of one host would share."""
    with _fresh_folder() as folder:
        yield os.path.join(folder, "objects.db")


@pytest.fixture
def folder() -> Iterator[str]:
    with _fresh_folder() as made:
        yield made


class TestSqlite(BackendSuite):
    @pytest.fixture
    def context(self, database: str) -> polysync.Context:
        return polysync.get_context("sqlite", path=database)


# -- the backend's own promises ---------------------------------------------------------


def _rows_of(path: str, *primitives: ObjectName) -> int:
    """How many stored objects the *primitives* still have in the file *path*."""
    conn = sqlite3.connect(path)
    try:
        marks = ", ".join("?" * len(primitives))
        row = conn.execute(
            f"SELECT COUNT(*) FROM objects WHERE primitive IN ({marks})",
            [str(p) for p in primitives],
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


def test_the_database_file_is_private(folder: str) -> None:
    path = os.path.join(folder, "private.db")
    lock = polysync.get_context("sqlite", path=path).Lock()
    try:
        assert lock.acquire(timeout=PROMPT)
        lock.release()
        made = [p for p in (path, path + "-wal", path + "-shm") if os.path.exists(p)]
        assert path in made
        assert {p: oct(stat.S_IMODE(os.stat(p).st_mode)) for p in made} == {
            p: oct(0o600) for p in made
        }
    finally:
        lock.close()


def _open_and_linger(path: str, names: Any) -> None:
    """In a child: open anonymous objects, report their names, and wait to be killed."""
    ctx = polysync.get_context("sqlite", path=path)
    lock, event = ctx.Lock(), ctx.Event()
    names.put((lock._object_name, event._object_name))
    time.sleep(PROMPT * 6)


def test_objects_of_a_sigkilled_user_are_reaped(database: str) -> None:
    ctx = polysync.get_context("sqlite", path=database)
    mp = multiprocessing.get_context("spawn")
    names = mp.Queue()
    child = mp.Process(target=_open_and_linger, args=(database, names), daemon=True)
    child.start()
    try:
        lock_name, event_name = names.get(timeout=PROMPT * 3)
        ctx.backend.open_lock(lock_name, create=False).close()  # there while its user lives
        assert _rows_of(database, lock_name, event_name) > 0
    finally:
        child.kill()  # SIGKILL: it closes nothing
        child.join(PROMPT)
    # The next open (any open) reaps the dead user, and with it the objects only it used.
    with pytest.raises(polysync.NotFoundError):
        ctx.backend.open_lock(lock_name, create=False)
    with pytest.raises(polysync.NotFoundError):
        ctx.backend.open_event(event_name, create=False)
    assert _rows_of(database, lock_name, event_name) == 0


def test_named_objects_stay_until_unlinked(database: str) -> None:
    ctx = polysync.get_context("sqlite", path=database)
    name = f"own-{os.getpid()}-{threading.get_ident()}"
    sem = ctx.Semaphore(3, name=name)
    sem.close()
    assert _rows_of(database, ctx.backend.object_name(name)) == 2  # cells and a semaphore
    assert ctx.Semaphore(0, name=name).get_value() == 3
    assert ctx.unlink(name) is True
    assert _rows_of(database, ctx.backend.object_name(name)) == 0


def test_a_wait_on_an_unlinked_object_raises(database: str) -> None:
    ctx = polysync.get_context("sqlite", path=database)
    name = f"own-{os.getpid()}-unlinked"
    sem = ctx.Semaphore(0, name=name)
    failures: list[BaseException] = []

    def wait() -> None:
        try:
            sem.acquire(timeout=PROMPT)
        except polysync.NotFoundError as exc:
            failures.append(exc)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    time.sleep(SHORT)
    ctx.unlink(name)
    thread.join(PROMPT)
    assert not thread.is_alive()
    assert len(failures) == 1
    assert "removed from the SQLite database" in str(failures[0])


class _SignalledError(Exception):
    """What the test's signal handler raises, standing in for KeyboardInterrupt."""


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs POSIX interval timers")
def test_a_signal_that_raises_ends_a_wait_with_nothing_taken(database: str) -> None:
    sem = polysync.get_context("sqlite", path=database).Semaphore(0)

    def interrupt(signum: int, frame: object) -> None:
        raise _SignalledError

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        start = time.monotonic()
        with pytest.raises(_SignalledError):
            sem.acquire(timeout=PROMPT)
        assert time.monotonic() - start < PROMPT / 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert sem.get_value() == 0
    sem.release()
    assert sem.get_value() == 1


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs POSIX interval timers")
def test_a_signal_whose_handler_returns_does_not_end_a_wait(database: str) -> None:
    sem = polysync.get_context("sqlite", path=database).Semaphore(0)
    caught: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: caught.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        start = time.monotonic()
        assert sem.acquire(timeout=0.3) is False
        assert time.monotonic() - start >= 0.29
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert caught == [signal.SIGALRM]


def test_an_interrupt_right_after_taking_gives_the_permit_back(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = polysync.get_context("sqlite", path=database)
    backend = ctx.backend
    assert isinstance(backend, SqliteBackend)
    kernel = backend.semaphore_kernel(backend.anonymous_name(), 1, create=True)
    store = store_for(database)
    real_retry = store._retry
    calls: list[str] = []

    def retry_then_interrupt(what: str, work: Callable[[], object]) -> object:
        result = real_retry(what, work)
        calls.append(what)
        if len(calls) == 1:  # the UPDATE took the permit; Ctrl-C arrives before it returns
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(store, "_retry", retry_then_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            kernel.acquire(True, None)
        monkeypatch.undo()
        assert calls[0] == "take a permit"
        assert kernel.get_value() == 1
    finally:
        monkeypatch.undo()
        kernel.close()


def test_a_close_inside_a_call_of_the_store_waits_for_it_to_end(database: str) -> None:
    # What the garbage collector does when it finalizes a handle in the middle of one of
    # the backend's own transactions: the close must not run inside that transaction.
    ctx = polysync.get_context("sqlite", path=database)
    lock = ctx.Lock()
    name = lock._object_name
    store = store_for(database)

    def inside(conn: sqlite3.Connection) -> int:
        conn.execute("BEGIN IMMEDIATE")
        try:
            lock.close()
            still = _rows_of(database, name)
        finally:
            conn.execute("COMMIT")
        return still

    assert store.run("close inside a call", inside) == 2  # deferred: nothing deleted yet
    assert _rows_of(database, name) == 0  # done once the call ended


def _use_after_the_parent_closed(lock: Any, used: Any, closed: Any) -> None:
    """In a forked child: use an inherited handle before and after the parent closes its own."""
    ok = lock.acquire(timeout=PROMPT)
    lock.release()
    used.set()
    ok = closed.wait(PROMPT) and ok and lock.acquire(timeout=PROMPT)
    lock.release()
    os._exit(0 if ok else 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_keeps_what_it_inherited(database: str) -> None:
    ctx = polysync.get_context("sqlite", path=database)
    lock = ctx.Lock()
    name = lock._object_name
    mp = multiprocessing.get_context("fork")
    used, closed = mp.Event(), mp.Event()
    child = mp.Process(target=_use_after_the_parent_closed, args=(lock, used, closed))
    child.start()
    try:
        assert used.wait(PROMPT * 3)
        lock.close()  # the child is a user of its own now: the lock stays
        assert _rows_of(database, name) == 2
        closed.set()
        child.join(PROMPT * 3)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join(PROMPT)
    # The child left without closing (os._exit): the next open reaps it, and the lock.
    with pytest.raises(polysync.NotFoundError):
        ctx.backend.open_lock(name, create=False)


@pytest.mark.parametrize("bad", [42, b"/tmp/objects.db", ["objects.db"]])
def test_a_path_of_another_type_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match=re.escape(repr(bad))):
        polysync.get_context("sqlite", path=bad)


@pytest.mark.parametrize("bad", ["", ":memory:"])
def test_a_path_no_other_process_can_open_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="every process can open"):
        polysync.get_context("sqlite", path=bad)


def test_listed_through_its_entry_point() -> None:
    available = {name: usable for name, usable, _ in polysync.available_backends()}
    assert available.get("sqlite") is True
    from polysync.registry import get_registry

    assert get_registry().get("sqlite").provided_by() == "polysync-plugin-sqlite"


def test_the_plugin_module_imports_nothing_of_the_backend() -> None:
    code = (
        "import sys, polysync_sqlite.plugin; "
        "heavy = {'sqlite3', 'polysync_sqlite.backend', 'polysync_sqlite.store'}; "
        "sys.exit(sorted(heavy & set(sys.modules)) or 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
