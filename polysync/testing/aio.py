"""The conformance suite's asyncio tests: polysync.aio over the backend, for every backend.

polysync.aio stands on the kernel contract alone, so a backend that passes the sync suite
gets async primitives for free; these tests prove it (and a backend's native overrides,
such as :class:`~polysync.kernel.StoppableBarrier`). Each test runs its own
``asyncio.run()`` under one deadline; no pytest asyncio plugin is needed.
"""

from __future__ import annotations

import asyncio
import inspect
import pickle
import random
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import polysync
import polysync.aio
from polysync import Capability
from polysync.testing import _children
from polysync.testing.helpers import PROMPT, SHORT, Child, SuiteBase, in_thread, join_all, require

__all__ = ["AsyncTests"]


def run(main: Callable[[], Coroutine[Any, Any, object]], bound: float = PROMPT * 3) -> Any:
    """``asyncio.run(main())`` bounded by *bound* seconds."""

    async def bounded() -> object:
        return await asyncio.wait_for(main(), bound)

    return asyncio.run(bounded())


class AsyncTests(SuiteBase):
    """polysync.aio's primitives on the backend: semantics, interop with sync, cancellation."""

    @pytest.fixture
    def actx(self, context: polysync.Context) -> polysync.aio.AsyncContext:
        return polysync.aio.AsyncContext(context)

    def test_async_lock(self, actx: polysync.aio.AsyncContext) -> None:
        async def main() -> None:
            lock = actx.Lock()
            assert await lock.acquire() is True
            assert await lock.locked()
            assert await lock.acquire(False) is False
            assert await lock.acquire(blocking=False) is False
            assert await lock.acquire(timeout=SHORT) is False
            await lock.release()
            with pytest.raises(polysync.NotHeldError):
                await lock.release()
            async with lock as got:
                assert got is True
                assert await lock.locked()
            assert not await lock.locked()

        run(main)

    def test_async_with_lock_and_semaphore(self, actx: polysync.aio.AsyncContext) -> None:
        async def main() -> None:
            lock, sem = actx.Lock(), actx.Semaphore(2)
            for method in (lock.acquire, lock.release, sem.acquire, sem.release):
                assert inspect.iscoroutinefunction(method), method  # create_task takes them
            async with sem as got:
                assert got is True
                assert await sem.get_value() == 1
            assert await sem.get_value() == 2
            with pytest.raises(polysync.NotHeldError):
                async with lock:
                    await lock.release()
            entered: list[bool] = []

            async def enter() -> None:
                async with lock as took:
                    entered.append(took)

            async with lock:
                waiter = asyncio.create_task(enter())
                await asyncio.sleep(SHORT)
                assert entered == []  # the held lock keeps it waiting
            await asyncio.wait_for(waiter, PROMPT)
            assert entered == [True]
            assert not await lock.locked()

        run(main)

    def test_async_lock_counter_exact(self, actx: polysync.aio.AsyncContext) -> None:
        async def main() -> None:
            lock = actx.Lock()
            counter = 0

            async def work() -> None:
                nonlocal counter
                for _ in range(5):
                    async with lock:
                        seen = counter
                        await asyncio.sleep(0)
                        counter = seen + 1

            await asyncio.gather(*(work() for _ in range(40)))
            assert counter == 200
            assert not await lock.locked()

        run(main)

    def test_async_rlock_owned_by_task(self, actx: polysync.aio.AsyncContext) -> None:
        async def main() -> None:
            rlock = actx.RLock()
            async with rlock:
                async with rlock:
                    assert rlock._recursion_count() == 2

                async def other() -> tuple[bool, str]:
                    try:
                        await rlock.release()
                    except polysync.NotHeldError:
                        refused = "NotHeldError"
                    else:
                        refused = "released"
                    return await rlock.acquire(timeout=SHORT), refused

                assert await asyncio.create_task(other()) == (False, "NotHeldError")
            # The timed-out waiter's thread may be in a kernel wait slice as the lock is
            # released: it takes it for a moment, finds nobody waiting, and gives it back.
            deadline = time.monotonic() + PROMPT
            while await rlock.locked():
                assert time.monotonic() < deadline, "the lock stayed held after its release"
                await asyncio.sleep(0.01)
            assert await asyncio.create_task(rlock.acquire(timeout=PROMPT)) is True

            async def release_it() -> None:
                await rlock.release()

            # acquired by that (finished) task: this one does not own it
            with pytest.raises(polysync.NotHeldError):
                await release_it()

        run(main)

    def test_async_semaphores(self, actx: polysync.aio.AsyncContext) -> None:
        async def main() -> None:
            sem = actx.Semaphore(2)
            assert await sem.acquire()
            assert await sem.acquire()
            assert await sem.acquire(timeout=SHORT) is False
            waiter = asyncio.create_task(sem.acquire(timeout=PROMPT))
            await asyncio.sleep(SHORT)
            await sem.release()
            assert await waiter is True
            await sem.release(2)
            bounded = actx.BoundedSemaphore(1)
            async with bounded:
                pass
            with pytest.raises(polysync.NotHeldError):
                await bounded.release()
            if Capability.READABLE_VALUE in actx.capabilities:
                assert await bounded.get_value() == 1

        run(main)

    def test_async_event(self, actx: polysync.aio.AsyncContext) -> None:
        async def main() -> None:
            event = actx.Event()
            assert not await event.is_set()
            assert await event.wait(SHORT) is False
            waiters = [asyncio.create_task(event.wait(PROMPT)) for _ in range(20)]
            await asyncio.sleep(SHORT)
            await event.set()
            assert await asyncio.gather(*waiters) == [True] * 20
            await event.clear()
            assert await event.wait(0) is False

        run(main)

    def test_async_condition(self, actx: polysync.aio.AsyncContext) -> None:
        async def main() -> None:
            for cond in (actx.Condition(), actx.Condition(actx.Lock())):
                items: list[int] = []

                async def consume(
                    c: polysync.aio.Condition = cond, box: list[int] = items
                ) -> list[int]:
                    async with c:
                        while not box:  # wait_for would hide a lost notify (it checks last)
                            assert await c.wait(PROMPT) is True, "the notify was lost"
                        return box

                consumer = asyncio.create_task(consume())
                await asyncio.sleep(SHORT)
                async with cond:
                    items.append(1)
                    await cond.notify()
                assert await consumer == [1]
                async with cond:
                    assert await cond.wait(SHORT) is False
                with pytest.raises(polysync.NotHeldError):
                    await cond.notify()

        run(main)

    def test_async_barrier(self, actx: polysync.aio.AsyncContext) -> None:
        async def main() -> None:
            barrier = actx.Barrier(3)
            indices = await asyncio.gather(*(barrier.wait(PROMPT) for _ in range(3)))
            assert sorted(indices) == [0, 1, 2]
            assert not await barrier.broken()

        run(main)

    def test_cancelled_barrier_wait_leaves_it_unbroken(
        self, actx: polysync.aio.AsyncContext
    ) -> None:
        async def main() -> None:
            barrier = actx.Barrier(2)
            waiting = asyncio.create_task(barrier.wait(PROMPT))
            await asyncio.sleep(SHORT * 2)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert not await barrier.broken()
            assert await barrier.n_waiting() == 0
            indices = await asyncio.gather(barrier.wait(PROMPT), barrier.wait(PROMPT))
            assert sorted(indices) == [0, 1]

        from polysync.kernel import StoppableBarrier

        if not isinstance(actx.Barrier(2).sync._kernel, StoppableBarrier):
            pytest.skip("the backend's Barrier kernel is not a polysync.kernel.StoppableBarrier")
        run(main)

    def test_bad_input_same_errors_as_sync(self, actx: polysync.aio.AsyncContext) -> None:
        async def main() -> None:
            lock, sem = actx.Lock(), actx.Semaphore()
            cond, event = actx.Condition(), actx.Event()
            bads: list[tuple[Any, type[Exception]]] = [
                (-1, ValueError),
                ("1", TypeError),
                (float("nan"), ValueError),
            ]
            for bad, error in bads:
                with pytest.raises(error):
                    await lock.acquire(timeout=bad)
                with pytest.raises(error):
                    await event.wait(bad)
            with pytest.raises(ValueError, match="non-blocking"):
                await lock.acquire(False, 1)
            with pytest.raises(TypeError):
                await lock.acquire(blocking="yes")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="n must be"):
                await sem.release(0)
            with pytest.raises(TypeError):
                await sem.release(1.0)  # type: ignore[arg-type]
            async with cond:
                with pytest.raises(ValueError, match="n must be"):
                    await cond.notify(-1)
            with pytest.raises(ValueError, match="parties must be"):
                actx.Barrier(0)
            with pytest.raises(ValueError, match="value must be"):
                actx.Semaphore(-1)
            with pytest.raises(TypeError):
                actx.Lock(name=3)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                actx.Condition(lock.sync)  # type: ignore[arg-type]

        run(main)

    def test_cancelled_acquire_raises_and_holds_nothing(
        self, actx: polysync.aio.AsyncContext
    ) -> None:
        async def main() -> None:
            lock = actx.Lock()
            await lock.acquire()
            waiter = asyncio.create_task(lock.acquire())
            await asyncio.sleep(SHORT)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            with pytest.raises(asyncio.TimeoutError):  # wait_for cancels it
                await asyncio.wait_for(lock.acquire(), SHORT)
            await lock.release()
            assert await lock.acquire(timeout=PROMPT) is True
            await lock.release()

        run(main)

    def test_cancel_races_grant(self, actx: polysync.aio.AsyncContext) -> None:
        """A cancel at every instant around a grant: the counter exact, nothing leaked."""

        async def main() -> None:
            rng = random.Random(9)
            for lock in (actx.Lock(), actx.RLock(), actx.Semaphore(1)):
                counter = 0
                entered = 0

                async def contend(lk: Any = lock) -> None:
                    nonlocal counter, entered
                    async with lk:
                        entered += 1
                        seen = counter
                        try:
                            await asyncio.sleep(0)  # where a cancel may land, holding it
                        finally:
                            counter = seen + 1  # a lost update if two were inside

                for _ in range(40):
                    tasks = [asyncio.create_task(contend()) for _ in range(3)]
                    await asyncio.sleep(rng.random() * 0.004)
                    rng.choice(tasks).cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                assert counter == entered
                assert await lock.acquire(timeout=PROMPT) is True  # nothing leaked
                await lock.release()
                # A kernel wait that was in flight as its last waiter left may hold it
                # for a moment before giving it back: free soon, and for good.
                assert await _free_soon(lock)

        run(main, bound=PROMPT * 6)

    def test_semaphore_permits_conserved_under_cancellation(
        self, actx: polysync.aio.AsyncContext
    ) -> None:
        async def main() -> None:
            rng = random.Random(7)
            sem = actx.Semaphore(2)

            async def use() -> None:
                async with sem:
                    await asyncio.sleep(rng.random() * 0.002)

            for _ in range(30):
                tasks = [asyncio.create_task(use()) for _ in range(5)]
                await asyncio.sleep(rng.random() * 0.004)
                for task in rng.sample(tasks, 2):
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            assert await sem.acquire(timeout=PROMPT)
            assert await sem.acquire(timeout=PROMPT)
            assert await sem.acquire(timeout=SHORT) is False  # exactly two permits
            await sem.release(2)

        run(main, bound=PROMPT * 6)

    def test_sync_and_async_exclude_each_other(
        self, actx: polysync.aio.AsyncContext, context: polysync.Context, name: str
    ) -> None:
        require(context, Capability.NAMED)

        async def main() -> None:
            for kind in ("Lock", "RLock"):
                alock = getattr(actx, kind)(name=f"{name}-{kind}")
                slock = getattr(context, kind)(name=f"{name}-{kind}")
                held, go = threading.Event(), threading.Event()

                def hold(
                    lk: Any = slock, held: threading.Event = held, go: threading.Event = go
                ) -> None:
                    lk.acquire()
                    held.set()
                    go.wait(PROMPT)
                    lk.release()

                thread, _ = in_thread(hold)
                assert await asyncio.to_thread(held.wait, PROMPT)
                assert await alock.acquire(timeout=SHORT) is False
                go.set()
                assert await alock.acquire(timeout=PROMPT) is True
                join_all([thread])
                assert await asyncio.to_thread(_children.try_acquire, slock, SHORT) is False
                await alock.release()
                assert await asyncio.to_thread(_children.try_acquire, slock, PROMPT) is True
                alock.close()
                slock.close()
                await asyncio.to_thread(context.unlink, f"{name}-{kind}")

        run(main)

    def test_sync_notify_wakes_async_waiter(
        self, actx: polysync.aio.AsyncContext, context: polysync.Context
    ) -> None:
        async def main() -> None:
            acond = actx.Condition()
            scond = acond.sync
            got: list[bool] = []

            async def wait() -> None:
                async with acond:
                    got.append(await acond.wait(PROMPT))

            waiter = asyncio.create_task(wait())

            def notify() -> None:
                with scond:
                    scond.notify()

            # A notify before the waiter waits is lost (as it should be): notify until it
            # is woken, each from a sync thread.
            while not waiter.done():
                await asyncio.to_thread(notify)
                await asyncio.wait([waiter], timeout=SHORT)
            await waiter
            assert got == [True]

        run(main)

    def test_async_handles_pickle(self, actx: polysync.aio.AsyncContext, name: str) -> None:
        require(actx.sync, Capability.NAMED)

        async def main() -> None:
            lock = actx.Lock(name=name)
            copy = pickle.loads(pickle.dumps(lock))
            assert isinstance(copy, polysync.aio.Lock)
            assert copy.name == name
            await lock.acquire()
            assert await copy.acquire(timeout=SHORT) is False
            await lock.release()
            assert await copy.acquire(timeout=PROMPT) is True
            await copy.release()
            copy.close()
            lock.close()

        run(main)

    @pytest.mark.polysync_processes
    def test_async_waiter_gets_lock_from_child(
        self, actx: polysync.aio.AsyncContext, context: polysync.Context
    ) -> None:
        require(context, Capability.CROSS_PROCESS)

        async def main() -> None:
            alock = actx.Lock()
            held, go = context.Event(), context.Event()
            child = Child(_children.hold_until, alock.sync, held, go, PROMPT)
            assert await polysync.aio.Event.from_sync(held).wait(PROMPT)
            assert await alock.acquire(timeout=SHORT) is False
            waiter = asyncio.create_task(alock.acquire(timeout=PROMPT))
            await asyncio.sleep(SHORT)
            go.set()
            assert await waiter is True
            assert await asyncio.to_thread(child.result) is True
            await alock.release()

        run(main)


async def _free_soon(lock: Any, within: float = 2.0) -> bool:
    deadline = asyncio.get_running_loop().time() + within
    while await asyncio.create_task(_locked(lock)):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def _locked(lock: Any) -> bool:
    if isinstance(lock, polysync.aio.Semaphore):
        if not await lock.acquire(False):
            return True
        await lock.release()
        return False
    return bool(await lock.locked())
