"""The redis backend against real, private redis-server processes (see redis_servers/)."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import warnings
from typing import Any

import pytest

import polysync
from polysync.testing import (
    BackendSuite,
    BarrierTests,
    ConditionTests,
    EventTests,
    LockTests,
    SemaphoreTests,
)
from polysync.testing.suite import PROMPT, Child

from .conftest import collected_while_holding
from .redis_servers import RedisServer, wait_for

pytestmark = pytest.mark.timeout(120)

redis = pytest.importorskip("redis")


def _keys(server: RedisServer, prefix: str) -> list[bytes]:
    client = redis.Redis.from_url(server.url)
    try:
        return sorted(client.scan_iter(match=f"{prefix}:*"))  # tests only: the backend never lists
    finally:
        client.close()


class TestRedis(BackendSuite):
    # A short lease and idle TTL: the suite expects a dead owner's lock back, and unused
    # anonymous objects gone, within seconds.
    @pytest.fixture
    def context(self, redis_server: RedisServer) -> polysync.Context:
        return polysync.get_context("redis", url=redis_server.url, lease=2.0, anonymous_ttl=2.0)


class TestRedisCluster(LockTests, SemaphoreTests, EventTests, ConditionTests, BarrierTests):
    """Every key of a primitive shares one hash slot, so all of it works on a cluster."""

    @pytest.fixture
    def context(self, redis_cluster: Any) -> polysync.Context:
        return polysync.get_context("redis", url=redis_cluster.url, cluster=True)


class TestRedisResp3Client(LockTests, SemaphoreTests, EventTests, ConditionTests, BarrierTests):
    """A client passed in keeps its protocol: RESP3 works as well as polysync's RESP2."""

    @pytest.fixture
    def context(self, redis_server: RedisServer) -> polysync.Context:
        client = redis.Redis.from_url(redis_server.url, protocol=3)
        return polysync.get_context("redis", client=client, prefix="resp3", lease=2.0)


def test_protocol_is_resp2_unless_the_url_or_client_says_otherwise(
    redis_server: RedisServer,
) -> None:
    def protocol(ctx: polysync.Context) -> int:
        backend: Any = ctx.backend
        return int(backend.client.connection_pool.connection_kwargs["protocol"])

    assert protocol(polysync.get_context("redis", url=redis_server.url)) == 2
    assert protocol(polysync.get_context("redis", url=redis_server.url + "?protocol=3")) == 3
    client = redis.Redis.from_url(redis_server.url, protocol=3)
    ctx = polysync.get_context("redis", client=client)
    assert protocol(ctx) == 3
    assert ctx.backend.picklable_settings()["connection_kwargs"]["protocol"] == 3


@pytest.fixture
def ctx(redis_server_fresh: RedisServer) -> polysync.Context:
    return polysync.get_context(
        "redis", url=redis_server_fresh.url, prefix="t" + uuid.uuid4().hex[:6]
    )


def test_fencing_tokens_increase_across_holders(ctx: polysync.Context) -> None:
    lock = ctx.Lock(name="fenced")
    other = ctx.Lock(name="fenced")
    tokens = []
    for handle in (lock, other, lock, other):
        assert handle.acquire(timeout=5)
        tokens.append(handle.fencing_token)
        handle.release()
    assert tokens == sorted(tokens)
    assert len(set(tokens)) == 4
    sem = ctx.Semaphore(2)
    sem.acquire()
    first = sem.fencing_token
    sem.acquire()
    assert sem.fencing_token is not None
    assert first is not None
    assert sem.fencing_token > first


def _hold_and_die(ctx: polysync.Context, name: str, ready: Any) -> None:
    lock = ctx.Lock(name=name, lease=1.0)
    lock.acquire()
    ready.set()
    time.sleep(60)


def test_killed_holder_is_replaced_within_the_lease(ctx: polysync.Context) -> None:
    import multiprocessing

    mp = multiprocessing.get_context("spawn")
    ready = mp.Event()
    holder = mp.Process(target=_hold_and_die, args=(ctx, "victim", ready))
    holder.start()
    try:
        assert ready.wait(30)
        lock = ctx.Lock(name="victim")
        first = ctx.Lock(name="victim")
        assert first.acquire(False) is False
        os.kill(holder.pid or 0, signal.SIGKILL)
        start = time.monotonic()
        with pytest.warns(polysync.OwnerDiedWarning):
            assert lock.acquire(timeout=10) is True
        assert time.monotonic() - start < 1.0 + 0.5  # lease plus a small margin
        assert lock.owner_died
        lock.release()
    finally:
        holder.kill()
        holder.join(10)


def test_stopped_holder_learns_it_lost_the_lease(ctx: polysync.Context) -> None:
    code = textwrap.dedent(
        f"""
        import os, signal, sys, time, polysync
        ctx = polysync.get_context("redis", **{ctx.backend.picklable_settings()!r})
        lock = ctx.Lock(name="stopped", lease=1.0)
        lock.acquire()
        first = lock.fencing_token
        print("held", first, flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)   # frozen past the lease by itself
        time.sleep(0.5)                          # the renewer notices on its next round
        print("lost", lock.lost, flush=True)
        try:
            lock.release()
        except polysync.NotHeldError as exc:
            print("release", type(exc).__name__, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        held = proc.stdout.readline().split()
        assert held[0] == "held"
        other = ctx.Lock(name="stopped")
        with pytest.warns(polysync.OwnerDiedWarning):  # the frozen holder's lease ran out
            assert other.acquire(timeout=10) is True
        assert other.fencing_token is not None
        assert other.fencing_token > int(held[1])
        os.kill(proc.pid, signal.SIGCONT)
        rest = proc.stdout.read()
        assert "lost True" in rest
        assert "release LeaseLostError" in rest
        other.release()
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def _wait_queued(obj: Any, n: int, what: str, alive: Any = lambda: True) -> None:
    """Wait until *n* waiters are queued on *obj* (its statistics), while *alive* stays true."""

    def queued() -> bool:
        assert alive()
        waiting: int = obj.statistics().waiting
        return waiting >= n

    wait_for(queued, 10.0, what, interval=0.01)


@pytest.mark.parametrize("kind", ["Lock", "Semaphore"])
def test_waiter_killed_while_queued_holds_up_the_next_for_the_claim_only(
    ctx: polysync.Context, redis_server_fresh: RedisServer, kind: str
) -> None:
    from polysync.backends.redis.server import CLAIM

    lease = 60.0  # far longer than the claim window: only the claim may delay the next
    make = getattr(ctx, kind)
    args = () if kind == "Lock" else (1,)
    mine = make(*args, name="q", lease=lease)
    assert mine.acquire(timeout=5)
    code = textwrap.dedent(
        f"""
        import polysync
        ctx = polysync.get_context("redis", **{ctx.backend.picklable_settings()!r})
        obj = ctx.{kind}(*{args!r}, name="q", lease={lease})
        print("waiting", flush=True)
        obj.acquire(timeout=60)
        """
    )
    doomed = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert doomed.stdout is not None
        assert doomed.stdout.readline().strip() == "waiting"
        _wait_queued(mine, 1, "the doomed waiter queued")
        doomed.kill()  # dies queued: the release below grants it the object
        doomed.wait(10)
        nxt = make(*args, name="q", lease=lease)
        got: list[bool] = []
        waiter = threading.Thread(target=lambda: got.append(nxt.acquire(timeout=CLAIM + 5)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", polysync.OwnerDiedWarning)
            waiter.start()
            _wait_queued(mine, 2, "the next waiter queued", waiter.is_alive)
            mine.release()
            waiter.join(CLAIM + 10)
        assert got == [True]  # within the claim window, not the 60 s lease
        nxt.release()
    finally:
        _stop(doomed)


@pytest.mark.parametrize("kind", ["Lock", "Semaphore"])
def test_handed_off_holder_keeps_it_past_the_claim_window(
    ctx: polysync.Context, redis_server_fresh: RedisServer, kind: str
) -> None:
    from polysync.backends.redis.server import CLAIM

    make = getattr(ctx, kind)
    args = () if kind == "Lock" else (1,)
    first, second, third = (make(*args, name="held", lease=60.0) for _ in range(3))
    assert first.acquire(timeout=5)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(second.acquire(timeout=10)))
    waiter.start()
    _wait_queued(first, 1, "the waiter queued behind the holder")
    first.release()  # handed to the waiter, leased for the claim window until confirmed
    waiter.join(10)
    assert got == [True]
    time.sleep(CLAIM + 1.5)  # past the claim window: the renewer has confirmed the grant
    assert not second.lost
    assert third.acquire(False) is False
    second.release()
    assert third.acquire(False) is True
    third.release()


def test_frozen_server_is_an_error_within_the_callers_timeout_never_a_hang(
    redis_server_fresh: RedisServer,
) -> None:
    ctx = polysync.get_context("redis", url=redis_server_fresh.url, prefix="frozen")
    holder = ctx.Lock(name="l")
    assert holder.acquire(timeout=5)
    event = ctx.Event(name="e")
    outcomes: dict[str, object] = {}

    def attempt(label: str, operation: Any) -> None:
        start = time.monotonic()
        try:
            outcomes[label] = operation()
        except BaseException as exc:
            outcomes[label] = exc
        outcomes[label + " s"] = time.monotonic() - start

    waiters = [
        threading.Thread(
            target=attempt, args=("timed", lambda: ctx.Lock(name="l").acquire(timeout=2))
        ),
        threading.Thread(target=attempt, args=("untimed", lambda: ctx.Lock(name="l").acquire())),
        threading.Thread(target=attempt, args=("event", lambda: event.wait())),
    ]
    for t in waiters:
        t.start()
    time.sleep(0.5)  # all three parked in their BLPOPs
    redis_server_fresh.suspend()  # stops answering; its connections stay open
    try:
        for t in waiters:
            t.join(15)
        assert not any(t.is_alive() for t in waiters), outcomes
    finally:
        redis_server_fresh.resume()
    for label in ("timed", "untimed", "event"):
        error = outcomes[label]
        assert isinstance(error, polysync.BackendConnectionError), outcomes
        assert isinstance(error.__cause__, redis.exceptions.TimeoutError), outcomes
    # The timed caller hears within its timeout plus the read slack and the clean-up (1 s
    # each), with room for a loaded machine; before the bounds it took 8-10 s.
    assert float(outcomes["timed s"]) < 2 + 1 + 1 + 2, outcomes  # type: ignore[arg-type]


def test_server_killed_under_blocked_waiters(redis_server_fresh: RedisServer) -> None:
    ctx = polysync.get_context("redis", url=redis_server_fresh.url, prefix="kill")
    lock, event = ctx.Lock(), ctx.Event()
    lock.acquire()
    errors: list[BaseException] = []

    def blocked(fn: Any) -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=blocked, args=(lambda: lock.acquire(timeout=20),)),
        threading.Thread(target=blocked, args=(lambda: event.wait(20),)),
    ]
    for t in threads:
        t.start()
    time.sleep(0.3)
    start = time.monotonic()
    redis_server_fresh.kill()
    for t in threads:
        t.join(25)
    assert time.monotonic() - start < 20
    assert len(errors) == 2
    assert all(isinstance(e, polysync.BackendConnectionError) for e in errors), errors
    assert all(isinstance(e.__cause__, redis.exceptions.ConnectionError) for e in errors)
    redis_server_fresh.restart()
    fresh = polysync.get_context("redis", url=redis_server_fresh.url, prefix="kill2")
    assert fresh.Lock().acquire(timeout=5)
    # The old context reconnects too: its idle connections were closed by the restart.
    again = ctx.Lock(name="again")
    assert again.acquire(timeout=5)
    again.release()


def test_threads_that_come_and_go_neither_exhaust_the_pool_nor_leave_connections(
    redis_server_fresh: RedisServer,
) -> None:
    # redis-py 8 caps a pool at 100 connections; each thread's own connection is made
    # outside that quota and closed when its thread ends.
    ctx = polysync.get_context("redis", url=redis_server_fresh.url, prefix="churn")
    lock = ctx.Lock()
    failures: list[BaseException] = []

    def use() -> None:
        try:
            with lock:
                pass
        except BaseException as exc:
            failures.append(exc)

    def clients() -> int:
        listing = redis_server_fresh.command("CLIENT", "LIST")
        return len(_text(listing).splitlines())

    before = clients()
    for _ in range(150):
        thread = threading.Thread(target=use)
        thread.start()
        thread.join(10)
    assert failures == []
    assert clients() <= before + 3  # the main thread's lane and the pool's, not 150


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.mark.parametrize("kind", ["Event", "Condition", "Barrier"])
def test_fifty_waiters_all_released(ctx: polysync.Context, kind: str) -> None:
    n = 50
    results: list[object] = []
    lock = threading.Lock()
    if kind == "Event":
        obj: Any = ctx.Event()

        def wait() -> object:
            return obj.wait(30)
    elif kind == "Condition":
        obj = ctx.Condition()
        parked = ctx.Semaphore(0)

        def wait() -> object:
            with obj:
                parked.release()
                return obj.wait(30)
    else:
        obj = ctx.Barrier(n + 1, timeout=30)

        def wait() -> object:
            return obj.wait()

    def run() -> None:
        value = wait()
        with lock:
            results.append(value)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    if kind == "Event":
        time.sleep(0.5)
        obj.set()
    elif kind == "Condition":
        for _ in range(n):
            assert parked.acquire(timeout=30)
        with obj:
            obj.notify_all()
    else:
        obj.wait()
    for t in threads:
        t.join(40)
    assert len(results) == n
    if kind == "Barrier":  # distinct indexes from range(parties)
        assert len(set(results)) == n
        assert all(isinstance(r, int) and 0 <= r <= n for r in results)
    else:
        assert all(result is True for result in results)


def _hold_in_forked_child(lock: Any, sem: Any, results: Any) -> None:
    got = lock.acquire(timeout=PROMPT)
    results.put("acquired")
    time.sleep(2.5)  # past the lease: only renewal keeps it
    lost = lock.lost
    lock.release()
    sem.release()  # a plain signal: this process holds no permit
    sem.close()
    results.put((got, lost))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_starts_afresh_with_the_handles_it_inherits(ctx: polysync.Context) -> None:
    """Under the fork start method a child gets the parent's handles as they are: it must
    renew what it takes itself, and leave what the parent holds to the parent."""
    import multiprocessing

    lock = ctx.Lock(name="forked", lease=1.0)
    with lock:  # the parent's renewal is registered now, and is no use to a child
        pass
    sem = ctx.Semaphore(2, name="forked-sem", lease=1.0)
    assert sem.acquire(timeout=PROMPT)
    mp = multiprocessing.get_context("fork")
    results = mp.Queue()
    child = mp.Process(target=_hold_in_forked_child, args=(lock, sem, results))
    child.start()
    try:
        assert results.get(timeout=PROMPT) == "acquired"
        time.sleep(1.5)
        assert lock.acquire(timeout=0.2) is False, "the child's lease ran out: never renewed"
        assert results.get(timeout=PROMPT) == (True, False)
    finally:
        child.join(PROMPT)
    assert child.exitcode == 0
    time.sleep(1.5)  # past the lease again: the parent's permit is still renewed
    assert sem.lost is False, "the child's release or close took the parent's permit"
    assert sem.get_value() == 2
    sem.release()
    assert sem.get_value() == 3


def _pool_locks(client: Any) -> list[Any]:
    """The locks redis-py holds while it hands out connections (private: tests only)."""
    if hasattr(client, "get_nodes"):  # a cluster: one pool per node
        pools = [node.redis_connection.connection_pool for node in client.get_nodes()]
    else:
        pools = [client.connection_pool]
    return [pool._lock for pool in pools]


@pytest.mark.parametrize("deployment", ["standalone", "cluster"])
def test_a_handle_the_gc_drops_cleans_up_from_another_thread(
    deployment: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GC runs finalizers wherever it happens to be: inside redis-py holding a pool's
    lock (redis-py 5's is not reentrant: the finalizer's command used to deadlock there),
    or between a command and its reply on this thread's connection. A dropped handle
    sends nothing from the collecting thread, and its clean-up still happens."""
    fixture = "redis_cluster" if deployment == "cluster" else "redis_server"
    url = request.getfixturevalue(fixture).url
    ctx = polysync.get_context(
        "redis", url=url, cluster=deployment == "cluster", prefix="gc" + uuid.uuid4().hex[:6]
    )
    name = "dropped"
    watcher = ctx.Semaphore(2, name=name)
    sem = ctx.Semaphore(2, name=name)
    assert sem.acquire(timeout=PROMPT)
    backend = ctx.backend
    # A closing handle forgets its permits (they stay taken, not leased any more).
    (holders,) = [key for key in watcher._kernel.keys if key.endswith(":h")]
    assert backend.client.zcard(holders) == 1
    callers: list[int] = []
    run = backend.server.run

    def recording_run(*args: Any, **kwargs: Any) -> Any:
        callers.append(threading.get_ident())
        return run(*args, **kwargs)

    monkeypatch.setattr(backend.server, "run", recording_run)
    box: list[object] = [sem]
    del sem
    collector = collected_while_holding(box, _pool_locks(backend.client))
    assert collector not in callers, "the finalizer talked to redis from the GC's thread"
    wait_for(lambda: backend.client.zcard(holders) == 0, PROMPT, "the dropped handle's clean-up")
    # An explicit close still does everything before it returns.
    sem = ctx.Semaphore(2, name=name)
    assert sem.acquire(timeout=PROMPT)
    assert backend.client.zcard(holders) == 1
    sem.close()
    assert backend.client.zcard(holders) == 0
    assert watcher.get_value() == 0
    assert ctx.unlink(name) is True


def test_anonymous_objects_expire_when_nobody_uses_them(redis_server_fresh: RedisServer) -> None:
    ctx = polysync.get_context(
        "redis", url=redis_server_fresh.url, prefix="anon", anonymous_ttl=0.5
    )
    objs = [ctx.Lock(), ctx.Semaphore(2), ctx.Event(), ctx.Condition(), ctx.Barrier(2)]
    objs[0].acquire()
    objs[0].release()
    time.sleep(1.0)  # kept alive while open, past the TTL
    assert _keys(redis_server_fresh, "anon")
    assert objs[2].is_set() is False
    for obj in objs:
        obj.close()
    deadline = time.monotonic() + 5
    while _keys(redis_server_fresh, "anon") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _keys(redis_server_fresh, "anon") == []


def test_named_objects_persist_until_unlinked(
    ctx: polysync.Context, redis_server_fresh: RedisServer
) -> None:
    prefix = ctx.backend.settings["prefix"]
    lock = ctx.Lock(name="keep")
    lock.acquire()
    lock.release()
    lock.close()
    ev = ctx.Event(name="keep-ev")
    ev.set()
    ev.close()
    assert ctx.Event(name="keep-ev").is_set()  # survives its handles
    assert ctx.unlink("keep-ev") is True
    assert ctx.unlink("keep") is True
    assert ctx.unlink("keep") is False
    assert _keys(redis_server_fresh, prefix) == []


def test_secrets_never_shown(tmp_path: Any) -> None:
    with RedisServer(password="s3cret-pw", username="alice") as server:
        url = server.url
        assert "s3cret-pw" in url
        ctx = polysync.get_context("redis", url=url)
        lock = ctx.Lock()
        assert lock.acquire(timeout=5)
        for shown in (repr(ctx), repr(lock), ctx.backend.describe()):
            assert "s3cret-pw" not in shown
        twin = pickle.loads(pickle.dumps(lock))
        assert twin.locked()
        server.kill()
        with pytest.raises(polysync.BackendConnectionError) as info:
            lock.locked()
        assert "s3cret-pw" not in str(info.value)


def test_unix_socket_url() -> None:
    with RedisServer(unixsocket=True) as server:
        ctx = polysync.get_context("redis", url=server.unix_url)
        sem = ctx.Semaphore(1)
        assert sem.acquire(timeout=5)
        assert Child(_acquire_sem_in_child, sem).result() is False
        sem.release()


def _acquire_sem_in_child(sem: Any) -> bool:
    return bool(sem.acquire(timeout=0.1))


def test_existing_client_is_accepted_and_pickles(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    ctx = polysync.get_context("redis", client=client, prefix="client")
    lock = ctx.Lock()
    lock.acquire()
    assert Child(_acquire_sem_in_child, lock).result() is False
    lock.release()


def test_existing_connection_pool_is_accepted_and_pickles(redis_server: RedisServer) -> None:
    pool = redis.ConnectionPool.from_url(redis_server.url)
    ctx = polysync.get_context("redis", connection_pool=pool, prefix="pool")
    assert "connection pool" in repr(ctx)
    lock = ctx.Lock()
    lock.acquire()
    assert Child(_acquire_sem_in_child, lock).result() is False
    lock.release()
    assert Child(_acquire_sem_in_child, lock).result() is True
    pool.disconnect()


def test_sentinel(redis_sentinel: Any) -> None:
    ctx = polysync.get_context(
        "redis", sentinel=redis_sentinel.sentinels, service_name=redis_sentinel.service_name
    )
    event = ctx.Event()
    threading.Timer(0.1, event.set).start()
    assert event.wait(5)
    # This thread's own connection went where the sentinel said, not to a default address.
    backend: Any = ctx.backend
    assert backend.server._lanes._local.lane.conn.port == redis_sentinel.master.port


def test_sentinel_failover_moves_to_the_new_master(redis_sentinel_with_replica: Any) -> None:
    deployment = redis_sentinel_with_replica
    ctx = polysync.get_context(
        "redis",
        sentinel=deployment.sentinels,
        service_name=deployment.service_name,
        prefix="failover",
    )
    ready, never = ctx.Event(name="ready"), ctx.Event(name="never")
    lock = ctx.Lock(name="jobs")
    ready.set()
    assert lock.acquire(timeout=5)
    token = lock.fencing_token
    assert token is not None
    lock.release()
    # Replication is asynchronous: wait until the replica has every write so far.
    assert int(deployment.master.command("WAIT", 1, 5000)) == 1

    blocked: list[BaseException] = []

    def wait_forever() -> None:
        try:
            never.wait(30)
        except BaseException as exc:
            blocked.append(exc)

    waiter = threading.Thread(target=wait_forever)
    waiter.start()
    time.sleep(0.3)  # parked in its BLPOP on the old master
    deployment.failover()
    waiter.join(15)
    assert not waiter.is_alive()
    # The demoted master drops its blocked waiters (or, still connected, the next slice's
    # probe finds it refuses writes): a connection error, never a wait on the wrong server.
    assert len(blocked) == 1
    assert isinstance(blocked[0], polysync.BackendConnectionError), blocked

    failures: list[BaseException] = []

    def soon(operation: Any) -> Any:
        # An operation in flight on a connection to the old master fails once per
        # connection (this thread's own, then the pool's); the next one reconnects.
        for _ in range(5):
            try:
                return operation()
            except polysync.BackendConnectionError as exc:
                failures.append(exc)
        raise AssertionError(f"still failing after the failover: {failures}")

    assert soon(ready.is_set) is True  # the state came over with the promotion
    assert soon(lambda: lock.acquire(timeout=5)) is True
    assert lock.fencing_token is not None
    assert lock.fencing_token > token
    lock.release()
    assert len(failures) <= 2, failures
    assert deployment.replica is not None
    assert int(deployment.replica.command("EXISTS", lock._kernel.keys[2])) == 1  # the fence


def test_a_replica_is_a_connection_error_not_a_wait_on_the_wrong_server(
    redis_server_fresh: RedisServer,
) -> None:
    replica = RedisServer(
        name="replica", extra_args=["--replicaof", "127.0.0.1", str(redis_server_fresh.port)]
    )
    with replica:
        ctx = polysync.get_context("redis", url=replica.url, prefix="onreplica")
        with pytest.raises(polysync.BackendConnectionError, match="no longer a master"):
            ctx.Event(name="e")


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({}, TypeError),
        ({"url": 5}, TypeError),
        ({"connection_pool": "redis://127.0.0.1:1/0"}, TypeError),
        ({"url": "redis://127.0.0.1:1/0", "client": object()}, TypeError),
        ({"url": "redis://127.0.0.1:1/0", "lease": 0}, ValueError),
        ({"url": "redis://127.0.0.1:1/0", "lease": "30"}, TypeError),
        ({"url": "redis://127.0.0.1:1/0", "prefix": ""}, ValueError),
        ({"url": "redis://127.0.0.1:1/0", "bogus": 1}, TypeError),
    ],
)
def test_bad_options(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        polysync.get_context("redis", **options)


def test_bad_primitive_options(ctx: polysync.Context) -> None:
    with pytest.raises(TypeError, match="accepted: lease, on_lost"):
        ctx.Lock(lease_ms=5)
    with pytest.raises(ValueError, match="lease must be"):
        ctx.Lock(lease=-1)
    with pytest.raises(TypeError, match="for the 'posix' backend; accepted: none"):
        polysync.get_context("posix").Lock(lease=5)


def test_on_lost_callback(ctx: polysync.Context, redis_server_fresh: RedisServer) -> None:
    lost = threading.Event()
    lock = ctx.Lock(name="cb", lease=0.6, on_lost=lost.set)
    lock.acquire()
    client = redis.Redis.from_url(redis_server_fresh.url)
    client.flushall()  # the lease key disappears, as after a restart without persistence
    client.close()
    assert lost.wait(5)
    assert lock.lost


def test_no_keys_command_anywhere() -> None:
    import pathlib

    root = pathlib.Path(polysync.__file__).parent / "backends" / "redis"
    for path in root.rglob("*"):
        if path.suffix in (".py", ".lua"):
            text = path.read_text()
            assert "'KEYS'" not in text, path
            assert '"KEYS"' not in text, path
            assert ".keys(" not in text, path


def test_tls_url(tmp_path: Any) -> None:
    """rediss:// with the server's CA: the whole path runs over TLS."""
    from .redis_servers import free_port

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    tls_port = free_port()
    tls = [
        "--tls-port",
        str(tls_port),
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--tls-ca-cert-file",
        str(cert),
        "--tls-auth-clients",
        "no",
    ]
    with RedisServer(extra_args=tls):
        ctx = polysync.get_context(
            "redis", url=f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}", prefix="tls"
        )
        event = ctx.Event()
        threading.Timer(0.1, event.set).start()
        assert event.wait(10) is True
        lock = ctx.Lock()
        assert lock.acquire(timeout=5)
        assert Child(_acquire_sem_in_child, lock).result() is False  # reconnects over TLS
        lock.release()
        untrusted = polysync.get_context("redis", url=f"rediss://127.0.0.1:{tls_port}/0")
        with pytest.raises(polysync.BackendConnectionError, match="certificate"):
            untrusted.Lock()


def test_unreachable_cluster_is_a_clear_error() -> None:
    from .redis_servers import free_port

    with pytest.raises(polysync.BackendConnectionError, match="cannot be reached"):
        polysync.get_context("redis", url=f"redis://127.0.0.1:{free_port()}/0", cluster=True)


def test_handles_close_quietly_once_the_server_is_gone() -> None:
    with RedisServer() as server:
        ctx = polysync.get_context("redis", url=server.url, prefix="gone")
        objs = [ctx.Lock(), ctx.Semaphore(2), ctx.Event()]
        objs[1].acquire()
    for obj in objs:  # the server stopped: closing is best effort and never raises
        obj.close()
