"""The postgres backend against a frozen server: every call ends, none hangs.

A server that is SIGSTOPped (with its sessions) keeps its sockets open and its kernel
answers TCP keepalives, so nothing but a client-side bound ends a call to it. Each call
that does not wait (release, set, notify, a read, opening) must end within the
context's ``answer_timeout`` with :class:`~polysync.BackendConnectionError`, and a
process that exits while the server is frozen must exit. Bounds here are correctness
bounds with room for a loaded machine, not speed targets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import warnings
from collections.abc import Callable, Iterator

import pytest

import polysync

from .pg_servers import PrivatePostgres
from .pg_servers.server import children_of

pytestmark = pytest.mark.timeout(120)

psycopg = pytest.importorskip("psycopg")

#: The context's answer_timeout and connect_timeout (libpq's minimum) in these tests, and
#: the room a loaded machine gets on top. A call that finds no idle session connects
#: (the first error drops the idle ones): connect_timeout bounds it then.
ANSWER = 1.0
CONNECT = 2.0
ROOM = 2.0
NO_ANSWER = "no answer|connection timeout"
#: A process exiting: a few such calls (its uses of anonymous objects end, its handles close).
EXIT_BOUND = 4 * max(ANSWER, CONNECT) + ROOM


@pytest.fixture
def ctx(pg_server_fresh: PrivatePostgres) -> Iterator[polysync.Context]:
    context = polysync.get_context(
        "postgres",
        url=pg_server_fresh.url,
        schema="z" + uuid.uuid4().hex[:8],
        answer_timeout=ANSWER,
        connect_timeout=CONNECT,
    )
    yield context
    context.backend.close()


class Frozen:
    """The private server and its sessions SIGSTOPped, until thawed (always, at the end)."""

    def __init__(self, server: PrivatePostgres) -> None:
        assert server.pid is not None
        self.pids = [server.pid, *children_of(server.pid)]

    def __enter__(self) -> Frozen:
        for pid in self.pids:
            os.kill(pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc: object) -> None:
        for pid in self.pids:
            os.kill(pid, signal.SIGCONT)


def _ends_with_an_error(
    call: Callable[[], object],
    what: str,
    error: type[Exception] = polysync.BackendConnectionError,
    match: str = NO_ANSWER,
) -> None:
    start = time.monotonic()
    with pytest.raises(error, match=match):
        call()
    took = time.monotonic() - start
    assert took < max(ANSWER, CONNECT) + ROOM, f"{what} took {took:.1f} s against a frozen server"


def test_calls_that_do_not_wait_end_with_an_error(
    ctx: polysync.Context, pg_server_fresh: PrivatePostgres
) -> None:
    lock, sem = ctx.Lock(name="l"), ctx.Semaphore(2, name="s")
    event, cond = ctx.Event(name="e"), ctx.Condition(name="c")
    assert lock.acquire()
    assert sem.acquire()
    with cond:
        pass
    with Frozen(pg_server_fresh):
        # The holder's session is given up: the lock ends with it (whether before the
        # release or not, nobody can tell here), which a release reports as lost.
        _ends_with_an_error(lock.release, "Lock.release", polysync.LeaseLostError, "lease ran out")
        _ends_with_an_error(lambda: sem.release(), "Semaphore.release")
        _ends_with_an_error(sem.get_value, "Semaphore.get_value")
        _ends_with_an_error(event.set, "Event.set")
        _ends_with_an_error(event.is_set, "Event.is_set")
        _ends_with_an_error(lambda: ctx.Lock(name="new"), "opening a Lock")
        _ends_with_an_error(lambda: ctx.Lock().acquire(False), "a try-acquire")
    # Thawed, the server serves again; the released lock's session was closed, so the
    # lock is free once the server has seen that.
    deadline = time.monotonic() + 10
    fresh = ctx.Lock(name="l")
    with warnings.catch_warnings():
        # Told of a death if the server ended the session before it ran the release
        # (its counter then ends on the grant), not if after: both are right here.
        warnings.simplefilter("ignore", polysync.OwnerDiedWarning)
        while not fresh.acquire(timeout=0.5):
            assert time.monotonic() < deadline, "the lock stayed held after its session closed"
    fresh.release()


def test_a_process_exits_while_the_server_is_frozen(
    ctx: polysync.Context, pg_server_fresh: PrivatePostgres
) -> None:
    settings = ctx.backend.picklable_settings()
    code = textwrap.dedent(
        f"""
        import polysync, sys
        ctx = polysync.get_context("postgres", **{settings!r})
        lock, sem, anon = ctx.Lock(name="x"), ctx.Semaphore(3, name="y"), ctx.Event()
        assert lock.acquire() and sem.acquire()
        print("holding", flush=True)
        sys.stdin.readline()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdin is not None
        assert child.stdout.readline().strip() == "holding"
        with Frozen(pg_server_fresh):
            start = time.monotonic()
            child.stdin.write("exit\n")
            child.stdin.flush()
            try:
                child.wait(EXIT_BOUND)
            except subprocess.TimeoutExpired:
                pytest.fail("a process exiting while the server was frozen hung at exit")
            took = time.monotonic() - start
        assert child.returncode == 0
        assert took < EXIT_BOUND
    finally:
        child.kill()
        child.wait(10)


def test_closing_the_backend_is_bounded_while_the_server_is_frozen(
    pg_server_fresh: PrivatePostgres,
) -> None:
    # Closing removes the sessions rows its holders wrote, with a bound of its own
    # (CLOSE_BOUND, not answer_timeout): a frozen server costs a close that long at most.
    from polysync.backends.postgres.server import CLOSE_BOUND

    context = polysync.get_context(
        "postgres",
        url=pg_server_fresh.url,
        schema="z" + uuid.uuid4().hex[:8],
        answer_timeout=30.0,
        connect_timeout=CONNECT,
    )
    lock = context.Lock(name="c")
    with lock:  # its session records who it acts for
        pass
    with Frozen(pg_server_fresh):
        start = time.monotonic()
        context.backend.close()
        assert time.monotonic() - start < CLOSE_BOUND + ROOM
