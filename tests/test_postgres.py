"""The postgres backend against private PostgreSQL clusters (see pg_servers/): the suite, faults."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import polysync
from polysync.testing import BackendSuite

from .pg_servers import PrivatePgBouncer, PrivatePostgres

pytestmark = pytest.mark.timeout(120)

psycopg = pytest.importorskip("psycopg")


class TestPostgres(BackendSuite):
    # A short anonymous_ttl: an anonymous object pickled and never unpickled is gone soon.
    @pytest.fixture
    def context(self, pg_server: PrivatePostgres) -> polysync.Context:
        return polysync.get_context("postgres", url=pg_server.url, anonymous_ttl=2.0)


# -- options, registration, the key space, what is left behind -----------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"advisory_classid": 0}, ValueError, "advisory_classid must be from 1"),
        ({"advisory_classid": 2**31}, ValueError, "advisory_classid"),
        ({"advisory_classid": "7"}, TypeError, "advisory_classid must be an int"),
        ({"advisory_classid": True}, TypeError, "advisory_classid must be an int"),
        ({"pool_size": -1}, ValueError, "pool_size must be from 0"),
        ({"pool_size": 2.0}, TypeError, "pool_size must be an int"),
        ({"anonymous_ttl": 0}, ValueError, "anonymous_ttl"),
        ({"schema": "Bad"}, ValueError, "schema must be"),
        ({"bogus": 1}, TypeError, "unknown option"),
    ],
)
def test_bad_options_are_refused_before_connecting(
    options: dict[str, object], error: type[Exception], match: str
) -> None:
    # Port 1 on loopback: nothing listens, so a connection attempt would fail otherwise.
    with pytest.raises(error, match=match):
        polysync.get_context("postgres", url="postgresql://u@127.0.0.1:1/db", **options)


def test_an_unreachable_server_is_a_connection_error_without_the_password() -> None:
    with pytest.raises(polysync.BackendConnectionError) as info:
        polysync.get_context("postgres", url="postgresql://u:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in str(info.value)


def test_postgres_is_a_registered_backend() -> None:
    names = {name for name, _usable, _reason in polysync.available_backends()}
    assert "postgres" in names


def test_transaction_pooling_is_refused_at_context_creation(
    pgbouncer_factory: Callable[[str], PrivatePgBouncer],
) -> None:
    bouncer = pgbouncer_factory("transaction")
    with pytest.raises(polysync.BackendError, match="pool_mode = session"):
        polysync.get_context("postgres", url=bouncer.url, schema="bouncer_t")


def test_session_pooling_works(pgbouncer_factory: Callable[[str], PrivatePgBouncer]) -> None:
    bouncer = pgbouncer_factory("session")
    ctx = polysync.get_context("postgres", url=bouncer.url, schema="bouncer_s")
    try:
        lock = ctx.Lock(name="through-bouncer")
        with lock:
            assert lock.locked()
        lock.unlink()
    finally:
        ctx.backend.close()


def test_the_key_space_is_apart_from_the_applications_advisory_locks(
    pg_server: PrivatePostgres,
) -> None:
    ctx = polysync.get_context("postgres", url=pg_server.url, schema="keys")
    lock = ctx.Lock(name="k")
    oid = lock._kernel._oid  # type: ignore[union-attr]
    app = psycopg.connect(pg_server.url, autocommit=True)
    try:
        # The application's own locks on the same numbers: the bigint form, and the
        # two-int4 form with another classid.
        app.execute("SELECT pg_advisory_lock(%s::bigint), pg_advisory_lock(1, %s)", (oid, oid))
        assert lock.acquire(timeout=5)
        classid = ctx.backend.settings["advisory_classid"]
        row = app.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
            "AND objid = %s AND objsubid = 2 AND granted",
            (classid, oid),
        ).fetchone()
        assert row == (1,)
        lock.release()
    finally:
        app.close()
        lock.unlink()


def test_context_open_finds_the_kind_and_parameter(pg_server: PrivatePostgres) -> None:
    ctx = polysync.get_context("postgres", url=pg_server.url, schema="finds")
    ctx.Semaphore(3, name="s")
    ctx.Barrier(4, name="b")
    try:
        sem = ctx.open("s")
        assert isinstance(sem, polysync.Semaphore)
        assert sem.get_value() == 3
        barrier = ctx.open("b")
        assert isinstance(barrier, polysync.Barrier)
        assert barrier.parties == 4
        with pytest.raises(polysync.NotFoundError):
            ctx.open("missing")
    finally:
        ctx.unlink("s")
        ctx.unlink("b")


def _sessions(url: str, schema: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()"
        ).fetchone()
        assert row is not None
        return int(row[0])


def _rows(url: str, schema: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            table: int(
                conn.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0]  # type: ignore[index]
            )
            for table in ("objects", "permits", "waiters", "parties", "users", "sessions")
        }


def _lock_counters(url: str, schema: str) -> int:
    """How many Lock counters (sequences ``lock_<id>``) *schema* has."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'S' AND c.relname LIKE 'lock\\_%%'",
            (schema,),
        ).fetchone()
    return int(row[0]) if row is not None else -1


def test_nothing_is_left_behind(pg_server_fresh: PrivatePostgres) -> None:
    """Anonymous objects of every kind, used and closed: no rows; the backend closed: no
    sessions (the held and idle ones, and the liveness session, are gone)."""
    url = pg_server_fresh.url
    before = _sessions(url, "tidy")
    ctx = polysync.get_context("postgres", url=url, schema="tidy")
    lock, rlock = ctx.Lock(), ctx.RLock()
    sem, bounded = ctx.Semaphore(1), ctx.BoundedSemaphore(2)
    event, cond, barrier = ctx.Event(), ctx.Condition(), ctx.Barrier(1)
    with lock, rlock, sem, bounded, cond:
        cond.notify()
        assert cond.wait(0.01) is False
    assert event.wait(0.01) is False
    assert barrier.wait(5) == 0
    assert sem.acquire(timeout=1)  # held when closed: a closed handle holds nothing
    assert lock.acquire(timeout=1)
    for obj in (lock, rlock, sem, bounded, event, cond, cond.lock, barrier):
        obj.close()
    rows = _rows(url, "tidy")
    assert rows.pop("sessions") > 0  # who each holder's session acted for, until closed
    assert rows == dict.fromkeys(("objects", "permits", "waiters", "parties", "users"), 0)
    assert _lock_counters(url, "tidy") == 0
    ctx.backend.close()
    assert _rows(url, "tidy")["sessions"] == 0
    deadline = time.monotonic() + 10
    while _sessions(url, "tidy") > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sessions(url, "tidy") == before


def test_a_timeout_longer_than_lock_timeout_can_count_waits(pg_server: PrivatePostgres) -> None:
    """lock_timeout counts int4 milliseconds (24.8 days): a longer timeout still waits."""
    ctx = polysync.get_context("postgres", url=pg_server.url, schema="longwait")
    holder, waiter = ctx.Lock(name="long"), ctx.Lock(name="long")
    assert waiter.acquire(timeout=30 * 86400.0) is True  # free: taken at once
    waiter.release()
    assert holder.acquire()
    out: list[bool] = []
    thread = threading.Thread(target=lambda: out.append(waiter.acquire(timeout=40 * 86400.0)))
    thread.start()
    time.sleep(0.3)
    assert not out
    holder.release()
    thread.join(10)
    assert out == [True]
    waiter.release()
    ctx.unlink("long")


def test_a_backend_nobody_uses_is_collected_with_its_sessions(
    pg_server_fresh: PrivatePostgres,
) -> None:
    """The liveness thread does not keep its backend alive: a backend made for a while
    (as the suite's other_host is) leaves no session behind once collected."""
    import gc

    from polysync.backends.postgres import PostgresBackend

    url = pg_server_fresh.url
    before = _sessions(url, "gone")
    options = {"url": url, "schema": "gone"}
    ctx = polysync.Context("postgres", options, PostgresBackend(**options))
    event = ctx.Event()  # anonymous: the liveness session starts
    assert event.wait(0.01) is False
    event.close()
    assert _sessions(url, "gone") > before
    del ctx, event
    gc.collect()
    deadline = time.monotonic() + 10
    while _sessions(url, "gone") > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sessions(url, "gone") == before


def test_a_permit_taken_by_an_interrupted_statement_goes_back(
    pg_server: PrivatePostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C that lands once the server has run the acquire: the permit is given back."""
    ctx = polysync.get_context("postgres", url=pg_server.url, schema="giveback")
    sem = ctx.Semaphore(1)
    kernel: Any = sem._kernel
    real = kernel._one

    def interrupted(sql: str, *params: object) -> object:
        result = real(sql, *params)
        if "sem_acquire" in sql:
            raise KeyboardInterrupt  # as if it came just after the answer
        return result

    monkeypatch.setattr(kernel, "_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sem.acquire(timeout=1)
    monkeypatch.undo()
    assert sem.get_value() == 1
    assert sem.acquire(False) is True
    sem.release()


# -- the command line on real rows ---------------------------------------------------------------


def test_ls_inspect_and_rm_show_and_remove_real_objects(pg_server_fresh: PrivatePostgres) -> None:
    import json
    import os
    import subprocess
    import sys

    def polysync_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "polysync", *args, "--backend", "postgres",
             "--option", f"url={pg_server_fresh.url}"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    ctx = polysync.get_context("postgres", url=pg_server_fresh.url)
    lock, jobs = ctx.Lock(name="deploy"), ctx.BoundedSemaphore(4, name="jobs")
    try:
        assert lock.acquire(timeout=5)
        assert jobs.acquire(timeout=5)
        listed = polysync_cli("ls")
        assert listed.returncode == 0, listed.stderr
        rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:] if line.strip()}
        assert f"locked by pid {os.getpid()}" in rows["deploy"]
        assert "value 3/4" in rows["jobs"]
        data = json.loads(polysync_cli("ls", "--json").stdout)
        by_name = {o["name"]: o for o in data["objects"]}
        assert by_name["deploy"]["state"]["holder"]["pid"] == os.getpid()
        assert by_name["jobs"]["kind"] == "bounded_semaphore"
        assert by_name["jobs"]["parameter"] == 4
        lock.release()
        jobs.release()
        removed = polysync_cli("rm", "jobs", "nope")
        assert removed.returncode == 1
        assert "removed 'jobs'" in removed.stdout
        assert "nope" in removed.stderr
        assert "jobs" not in {entry.name for entry in ctx.list_objects()}
        collected = polysync_cli("gc")  # nothing of a live process is collected
        assert collected.returncode == 0, collected.stderr
        assert "nothing to remove on the postgres backend" in collected.stdout
    finally:
        lock.close()
        jobs.close()
        ctx.unlink("deploy")
        ctx.unlink("jobs")


def test_a_forked_child_keeps_no_descriptor_of_its_parents_liveness(
    pg_server: PrivatePostgres,
) -> None:
    ctx = polysync.get_context("postgres", url=pg_server.url, schema="forked")
    try:
        lock = ctx.Lock(name="f")
        with lock:  # the liveness session and its thread run now
            pass
        live: Any = ctx.backend.server.liveness
        parents = {live._wake_r, live._wake_w, live._epoll.fileno()}
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report which of the parent's descriptors it still has
            os.close(read)
            ctx.backend.server._check_fork()
            still = [fd for fd in parents if _is_open(fd)]
            os.write(write, repr(still).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as reply:
            still = reply.read()
        os.waitpid(pid, 0)
        assert still == "[]", f"the child kept {still}"
        assert all(_is_open(fd) for fd in parents)  # the parent's are untouched
    finally:
        ctx.backend.close()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
