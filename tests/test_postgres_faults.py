"""The postgres backend under faults: holders SIGKILLed, the server killed and restarted under
waiters, a statement timeout, Ctrl-C in a wait. Every fault is real: a child process
SIGKILLed while it holds, the private postmaster SIGKILLed (crash recovery on restart).

Time bounds here are correctness bounds with room for a loaded 2-core machine, not speed
targets: "recovered at once" is asserted as within 2.5 s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

import polysync

from .conftest import Children
from .pg_servers import PrivatePostgres

pytestmark = pytest.mark.timeout(90)

psycopg = pytest.importorskip("psycopg")

#: A holder's death must be seen by the next acquirer within this (its session ends at once).
RECOVERY_BOUND = 2.5
#: An error caused by the server going away must come within this.
ERROR_BOUND = 5.0


@pytest.fixture
def ctx(pg_server_fresh: PrivatePostgres) -> Iterator[polysync.Context]:
    context = polysync.get_context(
        "postgres", url=pg_server_fresh.url, schema="f" + uuid.uuid4().hex[:8]
    )
    yield context
    context.backend.close()


@pytest.fixture
def children(ctx: polysync.Context) -> Iterator[Children]:
    kids = Children(ctx)
    yield kids
    kids.kill_all()


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # report everything to the test
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


# -- holders that die -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_a_sigkilled_holder_is_recovered_at_once_by_a_blocked_waiter(
    ctx: polysync.Context, children: Children, kind: str
) -> None:
    child = children.start(
        f"""
        lock = ctx.{kind}(name="victim")
        lock.acquire()
        print("held", lock.fencing_token, flush=True)
        time.sleep(60)
        """
    )
    token = int(children.expect(child, "held").split()[1])
    lock = getattr(ctx, kind)(name="victim")
    assert lock.acquire(timeout=0.1) is False

    def take() -> tuple[bool, bool, int | None]:  # an RLock is released by its owner thread
        got = lock.acquire(timeout=30)
        died, token = lock.owner_died, lock.fencing_token
        lock.release()
        return got, died, token

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        thread, out = _in_thread(take)
        time.sleep(0.3)  # blocked in the server by now
        assert not out
        child.kill()
        start = time.monotonic()
        thread.join(30)
        waited = time.monotonic() - start
    assert len(out) == 1, out
    assert out[0][:2] == (True, True), out
    assert waited < RECOVERY_BOUND
    assert any(issubclass(w.category, polysync.OwnerDiedWarning) for w in caught)
    assert out[0][2] is not None
    assert out[0][2] > token
    assert not lock.owner_died
    assert not lock.locked()
    lock.unlink()


def test_a_permit_of_a_sigkilled_holder_comes_back(
    ctx: polysync.Context, children: Children
) -> None:
    sem = ctx.Semaphore(1, name="permits")
    child = children.start(
        """
        sem = ctx.Semaphore(1, name="permits")
        sem.acquire()
        print("took", flush=True)
        time.sleep(60)
        """
    )
    children.expect(child, "took")
    assert sem.acquire(False) is False
    thread, out = _in_thread(lambda: sem.acquire(timeout=30))
    time.sleep(0.2)
    child.kill()
    child.wait(10)
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", polysync.OwnerDiedWarning)
        thread.join(30)
    assert out == [True]
    assert time.monotonic() - start < RECOVERY_BOUND
    sem.release()
    assert sem.get_value() == 1
    sem.unlink()


def test_a_permit_kept_by_a_process_that_exits_cleanly_stays_taken(
    ctx: polysync.Context, children: Children
) -> None:
    sem = ctx.Semaphore(1, name="kept")
    child = children.start(
        """
        sem = ctx.Semaphore(1, name="kept")
        sem.acquire()
        print("took", flush=True)
        """
    )
    children.expect(child, "took")
    assert child.wait(30) == 0
    assert sem.acquire(timeout=1.5) is False  # several liveness looks pass
    sem.release()
    assert sem.acquire(False) is True
    sem.unlink()


def test_a_dead_condition_waiter_does_not_swallow_a_notify(
    ctx: polysync.Context, children: Children
) -> None:
    cond = ctx.Condition(name="cv")
    child = children.start(
        """
        cond = ctx.Condition(name="cv")
        with cond:
            print("waiting", flush=True)
            cond.wait(60)
        """
    )
    children.expect(child, "waiting")
    time.sleep(0.3)  # it is inside wait(): its row is in, the lock released
    ready = threading.Event()

    def waiter() -> bool:
        with cond:
            ready.set()
            return cond.wait(20)

    thread, out = _in_thread(waiter)
    assert ready.wait(10)
    time.sleep(0.3)
    child.kill()
    child.wait(10)
    with cond:
        cond.notify(1)  # the dead waiter is skipped: the live one gets it
    thread.join(10)
    assert out == [True]
    ctx.unlink("cv")
    ctx.unlink("cv.lock")


def test_a_dead_barrier_party_no_longer_counts(ctx: polysync.Context, children: Children) -> None:
    barrier = ctx.Barrier(2, name="bar")
    child = children.start(
        """
        barrier = ctx.Barrier(2, name="bar")
        print("arriving", flush=True)
        barrier.wait(60)
        """
    )
    children.expect(child, "arriving")
    deadline = time.monotonic() + 10
    while barrier.n_waiting != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert barrier.n_waiting == 1
    child.kill()
    child.wait(10)
    # The arrival finds the dead party, drops it (and says so), and waits for another.
    thread, out = _in_thread(lambda: barrier.wait(20))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", polysync.OwnerDiedWarning)
        deadline = time.monotonic() + 10
        while barrier.n_waiting != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        index = barrier.wait(20)
    thread.join(20)
    assert sorted([index, *out]) == [0, 1]
    barrier.unlink()


# -- the server goes away --------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::polysync.OwnerDiedWarning")  # see below
def test_a_server_restart_under_waiters_gives_connection_errors_and_lost_holds(
    ctx: polysync.Context, pg_server_fresh: PrivatePostgres
) -> None:
    holder, waiter = ctx.Lock(name="held"), ctx.Lock(name="held")
    event, sem = ctx.Event(name="ev"), ctx.Semaphore(0, name="sem")
    assert holder.acquire()
    before = holder.fencing_token
    assert before is not None
    lost: list[bool] = []
    ctx.backend.configure_primitive(holder._kernel, {"on_lost": lambda: lost.append(True)})
    runs = [
        _in_thread(lambda: waiter.acquire()),  # forever: blocked in the server
        _in_thread(lambda: waiter.acquire(timeout=30)),
        _in_thread(lambda: event.wait(30)),
        _in_thread(lambda: sem.acquire(timeout=30)),
    ]
    time.sleep(0.5)
    assert all(not out for _, out in runs)
    pg_server_fresh.kill()
    start = time.monotonic()
    for thread, _ in runs:
        thread.join(ERROR_BOUND * 2)
    assert time.monotonic() - start < ERROR_BOUND
    for _, out in runs:
        assert len(out) == 1, out
        assert isinstance(out[0], polysync.BackendConnectionError), out
    pg_server_fresh.restart()
    deadline = time.monotonic() + ERROR_BOUND
    while not holder.lost and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holder.lost  # its session is gone: told, without a call of its own
    assert lost == [True]
    with pytest.raises(polysync.LeaseLostError):
        holder.release()
    # Nobody holds it now; the fencing tokens go on increasing after the crash.
    fresh = ctx.Lock(name="held")
    assert fresh.acquire(timeout=5)  # idle sessions that died with the server are skipped
    assert fresh.fencing_token is not None
    assert fresh.fencing_token > before
    fresh.release()
    assert waiter.acquire(timeout=5)
    waiter.release()


def test_a_frozen_server_costs_a_timed_waiter_its_timeout_and_an_error(
    ctx: polysync.Context, pg_server_fresh: PrivatePostgres
) -> None:
    holder, waiter = ctx.Lock(name="f"), ctx.Lock(name="f")
    assert holder.acquire()
    assert waiter.acquire(False) is False  # an idle session in the pool: no connect below
    assert pg_server_fresh.pid is not None
    os.kill(pg_server_fresh.pid, signal.SIGSTOP)
    try:
        # The waiter's session is a child of the postmaster, and keeps running: freeze it.
        from .pg_servers.server import children_of

        frozen = children_of(pg_server_fresh.pid)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        start = time.monotonic()
        with pytest.raises(polysync.BackendConnectionError, match="no answer"):
            waiter.acquire(timeout=0.5)
        assert time.monotonic() - start < 0.5 + 1.0 + 1.0  # its timeout, the margin, room
    finally:
        for pid in [pg_server_fresh.pid, *frozen]:
            os.kill(pid, signal.SIGCONT)


def test_a_statement_timeout_is_a_connection_error_and_leaves_nothing_held(
    pg_server_fresh: PrivatePostgres,
) -> None:
    url = pg_server_fresh.url + "?options=" + quote("-c statement_timeout=300")
    ctx = polysync.get_context("postgres", url=url, schema="st" + uuid.uuid4().hex[:6])
    try:
        holder, waiter = ctx.Lock(name="s"), ctx.Lock(name="s")
        assert holder.acquire()
        start = time.monotonic()
        with pytest.raises(polysync.BackendConnectionError, match="statement timeout"):
            waiter.acquire()
        assert time.monotonic() - start < ERROR_BOUND
        holder.release()
        assert waiter.acquire(False) is True  # the failed wait took nothing
        waiter.release()
        assert not holder.locked()
    finally:
        ctx.backend.close()


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_ctrl_c_in_a_blocked_acquire_leaves_nothing_held(ctx: polysync.Context) -> None:
    holder, waiter = ctx.Lock(name="c"), ctx.Lock(name="c")
    assert holder.acquire()
    timer = threading.Timer(0.3, lambda: signal.pthread_kill(threading.main_thread().ident or 0, 2))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            waiter.acquire()
    finally:
        timer.cancel()
    holder.release()
    assert not holder.locked()
    other = ctx.Lock(name="c")
    assert other.acquire(False) is True
    assert not other.owner_died  # the interrupted waiter left no holder record
    other.release()


def test_a_party_killed_inside_the_action_breaks_the_barrier(
    ctx: polysync.Context, children: Children
) -> None:
    barrier = ctx.Barrier(2, name="act")
    thread, out = _in_thread(lambda: barrier.wait(30))
    deadline = time.monotonic() + 10
    while barrier.n_waiting != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    child = children.start(
        """
        def action():
            print("acting", flush=True)
            time.sleep(60)

        ctx.Barrier(2, name="act", action=action).wait(60)
        """
    )
    children.expect(child, "acting")
    child.kill()
    child.wait(10)
    thread.join(10)  # the waiter's next look finds the action's party dead
    assert len(out) == 1
    assert isinstance(out[0], polysync.BrokenBarrierError), out
    assert barrier.broken
    barrier.reset()
    barrier.unlink()


# After a crash the counter resumes at its last logged value: its first acquirer may be
# told of a death (docs/postgres.md, "Crash safety").
@pytest.mark.filterwarnings("ignore::polysync.OwnerDiedWarning")
@pytest.mark.parametrize(
    "stop", [signal.SIGINT, signal.SIGQUIT, signal.SIGKILL], ids=["fast", "immediate", "crash"]
)
def test_fencing_tokens_keep_increasing_across_a_stop_and_a_crash(
    pg_server_fresh: PrivatePostgres, stop: signal.Signals
) -> None:
    # The private server runs synchronous_commit=off; a real one commits synchronously,
    # and that is what makes an issued token durable: these sessions do as a real one.
    url = pg_server_fresh.url + "?options=" + quote("-c synchronous_commit=on")
    schema = "t" + uuid.uuid4().hex[:8]
    before = polysync.get_context("postgres", url=url, schema=schema)
    assert before.backend.server.query("SHOW synchronous_commit") == ("on",)
    lock = before.Lock(name="fenced")
    issued = []
    for _ in range(40):  # past one batch of 32 values that a sequence logs ahead
        with lock:
            assert lock.fencing_token is not None
            issued.append(lock.fencing_token)
    assert issued == sorted(set(issued))
    if stop == signal.SIGKILL:
        pg_server_fresh.kill()  # the postmaster and its backends
    else:  # pg_ctl stop -m fast sends SIGINT, -m immediate SIGQUIT
        assert pg_server_fresh.proc is not None
        pg_server_fresh.proc.send_signal(stop)
        pg_server_fresh.proc.wait(ERROR_BOUND * 4)
    pg_server_fresh.restart()
    before.backend.close()
    after = polysync.get_context("postgres", url=url, schema=schema)
    try:
        again = after.Lock(name="fenced")
        with again:
            assert again.fencing_token is not None
            assert again.fencing_token > issued[-1]
    finally:
        after.backend.close()


def test_a_holder_learns_its_session_is_gone_while_the_liveness_session_reconnects(
    pg_server_fresh: PrivatePostgres,
) -> None:
    # A partition ends the liveness session and the holders' sessions at about the same
    # time, and a reconnect then takes up to connect_timeout: the holders must still be
    # watched meanwhile (they were not: a cut-off holder learned nothing for 60 s).
    slow = threading.Event()

    def factory(conninfo: str, **kwargs: Any) -> Any:
        if slow.is_set():
            time.sleep(8)  # a reconnect into a partition
        return psycopg.connect(conninfo, **kwargs)

    ctx = polysync.get_context(
        "postgres",
        url=pg_server_fresh.url,
        schema="r" + uuid.uuid4().hex[:8],
        connection_factory=factory,
    )
    try:
        lock = ctx.Lock(name="held")
        assert lock.acquire()
        liveness_pid = ctx.backend.server.identity()[0]
        holder_pid = lock._kernel._conn.info.backend_pid  # type: ignore[attr-defined]
        slow.set()
        with psycopg.connect(pg_server_fresh.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (liveness_pid,))
            time.sleep(1.5)  # the liveness thread has seen it, and reconnects
            admin.execute("SELECT pg_terminate_backend(%s)", (holder_pid,))
        deadline = time.monotonic() + RECOVERY_BOUND * 2
        while not lock.lost and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lock.lost, "the holder was not told while the liveness session reconnected"
    finally:
        slow.clear()
        ctx.backend.close()


def test_a_live_holder_keeps_its_permit_when_its_liveness_session_is_replaced(
    pg_server_fresh: PrivatePostgres,
) -> None:
    # A permit is marked with its holder's liveness session; that session ending alone
    # (an administrator, a network fault) must not make a live holder's permit look
    # like a dead one's, which another process would take back: a double grant.
    schema = "l" + uuid.uuid4().hex[:8]
    holder_ctx = polysync.get_context("postgres", url=pg_server_fresh.url, schema=schema)
    other_ctx = polysync.get_context(  # another backend instance: its own liveness session
        "postgres", url=pg_server_fresh.url, schema=schema, pool_size=3
    )
    try:
        held = holder_ctx.Semaphore(1, name="one")
        assert held.acquire(timeout=5)
        server = holder_ctx.backend.server
        old = server.identity()
        with psycopg.connect(pg_server_fresh.url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (old[0],))
        deadline = time.monotonic() + ERROR_BOUND * 2
        while time.monotonic() < deadline:
            with contextlib.suppress(polysync.BackendConnectionError):
                if server.identity() != old:
                    break
            time.sleep(0.05)
        assert server.identity() != old, "the liveness session did not come back"
        other = other_ctx.Semaphore(1, name="one")
        with warnings.catch_warnings():
            warnings.simplefilter("error", polysync.OwnerDiedWarning)
            assert other.acquire(False) is False  # held by a live process
        held.release()
        assert other.acquire(timeout=5) is True
        other.release()
    finally:
        holder_ctx.backend.close()
        other_ctx.backend.close()


def test_gc_removes_what_a_killed_process_left_and_nothing_else(
    ctx: polysync.Context, children: Children, pg_server_fresh: PrivatePostgres
) -> None:
    mine = ctx.Lock()  # this live process's anonymous Lock, held: never collected
    assert mine.acquire()
    child = children.start(
        """
        lock, event = ctx.Lock(), ctx.Event()
        assert lock.acquire()
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    children.expect(child, "ready")
    child.kill()  # SIGKILL: no close, no exit handler
    child.wait(10)
    schema = ctx.backend.server.schema  # type: ignore[attr-defined]
    deadline = time.monotonic() + ERROR_BOUND
    found: list[polysync.kernel.Orphan] = []
    while time.monotonic() < deadline:  # until the server has seen its sessions end
        found = ctx.collect_orphans(dry_run=True)
        if sum("anonymous" in o.what for o in found) == 2:
            break
        time.sleep(0.05)
    kinds = sorted(o.what.rsplit(" ", 1)[-1] for o in found if "anonymous" in o.what)
    assert kinds == ["event)", "lock)"], found
    assert any(o.what.startswith("sessions row") for o in found), found  # its holder
    assert ctx.collect_orphans(dry_run=True) == found  # a dry run removes nothing
    assert sorted(map(str, ctx.collect_orphans(dry_run=False))) == sorted(map(str, found))
    assert ctx.collect_orphans(dry_run=False) == []
    with psycopg.connect(pg_server_fresh.url, autocommit=True) as conn:
        objects = conn.execute(f"SELECT id FROM {schema}.objects").fetchall()
        counters = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'S' AND c.relname LIKE 'lock%%'",
            (schema,),
        ).fetchall()
    oid = mine._kernel._oid  # type: ignore[attr-defined]
    assert objects == [(oid,)]  # only this process's Lock is left, and its counter
    assert counters == [(f"lock_{oid}",)]
    assert mine.locked()
    mine.release()
    mine.close()
