"""polysync.aio beyond the shipped suite: loop lag, scale, thread bounds, loops and anyio."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import polysync
import polysync.aio
from polysync.aio._waiters import MAX_THREADS, pool
from tests.redis_servers.server import RedisServer

BACKENDS = ["posix", "thread", "redis"]


@pytest.fixture(params=BACKENDS)
def actx(request: pytest.FixtureRequest) -> Iterator[polysync.aio.AsyncContext]:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        yield polysync.aio.get_context("redis", url=server.url)
    else:
        yield polysync.aio.get_context(request.param)


def run(coro: Any, bound: float = 60.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, bound)

    return asyncio.run(bounded())


def polysync_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "polysync-aio-waiter")


def test_import_polysync_does_not_import_aio() -> None:
    code = (
        "import sys, polysync; polysync.get_context('posix').Lock(); "
        "print('polysync.aio' in sys.modules, 'asyncio' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_loop_never_blocked_while_200_tasks_wait(actx: polysync.aio.AsyncContext) -> None:
    async def main() -> float:
        lock = actx.Lock()
        await lock.acquire()
        waiters = [asyncio.create_task(lock.acquire()) for _ in range(200)]
        gaps: list[float] = []
        last = time.monotonic()
        for _ in range(100):  # a 10 ms ticker for a second
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
        await lock.release()
        for waiter in waiters:  # each takes it and hands it on
            await waiter
            await lock.release()
        return max(gaps)

    assert run(main()) < 0.1


def test_1000_tasks_one_lock_counter_exact_few_threads(
    actx: polysync.aio.AsyncContext, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline_threads = polysync_threads()  # idle ones left by earlier tests, reused
    peak = [0]
    connections = [0]
    count_connections = None
    if actx.name == "redis":
        import redis

        url = actx.sync.backend.settings["url"]
        assert isinstance(url, str)
        watcher = redis.Redis.from_url(url)
        baseline = len(watcher.client_list())

        def count_connections() -> int:
            return len(watcher.client_list()) - baseline

    async def main() -> int:
        lock = actx.Lock()
        counter = 0

        async def work() -> None:
            nonlocal counter
            async with lock:
                seen = counter
                await asyncio.sleep(0)
                counter = seen + 1
                peak[0] = max(peak[0], polysync_threads())
                if count_connections is not None and counter % 100 == 0:
                    connections[0] = max(connections[0], count_connections())

        await asyncio.gather(*(work() for _ in range(1000)))
        return counter

    assert run(main(), bound=120) == 1000
    with capsys.disabled():
        extra = f", peak extra redis connections {connections[0]}" if count_connections else ""
        print(
            f"\n[{actx.name}] 1000 tasks on one lock: peak waiter threads {peak[0]} "
            f"({baseline_threads} before){extra}"
        )
    if count_connections is not None:
        assert connections[0] <= 8
    # one kernel wait, plus release calls in flight on redis
    assert peak[0] <= max(baseline_threads, 8)


def test_150_primitives_each_with_a_waiter_stay_within_the_pool(
    actx: polysync.aio.AsyncContext,
) -> None:
    async def main() -> int:
        locks = [actx.Lock() for _ in range(150)]
        for lock in locks:
            await lock.acquire()
        waiters = [asyncio.create_task(lock.acquire()) for lock in locks]
        await asyncio.sleep(0.5)
        threads = polysync_threads()
        for lock, waiter in zip(locks, waiters, strict=True):
            await lock.release()
            assert await waiter
            await lock.release()
        return threads

    pinned_before = pool().threads - pool()._threads  # RLocks earlier tests left held
    threads = run(main(), bound=120)
    assert threads <= MAX_THREADS + pinned_before
    assert pool()._threads <= MAX_THREADS
    assert pool().threads - pool()._threads == pinned_before  # none pinned by plain locks


def test_default_executor_stays_free_while_200_wait(actx: polysync.aio.AsyncContext) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        from concurrent.futures import ThreadPoolExecutor

        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
        event = actx.Event()
        waiters = [asyncio.create_task(event.wait()) for _ in range(200)]
        await asyncio.sleep(0.2)
        # With two default workers, this would starve if waits used the default executor.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), 5) == 42
        await event.set()
        assert all(await asyncio.gather(*waiters))

    run(main())


def test_successive_asyncio_run_loops(actx: polysync.aio.AsyncContext) -> None:
    lock = actx.Lock()

    async def round_trip() -> bool:
        assert await lock.acquire()
        other = asyncio.create_task(lock.acquire(timeout=5))
        await asyncio.sleep(0.02)
        await lock.release()
        got: bool = await other
        await lock.release()
        return got

    for _ in range(3):
        assert asyncio.run(round_trip()) is True


def test_two_loops_in_two_threads(actx: polysync.aio.AsyncContext) -> None:
    lock = actx.Lock()
    counter = [0]
    errors: list[BaseException] = []

    async def work() -> None:
        for _ in range(50):
            async with lock:
                seen = counter[0]
                await asyncio.sleep(0)
                counter[0] = seen + 1

    async def both() -> None:
        await asyncio.wait_for(asyncio.gather(work(), work()), 60)

    def in_loop() -> None:
        try:
            asyncio.run(both())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=in_loop, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not errors
    assert counter[0] == 200


@pytest.mark.parametrize("kind", ["Lock", "Semaphore", "BoundedSemaphore"])
@pytest.mark.parametrize("backend", ["posix", "thread"])
def test_a_fast_acquire_waits_behind_tasks_of_its_loop(backend: str, kind: str) -> None:
    # The uncontended path tries the kernel without finding its loop's lane: it must
    # still queue behind tasks of this loop waiting there, with or without async with.
    actx = polysync.aio.get_context(backend)

    async def main() -> tuple[list[str], list[None]]:
        handle = getattr(actx, kind)()
        order: list[str] = []

        async def take(tag: str) -> None:
            async with handle:
                order.append(tag)

        await handle.acquire()
        waiters = [asyncio.create_task(take(tag)) for tag in "bc"]
        await asyncio.sleep(0.05)  # both queue in the lane
        await handle.release()  # hands it to b
        await take("a")  # at once: behind c
        await asyncio.gather(*waiters)
        await take("d")  # nobody queues now: straight through
        return order, handle._queued

    order, queued = run(main())
    assert order == ["b", "c", "a", "d"]
    assert queued == []


@pytest.mark.parametrize("kind", ["Lock", "Semaphore"])
@pytest.mark.parametrize("backend", ["posix", "thread"])
def test_a_fast_acquire_does_not_barge_when_a_sync_release_frees_the_kernel(
    backend: str, kind: str
) -> None:
    # A sync release does not hand over on the loop: the kernel is free until the lane's
    # waiter thread takes it, and a task of the loop trying it meanwhile would barge.
    actx = polysync.aio.get_context(backend)

    async def main() -> list[str]:
        handle = getattr(actx, kind)()
        order: list[str] = []

        async def take(tag: str) -> None:
            async with handle:
                order.append(tag)

        handle.sync.acquire()
        waiter = asyncio.create_task(take("b"))
        await asyncio.sleep(0.05)  # b queues; the lane's thread waits in the kernel
        handle.sync.release()
        await take("a")  # at once, before the loop hears of the grant
        await waiter
        return order

    for _ in range(5):
        assert run(main()) == ["b", "a"]


@pytest.mark.parametrize("backend", ["posix", "thread"])
def test_waiters_that_time_out_or_are_cancelled_leave_no_queue_behind(backend: str) -> None:
    # Once they are gone, the uncontended path is open again (nothing counted as queued).
    actx = polysync.aio.get_context(backend)

    async def main() -> None:
        for handle in (actx.Lock(), actx.Semaphore(1)):
            await handle.acquire()
            timed = [asyncio.create_task(handle.acquire(timeout=0.05)) for _ in range(5)]
            cancelled = [asyncio.create_task(handle.acquire()) for _ in range(5)]
            await asyncio.sleep(0.01)
            for task in cancelled:
                task.cancel()
            results = await asyncio.gather(*timed, *cancelled, return_exceptions=True)
            assert results[:5] == [False] * 5
            assert all(isinstance(r, asyncio.CancelledError) for r in results[5:])
            assert handle._queued == []
            await handle.release()
            assert await handle.acquire(blocking=False)
            await handle.release()

    run(main())


@pytest.mark.parametrize("backend", ["posix", "thread"])
def test_fast_release_errors_as_the_sync_release(backend: str) -> None:
    actx = polysync.aio.get_context(backend)

    async def main() -> None:
        lock, bounded = actx.Lock(), actx.BoundedSemaphore(1)
        for handle in (lock, bounded):
            with pytest.raises(polysync.NotHeldError):
                await handle.release()
            with pytest.raises(polysync.NotHeldError):
                await handle.__aexit__(None, None, None)
            handle.close()
            with pytest.raises(polysync.ClosedError):
                await handle.acquire()
            with pytest.raises(polysync.ClosedError):
                await handle.release()
            with pytest.raises(polysync.ClosedError):
                async with handle:
                    pass

    run(main())


def test_rlock_excludes_sync_holder_in_another_thread(actx: polysync.aio.AsyncContext) -> None:
    async def main() -> None:
        rlock = actx.RLock()
        held, go = threading.Event(), threading.Event()

        def hold() -> None:
            rlock.sync.acquire()
            held.set()
            go.wait(10)
            rlock.sync.release()

        thread = threading.Thread(target=hold, daemon=True)
        thread.start()
        await asyncio.to_thread(held.wait, 10)
        assert await rlock.acquire(timeout=0.05) is False
        go.set()
        assert await rlock.acquire(timeout=10) is True
        assert await asyncio.to_thread(lambda: rlock.sync.acquire(timeout=0.05)) is False
        await rlock.release()
        thread.join(10)

    run(main())


def test_cancelled_release_still_releases(actx: polysync.aio.AsyncContext) -> None:
    async def main() -> None:
        for lock in (actx.Lock(), actx.RLock()):
            held = asyncio.Event()

            async def use(lk: Any = lock, held: asyncio.Event = held) -> None:
                await lk.acquire()
                held.set()
                await lk.release()

            task = asyncio.create_task(use())
            await held.wait()
            task.cancel()  # lands inside release()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert not await lock.locked()

    run(main())


def test_wait_for_timeout_on_condition_keeps_lock_state(actx: polysync.aio.AsyncContext) -> None:
    async def main() -> None:
        cond = actx.Condition()

        async def waiter() -> None:
            async with cond:
                await cond.wait()

        for _ in range(5):
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(waiter(), 0.08)
        assert not await cond.lock.locked()
        async with cond:  # still usable
            assert await cond.wait(0.01) is False

    run(main())


def test_anyio_asyncio_backend() -> None:
    anyio = pytest.importorskip("anyio")

    async def main() -> int:
        actx = polysync.aio.get_context("thread")
        lock, rlock = actx.Lock(), actx.RLock()
        counter = 0

        async def work() -> None:
            nonlocal counter
            async with lock, rlock:
                seen = counter
                await anyio.sleep(0)
                counter = seen + 1

        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(work)
        with anyio.move_on_after(0.05):
            await lock.acquire()
            await lock.acquire()  # cancelled by the scope
        await lock.release()
        assert not await lock.locked()
        return counter

    assert anyio.run(main, backend="asyncio") == 20


def test_module_level_shortcuts_and_reprs() -> None:
    async def main() -> None:
        lock = polysync.aio.Lock()
        assert lock.context.name == polysync.get_context().name
        async with lock:
            pass
        assert repr(lock).startswith("<polysync.aio.Lock ")
        assert polysync.aio.Lock.__module__ == "polysync.aio"
        stats = await lock.statistics()
        assert stats.kind == "lock"

    run(main())


def test_docs_fastapi_example_runs_as_written() -> None:
    """docs/asyncio.md's FastAPI example, run as the page says: two uvicorn workers."""
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "examples" / "asyncio"
    out = subprocess.run(
        [sys.executable, "fastapi_app.py", "--selftest"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "selftest ok: 40 runs, one at a time" in out.stdout
    assert polysync.get_context("posix").unlink("examples-jobs-selftest") is False  # it cleaned up


@pytest.fixture(params=["redis", "postgres"])
def lock_backed(request: pytest.FixtureRequest) -> Iterator[polysync.aio.AsyncContext]:
    """A context whose RLock kernel is LockBacked (a depth over a Lock any thread releases)."""
    if request.param == "redis":
        server: Any = request.getfixturevalue("redis_server")
        yield polysync.aio.get_context("redis", url=server.url)
    else:
        server = request.getfixturevalue("pg_server")
        actx = polysync.aio.get_context("postgres", url=server.url, schema="aiorlock")
        yield actx
        actx.sync.backend.close()


def test_held_rlocks_over_a_lock_pin_no_thread(lock_backed: polysync.aio.AsyncContext) -> None:
    async def main() -> tuple[int, int]:
        # Each held one keeps a server session on postgres: a dozen, within its clients.
        rlocks = [lock_backed.RLock() for _ in range(12)]
        held = asyncio.Event()
        done = asyncio.Event()

        async def hold(rlock: polysync.aio.RLock) -> None:
            async with rlock, rlock:  # reentered by the same task
                await held.wait()
            done.set()

        for rlock in rlocks:
            assert isinstance(rlock.sync._kernel, polysync.kernel.LockBacked)
        pinned_before = pool().threads - pool()._threads
        tasks = [asyncio.create_task(hold(r)) for r in rlocks]
        for _ in range(200):  # until every task holds its RLock
            if all(r._is_owned() is False and r._holding is not None for r in rlocks):
                break
            await asyncio.sleep(0.02)
        pinned = pool().threads - pool()._threads - pinned_before
        # A sync holder in a thread of this process is excluded meanwhile.
        blocked = await asyncio.to_thread(rlocks[0].sync.acquire, True, 0.2)
        held.set()
        await asyncio.gather(*tasks)

        def take_and_give_back() -> bool:
            if not rlocks[0].sync.acquire(True, 5):
                return False
            rlocks[0].sync.release()  # in the thread that took it
            return True

        freed = await asyncio.to_thread(take_and_give_back)
        for rlock in rlocks:
            rlock.close()
        return pinned, int(blocked) * 10 + int(freed)

    pinned, exclusion = run(main())
    assert pinned == 0, f"{pinned} threads pinned by 12 held async RLocks"
    assert exclusion == 1  # held: the sync acquire timed out; released: it got it


def test_a_condition_over_an_rlock_over_a_lock_waits_and_is_notified(
    lock_backed: polysync.aio.AsyncContext,
) -> None:
    async def main() -> list[int]:
        cond = lock_backed.Condition()  # its own RLock
        items: list[int] = []
        got: list[int] = []

        async def consumer() -> None:
            async with cond:
                async with cond.lock:  # reentered while it waits below
                    ok = await cond.wait_for(lambda: items, timeout=10)
                    assert ok
                    got.append(items.pop())
                assert cond.lock._is_owned()  # type: ignore[union-attr]

        task = asyncio.create_task(consumer())
        await asyncio.sleep(0.2)
        async with cond:
            items.append(7)
            await cond.notify()
        await task
        cond.close()
        return got

    assert run(main()) == [7]
