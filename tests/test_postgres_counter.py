"""The postgres Lock's counter: a pair writes no row, and still tells a death from a release.

Each Lock and RLock counts its grants (odd values) and clean releases (even values) in a
sequence of its own (see ``polysync/backends/postgres/sql.py``). These tests hold that
scheme to what it promises, against a real server: no transaction id per pair, an
exact owner-death verdict whatever moment an acquire was interrupted at, a holder shown
for the thread that holds, and nothing left once a Lock is unlinked.
"""

from __future__ import annotations

import threading
import uuid
import warnings
from collections.abc import Iterator

import pytest

import polysync

from .pg_servers import PrivatePostgres

pytestmark = pytest.mark.timeout(120)

psycopg = pytest.importorskip("psycopg")


@pytest.fixture
def ctx(pg_server: PrivatePostgres) -> Iterator[polysync.Context]:
    context = polysync.get_context("postgres", url=pg_server.url, schema="c" + uuid.uuid4().hex[:8])
    yield context
    context.backend.close()


def _xid(url: str) -> int:
    """The next transaction id (this call takes one itself)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT txid_current()").fetchone()
    assert row is not None
    return int(row[0])


def _kernel_ids(lock: polysync.Lock) -> tuple[int, int, str]:
    kernel = lock._kernel
    return kernel._oid, kernel._server.classid, kernel._s  # type: ignore[attr-defined]


def test_a_pair_takes_no_transaction_id(pg_server_fresh: PrivatePostgres) -> None:
    # A server of its own: on the shared one, other tests' handles closing in the
    # background (their rows deleted) would take ids meanwhile.
    pg_server = pg_server_fresh
    ctx = polysync.get_context("postgres", url=pg_server.url, schema="quiet")
    try:
        _count_pairs(ctx, pg_server)
    finally:
        ctx.backend.close()


def _count_pairs(ctx: polysync.Context, pg_server: PrivatePostgres) -> None:
    lock = ctx.Lock(name="quiet")
    with lock:  # the first acquire of a session records who it acts for: one id
        pass
    pairs = 64
    before = _xid(pg_server.url)
    for _ in range(pairs):
        with lock:
            pass
    used = _xid(pg_server.url) - before - 1
    # The counter logs 32 values ahead (each such nextval takes an id); the pairs take
    # 2 values each. A pair that wrote rows would take two ids (128 here).
    assert used <= 2 * pairs // 32 + 1, f"{pairs} pairs took {used} transaction ids"


def test_the_holder_shown_is_the_thread_that_holds(ctx: polysync.Context) -> None:
    lock = ctx.Lock(name="who")
    seen: list[int | None] = []

    def hold() -> None:
        with lock:  # the pool's one idle session, last recorded for another thread
            stats = lock.statistics()
            seen.append(None if stats.holder is None else stats.holder.thread)

    for _ in range(3):
        with lock:
            stats = lock.statistics()
            assert stats.holder is not None
            assert stats.holder.thread == threading.get_ident()
        thread = threading.Thread(target=hold)
        thread.start()
        thread.join(30)
        assert seen[-1] == thread.ident
    assert lock.statistics().holder is None


def test_an_unlinked_lock_leaves_no_counter_and_its_open_handle_still_excludes(
    ctx: polysync.Context, pg_server: PrivatePostgres
) -> None:
    first, twin = ctx.Lock(name="again"), ctx.Lock(name="again")
    with first:
        pass
    oid, _, schema = _kernel_ids(first)
    first.unlink()
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (f"{schema}.lock_{oid}",)).fetchone()
    assert row == (None,)  # the counter went with the row
    tokens = []
    for _ in range(3):  # handles open on the unlinked Lock keep excluding each other
        with first:
            assert twin.acquire(False) is False
            tokens.append(first.fencing_token)
        assert first.owner_died is False
    assert tokens == sorted(set(tokens)), tokens
    second = ctx.Lock(name="again")  # a new Lock of that name, with a counter of its own
    with second:
        assert isinstance(second.fencing_token, int)
        assert second.statistics().last_fencing_token == second.fencing_token
    second.unlink()


@pytest.mark.parametrize("counted", [True, False], ids=["counted", "cut-before-counting"])
def test_an_interrupted_acquire_is_not_taken_for_a_death(
    ctx: polysync.Context, pg_server: PrivatePostgres, counted: bool
) -> None:
    """An acquire cut off after the grant, before or after its count, gives the lock
    back through ``lock_abandon``: the next acquirer is not told of a death."""
    lock = ctx.Lock(name="cut")
    oid, classid, schema = _kernel_ids(lock)
    with psycopg.connect(pg_server.url, autocommit=True) as session:
        if counted:
            session.execute(f"SELECT {schema}.lock_acquire(%s, %s, 0, NULL)", (oid, classid))
        else:  # as if cancelled between the grant and the count
            session.execute("SELECT pg_advisory_lock(%s, %s)", (classid, oid))
        assert lock.locked() is counted
        session.execute(f"SELECT {schema}.lock_abandon(%s, %s)", (oid, classid))
    with warnings.catch_warnings():
        warnings.simplefilter("error", polysync.OwnerDiedWarning)
        assert lock.acquire(timeout=10) is True
    assert lock.owner_died is False
    lock.release()
    assert lock.locked() is False


def test_a_session_that_ends_holding_is_a_death(
    ctx: polysync.Context, pg_server: PrivatePostgres
) -> None:
    lock = ctx.Lock(name="gone")
    oid, classid, schema = _kernel_ids(lock)
    with psycopg.connect(pg_server.url, autocommit=True) as session:
        row = session.execute(
            f"SELECT {schema}.lock_acquire(%s, %s, 0, NULL)", (oid, classid)
        ).fetchone()
        assert row is not None
        token = int(row[0])
    assert lock.locked() is True  # until taken over, as on every owner-death backend
    with pytest.warns(polysync.OwnerDiedWarning):
        assert lock.acquire(timeout=10) is True
    assert lock.owner_died is True
    assert lock.fencing_token is not None
    assert lock.fencing_token > token
    lock.release()
    with warnings.catch_warnings():
        warnings.simplefilter("error", polysync.OwnerDiedWarning)
        with lock:
            assert lock.owner_died is False
