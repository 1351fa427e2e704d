"""The redis backend's native asyncio acquires: no threads, bounded when frozen, cancel-safe."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import pytest

import polysync
import polysync.aio
from polysync.backends.redis.aiokernels import AsyncRedisLock, AsyncRedisSemaphore
from polysync.kernel import AsyncAcquire

from .redis_servers import RedisServer
from .test_aio import polysync_threads
from .test_aio import run as _run

pytest.importorskip("redis")


def _actx(server: RedisServer, **options: Any) -> polysync.aio.AsyncContext:
    return polysync.aio.get_context(
        "redis", url=server.url, prefix="a" + uuid.uuid4().hex[:6], **options
    )


async def _hand_over(lock: Any, pause: float) -> None:
    """Take *lock*, let a waiting task have it *pause* seconds later, and release that."""
    assert await lock.acquire(timeout=5)
    waiter = asyncio.create_task(lock.acquire(timeout=5))
    await asyncio.sleep(pause)
    await lock.release()
    assert await waiter
    await lock.release()


def test_plain_clients_get_native_kernels_rlocks_do_not(redis_server: RedisServer) -> None:
    actx = _actx(redis_server)
    assert isinstance(actx.Lock().sync._kernel, AsyncRedisLock)
    assert isinstance(actx.BoundedSemaphore(2).sync._kernel, AsyncRedisSemaphore)
    assert isinstance(actx.Lock().sync._kernel, AsyncAcquire)
    assert not isinstance(actx.RLock().sync._kernel, AsyncAcquire)  # thread-owned: pool path


def test_cluster_keeps_the_thread_path(redis_cluster: Any) -> None:
    ctx = polysync.get_context("redis", url=redis_cluster.url, cluster=True)
    actx = polysync.aio.AsyncContext(ctx)
    lock = actx.Lock()
    assert not isinstance(lock.sync._kernel, AsyncAcquire)

    _run(_hand_over(lock, 0.1))


def test_resp3_client_acquires_natively(redis_server: RedisServer) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.url, protocol=3)
    actx = polysync.aio.AsyncContext(
        polysync.get_context("redis", client=client, prefix="r3" + uuid.uuid4().hex[:6])
    )

    async def main() -> None:
        lock, sem = actx.Lock(), actx.BoundedSemaphore(1)
        assert isinstance(lock.sync._kernel, AsyncAcquire)
        for obj in (lock, sem):
            assert await obj.acquire(timeout=5)
            assert await obj.acquire(timeout=0.2) is False
            waiter = asyncio.create_task(obj.acquire(timeout=5))
            await asyncio.sleep(0.1)
            await obj.release()
            assert await waiter
            assert obj.fencing_token is not None
            await obj.release()

    try:
        _run(main())
    finally:
        client.close()


def test_waits_take_no_waiter_thread(redis_server: RedisServer) -> None:
    """40 locks with a task waiting on each: the pool path would use up to 16 threads."""
    actx = _actx(redis_server)

    async def main() -> int:
        locks = [actx.Lock() for _ in range(40)]
        for lock in locks:
            assert await lock.acquire()
        before = polysync_threads()
        waiters = [asyncio.create_task(lock.acquire()) for lock in locks]
        await asyncio.sleep(0.5)
        grown = polysync_threads() - before
        assert not any(w.done() for w in waiters)
        for lock in locks:
            lock.sync._kernel.release()  # straight to the kernel: no pool call either
        assert all(await asyncio.gather(*waiters))
        for lock in locks:
            await lock.release()
        return grown

    assert _run(main()) == 0


def test_sync_holder_hands_to_async_waiter_across_threads(redis_server: RedisServer) -> None:
    actx = _actx(redis_server)
    name = "handed-" + uuid.uuid4().hex[:6]
    sync_lock = actx.sync.Lock(name=name)
    assert sync_lock.acquire()

    async def main() -> tuple[bool, int | None]:
        lock = actx.Lock(name=name)
        waiter = asyncio.create_task(lock.acquire(timeout=10))
        await asyncio.sleep(0.2)
        threading.Thread(target=sync_lock.release).start()
        got = await waiter
        token = lock.fencing_token
        await lock.release()
        return got, token

    got, token = _run(main())
    assert got is True
    assert token is not None
    assert sync_lock.fencing_token is not None
    assert token > sync_lock.fencing_token


def test_frozen_server_raises_within_the_timeout(redis_server_fresh: RedisServer) -> None:
    actx = _actx(redis_server_fresh)

    async def main() -> tuple[float, float]:
        lock = actx.Lock()
        sem = actx.Semaphore(0)
        assert await lock.acquire()
        waiter = asyncio.create_task(lock.acquire())  # waits forever, in slices
        sem_waiter = asyncio.create_task(sem.acquire(timeout=1.0))
        await asyncio.sleep(0.3)
        redis_server_fresh.suspend()
        try:
            start = time.monotonic()
            with pytest.raises(polysync.BackendConnectionError):
                await sem_waiter
            timed = time.monotonic() - start
            with pytest.raises(polysync.BackendConnectionError):
                await waiter
            forever = time.monotonic() - start
        finally:
            redis_server_fresh.resume()
        return timed, forever

    timed, forever = _run(main())
    assert timed < 4.0  # its timeout plus the read slack and the clean-up
    assert forever < 6.0  # a slice (2 s) plus the read slack


def test_restarted_server_reconnects(redis_server_fresh: RedisServer) -> None:
    actx = _actx(redis_server_fresh)

    async def main() -> None:
        lock = actx.Lock()
        assert await lock.acquire(timeout=5)  # leaves an idle connection on this loop
        await lock.release()
        redis_server_fresh.restart()
        assert await lock.acquire(timeout=5)
        await lock.release()

    _run(main())


def test_successive_loops_close_what_they_leave(redis_server: RedisServer) -> None:
    actx = _actx(redis_server)
    lock = actx.Lock()
    aio: Any = actx.sync.backend.async_server  # type: ignore[attr-defined]
    left: list[Any] = []

    async def once() -> None:
        await _hand_over(lock, 0.05)
        state = aio._loops[asyncio.get_running_loop()]
        assert state.idle  # kept for the next exchange on this loop
        left.extend(state.idle)

    for _ in range(3):
        _run(once())
    assert left
    assert all(conn._writer is None for conn in left)  # closed as asyncio.run ended


@pytest.mark.parametrize("kind", ["Lock", "Semaphore"])
def test_acquire_whose_reply_was_lost_is_given_back(redis_server: RedisServer, kind: str) -> None:
    """The window a cancelled native acquire opens: the script took it, the reply never
    came. The clean-up finds it by the acquisition's own owner id and gives it back."""
    actx = _actx(redis_server)
    obj = actx.Lock() if kind == "Lock" else actx.Semaphore(1)
    kernel: Any = obj.sync._kernel
    owner = kernel._server.holder_id()
    taken = kernel._run("acquire", owner, kernel._lease_ms, "")  # as the lost exchange did
    assert int(taken[0]) == 1
    assert obj.sync.acquire(timeout=0.1) is False  # held by the lost acquisition
    kernel._abandon_soon(owner, "")
    assert obj.sync.acquire(timeout=5) is True  # given back by the renewer's thread
    obj.sync.release()


@pytest.mark.parametrize("kind", ["Lock", "Semaphore"])
def test_cancel_at_any_instant_of_a_native_wait(redis_server: RedisServer, kind: str) -> None:
    """A sync holder in a thread hands over while async acquires are cancelled at random
    instants (mid-exchange included): nothing is left held, no permit lost."""
    import random

    actx = _actx(redis_server, lease=30.0)
    name = "raced-" + uuid.uuid4().hex[:6]
    sync_obj: Any = (
        actx.sync.Lock(name=name) if kind == "Lock" else actx.sync.Semaphore(1, name=name)
    )
    stop = threading.Event()

    def holder() -> None:
        while not stop.is_set():
            if sync_obj.acquire(timeout=1):
                time.sleep(0.001)
                sync_obj.release()

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()

    async def main() -> None:
        rng = random.Random(3)
        obj: Any = actx.Lock(name=name) if kind == "Lock" else actx.Semaphore(1, name=name)
        for _ in range(150):
            task = asyncio.create_task(obj.acquire(timeout=2))
            await asyncio.sleep(rng.random() * 0.003)
            task.cancel()
            try:
                if await task:
                    await obj.release()  # the grant came before the cancel
            except asyncio.CancelledError:
                pass

    try:
        # Prompt: a cancelled wait left queued, or a grant left unclaimed, would hold up
        # the holder for the queue entry's liveness or the grant's claim window each time.
        _run(main(), bound=8)  # about half a second when nothing is left behind
    finally:
        stop.set()
        thread.join(10)
    # Every cancelled acquisition's clean-up has run (the renewer's thread): free.
    deadline = time.monotonic() + 5
    while not sync_obj.acquire(timeout=0.5):
        assert time.monotonic() < deadline, "left held"
    if kind == "Semaphore":
        assert sync_obj.get_value() == 0  # exactly one permit: this one
    sync_obj.release()


def test_releases_are_awaited_natively_and_finish_when_cancelled(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import polysync.aio.primitives as aio_primitives

    def no_pool() -> Any:
        raise AssertionError("a native acquire or release used polysync.aio's threads")

    prefix = "n" + uuid.uuid4().hex[:6]
    actx = polysync.aio.get_context("redis", url=redis_server.url, prefix=prefix)
    other = polysync.get_context("redis", url=redis_server.url, prefix=prefix)

    async def main() -> None:
        lock, sem = actx.Lock(name="r"), actx.BoundedSemaphore(1, name="s")
        for obj, twin in ((lock, other.Lock(name="r")), (sem, other.BoundedSemaphore(1, name="s"))):
            assert await obj.acquire()
            release = asyncio.create_task(obj.release())
            await asyncio.sleep(0)  # under way: its command is out
            release.cancel()
            with pytest.raises(asyncio.CancelledError):
                await release
            # Released all the same: a sync handle of the name (another client) takes it.
            assert await asyncio.to_thread(twin.acquire, True, 2)
            twin.release()
        with pytest.raises(polysync.NotHeldError):
            await lock.release()
        with pytest.raises(polysync.NotHeldError, match="released too many times"):
            await sem.release()

    monkeypatch.setattr(aio_primitives, "pool", no_pool)
    _run(main())
