"""The conformance suite: every primitive's contract, for any backend, as pytest test classes.

A backend proves itself by subclassing :class:`BackendSuite` and overriding one fixture::

    import polysync
    import pytest
    from polysync.testing import BackendSuite

    class TestMyBackend(BackendSuite):
        @pytest.fixture
        def context(self):
            return polysync.get_context("mine")

Tests that need an optional behaviour are gated on the backend's declared
:class:`~polysync.Capability` and skip, naming the capability, when it is absent. New
tests arrive behind new capabilities, so upgrading polysync does not turn a plugin's CI
red. Every test is bounded in time and unlinks the names it used. The bound is your
run's own ``--timeout`` (pytest-timeout) where you set one; without one, polysync's
pytest plugin gives each suite test 60 s (120 s for tests that start processes). Threads
and child processes the suite starts are daemons, so a broken backend fails tests but
never keeps the run from exiting.
"""

from __future__ import annotations

import math
import multiprocessing
import pickle
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import polysync
from polysync import Capability
from polysync.testing import _children
from polysync.testing.aio import AsyncTests
from polysync.testing.capabilities import (
    CleanupTests,
    ClosedHandleTests,
    CrossHostTests,
    FencingTests,
    LeaseTests,
    ListingTests,
    OrphanCollectionTests,
    OwnerDeathTests,
    SharedCellsTests,
    StatisticsTests,
)
from polysync.testing.helpers import (
    PROMPT,
    SHORT,
    Child,
    SuiteBase,
    eventually,
    in_thread,
    join_all,
    require,
)

__all__ = [
    "BackendSuite",
    "BarrierTests",
    "ConditionTests",
    "CrossProcessTests",
    "EventTests",
    "LockTests",
    "NamingTests",
    "PicklingTests",
    "RLockTests",
    "SemaphoreTests",
]


class LockTests(SuiteBase):
    def test_acquire_release(self, context: polysync.Context) -> None:
        lock = context.Lock()
        assert lock.acquire() is True
        assert lock.locked()
        assert lock.acquire(False) is False
        assert lock.acquire(block=False) is False
        assert lock.acquire(blocking=False) is False
        lock.release()
        assert not lock.locked()
        assert lock.acquire(timeout=0) is True
        lock.release()

    def test_timeout_waits_then_fails(self, context: polysync.Context) -> None:
        lock = context.Lock()
        lock.acquire()
        start = time.monotonic()
        assert lock.acquire(timeout=0.1) is False
        assert time.monotonic() - start >= 0.09
        lock.release()

    def test_release_unheld_raises_value_and_runtime_error(self, context: polysync.Context) -> None:
        lock = context.Lock()
        with pytest.raises(polysync.NotHeldError) as info:
            lock.release()
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value, RuntimeError)
        assert lock.acquire(False) is True  # the failed release changed nothing

    def test_context_manager(self, context: polysync.Context) -> None:
        lock = context.Lock()
        with lock as got:
            assert got is True
            assert lock.locked()
        assert not lock.locked()

    def test_another_thread_may_release(self, context: polysync.Context) -> None:
        lock = context.Lock()
        lock.acquire()
        thread, _ = in_thread(lock.release)
        thread.join(PROMPT)
        assert not lock.locked()

    def test_waiting_thread_gets_it_on_release(self, context: polysync.Context) -> None:
        lock = context.Lock()
        lock.acquire()
        thread, out = in_thread(lambda: lock.acquire(timeout=PROMPT))
        time.sleep(SHORT)
        assert not out
        lock.release()
        thread.join(PROMPT)
        assert out == [True]
        lock.release()

    def test_threads_keep_a_counter_exact(self, context: polysync.Context) -> None:
        lock = context.Lock()
        counter = [0]

        def work() -> None:
            for _ in range(300):
                with lock:
                    value = counter[0]
                    time.sleep(0)
                    counter[0] = value + 1

        threads = [threading.Thread(target=work, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        join_all(threads)
        assert counter[0] == 1200

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"timeout": -1}, ValueError),
            ({"timeout": math.nan}, ValueError),
            ({"timeout": "1"}, TypeError),
            ({"timeout": True}, TypeError),
            ({"block": "yes"}, TypeError),
            ({"block": False, "timeout": 1}, ValueError),
            ({"block": False, "blocking": False}, TypeError),
        ],
    )
    def test_bad_arguments(
        self, context: polysync.Context, kwargs: dict[str, Any], error: type[Exception]
    ) -> None:
        lock = context.Lock()
        with pytest.raises(error) as info:
            lock.acquire(**kwargs)
        shown = next(iter(kwargs.values())) if len(kwargs) == 1 else None
        if shown is not None and not (isinstance(shown, float) and math.isnan(shown)):
            assert repr(shown) in str(info.value)
        assert not lock.locked()

    def test_infinite_timeout_means_forever(self, context: polysync.Context) -> None:
        lock = context.Lock()
        assert lock.acquire(timeout=math.inf) is True
        lock.release()


class RLockTests(SuiteBase):
    def test_recursion(self, context: polysync.Context) -> None:
        rlock = context.RLock()
        for depth in range(1, 5):
            assert rlock.acquire() is True
            assert rlock._recursion_count() == depth
        for _ in range(4):
            rlock.release()
        assert not rlock.locked()
        with pytest.raises(polysync.NotHeldError):
            rlock.release()

    def test_other_thread_neither_acquires_nor_releases(self, context: polysync.Context) -> None:
        rlock = context.RLock()
        rlock.acquire()
        thread, out = in_thread(lambda: rlock.acquire(timeout=SHORT))
        thread.join(PROMPT)
        assert out == [False]
        thread, out = in_thread(lambda: _children.release_foreign(rlock))
        thread.join(PROMPT)
        assert out == ["NotHeldError"]
        assert rlock._is_owned()
        rlock.release()
        assert not rlock._is_owned()

    def test_handed_to_waiting_thread(self, context: polysync.Context) -> None:
        rlock = context.RLock()
        rlock.acquire()
        rlock.acquire()
        thread, out = in_thread(lambda: _children.try_acquire(rlock, PROMPT))
        rlock.release()
        time.sleep(SHORT)
        assert not out  # still held once
        rlock.release()
        thread.join(PROMPT)
        assert out == [True]


class SemaphoreTests(SuiteBase):
    def test_counts(self, context: polysync.Context) -> None:
        sem = context.Semaphore(2)
        assert sem.acquire()
        assert sem.acquire()
        assert sem.acquire(False) is False
        sem.release(2)
        assert sem.acquire(timeout=SHORT) is True

    def test_get_value(self, context: polysync.Context) -> None:
        require(context, Capability.READABLE_VALUE)
        sem = context.Semaphore(3)
        sem.acquire()
        assert sem.get_value() == 2
        sem.release(3)
        assert sem.get_value() == 5

    def test_zero_blocks_until_released(self, context: polysync.Context) -> None:
        sem = context.Semaphore(0)
        thread, out = in_thread(lambda: sem.acquire(timeout=PROMPT))
        time.sleep(SHORT)
        assert not out
        sem.release()
        thread.join(PROMPT)
        assert out == [True]

    def test_bounded_over_release(self, context: polysync.Context) -> None:
        sem = context.BoundedSemaphore(2)
        sem.acquire()
        sem.release()
        with pytest.raises(polysync.NotHeldError) as info:
            sem.release()
        assert isinstance(info.value, ValueError)
        assert sem.acquire(False)
        assert sem.acquire(False)
        assert not sem.acquire(False)

    def test_context_manager(self, context: polysync.Context) -> None:
        sem = context.BoundedSemaphore(1)
        with sem:
            assert sem.acquire(False) is False
        assert sem.acquire(False) is True

    @pytest.mark.parametrize(
        ("value", "error"),
        [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)],
    )
    def test_bad_value(self, context: polysync.Context, value: Any, error: type[Exception]) -> None:
        with pytest.raises(error, match=repr(value).replace(".", r"\.")):
            context.Semaphore(value)

    def test_bad_release_count(self, context: polysync.Context) -> None:
        sem = context.Semaphore(0)
        with pytest.raises(ValueError, match="n must be >= 1"):
            sem.release(0)


class EventTests(SuiteBase):
    def test_set_clear(self, context: polysync.Context) -> None:
        event = context.Event()
        assert not event.is_set()
        assert event.wait(SHORT) is False
        event.set()
        assert event.is_set()
        assert event.wait() is True
        assert event.wait(0) is True
        event.clear()
        assert not event.is_set()
        assert event.wait(0) is False

    def test_set_wakes_every_waiting_thread(self, context: polysync.Context) -> None:
        event = context.Event()
        runs = [in_thread(lambda: event.wait(PROMPT)) for _ in range(5)]
        time.sleep(SHORT)
        event.set()
        for thread, out in runs:
            thread.join(PROMPT)
            assert out == [True]

    def test_waiter_woken_even_if_cleared_right_after(self, context: polysync.Context) -> None:
        event = context.Event()
        runs = [in_thread(lambda: event.wait(PROMPT)) for _ in range(3)]
        time.sleep(SHORT)
        event.set()
        event.clear()
        for thread, out in runs:
            thread.join(PROMPT)
            assert out == [True]

    def test_bad_timeout(self, context: polysync.Context) -> None:
        event = context.Event()
        with pytest.raises(ValueError, match=r"-0\.5"):
            event.wait(-0.5)


class ConditionTests(SuiteBase):
    def test_requires_the_lock(self, context: polysync.Context) -> None:
        cond = context.Condition()
        with pytest.raises(polysync.NotHeldError):
            cond.wait(SHORT)
        with pytest.raises(RuntimeError):
            cond.notify()
        with pytest.raises(RuntimeError):
            cond.notify_all()

    def test_wait_times_out(self, context: polysync.Context) -> None:
        cond = context.Condition()
        with cond:
            start = time.monotonic()
            assert cond.wait(0.1) is False
            assert time.monotonic() - start >= 0.09
            assert cond.lock._is_owned()  # type: ignore[union-attr]

    @pytest.mark.parametrize("lock_kind", ["RLock", "Lock"])
    def test_notify_wakes_at_most_n(self, context: polysync.Context, lock_kind: str) -> None:
        cond = context.Condition(getattr(context, lock_kind)())
        parked = [0]
        woken: list[bool] = []

        def waiter() -> None:
            with cond:
                parked[0] += 1
                woken.append(cond.wait(PROMPT))

        threads = [threading.Thread(target=waiter, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()

        def all_parked() -> bool:
            with cond:
                return parked[0] == 3

        eventually(all_parked, "three threads wait on the condition")
        with cond:
            cond.notify(1)
        eventually(lambda: len(woken) == 1, "one waiter wakes")
        time.sleep(SHORT * 2)
        assert woken == [True]
        with cond:
            cond.notify(5)
        for t in threads:
            t.join(PROMPT)
        assert woken == [True, True, True]

    def test_a_waiter_waiting_again_after_timeouts_misses_no_notify(
        self, context: polysync.Context
    ) -> None:
        # A notify sent as a wait times out must still reach it: a caller that waits
        # again, as polysync.aio does in slices, would otherwise wait forever.
        cond = context.Condition()
        rounds = 40
        began = [0]
        outcomes: list[bool] = []

        def waiter() -> None:
            pick = random.Random(1)
            for _ in range(rounds):
                with cond:
                    began[0] += 1
                    deadline = time.monotonic() + PROMPT
                    while not cond.wait(pick.choice((0.0, 0.002, 0.01))):
                        if time.monotonic() > deadline:
                            outcomes.append(False)  # the notify was lost
                            return
                    outcomes.append(True)

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        pick = random.Random(2)
        for round_ in range(1, rounds + 1):

            def begun(r: int = round_) -> bool:
                with cond:
                    return began[0] >= r

            eventually(begun, f"the waiter begins round {round_}")
            time.sleep(pick.uniform(0, 0.01))
            with cond:
                cond.notify()

            def ended(r: int = round_) -> bool:
                return len(outcomes) >= r

            eventually(ended, f"round {round_} ends", PROMPT * 2)
            if not outcomes[-1]:
                break
        join_all([thread])
        assert outcomes == [True] * rounds

    def test_wait_for(self, context: polysync.Context) -> None:
        cond = context.Condition()
        box = [0]

        def producer() -> None:
            for _ in range(3):
                time.sleep(0.01)
                with cond:
                    box[0] += 1
                    cond.notify_all()

        thread = threading.Thread(target=producer, daemon=True)
        thread.start()
        with cond:
            assert cond.wait_for(lambda: box[0] == 3, PROMPT) is True
        join_all([thread])
        with cond:
            assert cond.wait_for(lambda: box[0] == 4, SHORT) is False

    def test_recursive_lock_is_restored(self, context: polysync.Context) -> None:
        cond = context.Condition()
        with cond, cond:
            cond.wait(0.01)
            assert cond.lock._recursion_count() == 2  # type: ignore[union-attr]

    def test_rejects_foreign_lock(self, context: polysync.Context) -> None:
        with pytest.raises(TypeError, match="polysync Lock or RLock"):
            context.Condition(threading.Lock())  # type: ignore[arg-type]


class BarrierTests(SuiteBase):
    def test_threads_get_distinct_indexes_and_action_runs_once(
        self, context: polysync.Context
    ) -> None:
        runs: list[int] = []
        barrier = context.Barrier(3, action=lambda: runs.append(1), timeout=PROMPT)
        assert barrier.parties == 3
        results = [in_thread(barrier.wait) for _ in range(3)]
        indexes = []
        for thread, out in results:
            thread.join(PROMPT)
            indexes += out
        assert sorted(indexes) == [0, 1, 2]
        assert runs == [1]
        assert barrier.n_waiting == 0
        assert not barrier.broken

    def test_reusable_for_phases(self, context: polysync.Context) -> None:
        barrier = context.Barrier(2)
        thread, out = in_thread(lambda: [barrier.wait(PROMPT) for _ in range(5)])
        mine = [barrier.wait(PROMPT) for _ in range(5)]
        thread.join(PROMPT)
        assert all(sorted(pair) == [0, 1] for pair in zip(mine, out[0], strict=False))

    def test_timeout_breaks_it(self, context: polysync.Context) -> None:
        barrier = context.Barrier(2)
        with pytest.raises(polysync.BrokenBarrierError) as info:
            barrier.wait(0.05)
        assert isinstance(info.value, threading.BrokenBarrierError)
        assert barrier.broken
        with pytest.raises(threading.BrokenBarrierError):
            barrier.wait(PROMPT)
        barrier.reset()
        assert not barrier.broken

    def test_default_timeout(self, context: polysync.Context) -> None:
        barrier = context.Barrier(2, timeout=0.05)
        with pytest.raises(polysync.BrokenBarrierError):
            barrier.wait()

    def test_abort_and_reset_release_waiters(self, context: polysync.Context) -> None:
        barrier = context.Barrier(3)
        runs = [in_thread(lambda: _children.barrier_wait_broken(barrier, PROMPT)) for _ in "ab"]
        eventually(lambda: barrier.n_waiting == 2, "two parties wait")
        barrier.abort()
        for thread, out in runs:
            thread.join(PROMPT)
            assert out == ["broken"]
        barrier.reset()
        runs = [in_thread(lambda: _children.barrier_wait_broken(barrier, PROMPT)) for _ in "ab"]
        eventually(lambda: barrier.n_waiting == 2, "two parties wait again")
        barrier.reset()
        for thread, out in runs:
            thread.join(PROMPT)
            assert out == ["broken"]
        assert not barrier.broken

    def test_action_error_breaks_it(self, context: polysync.Context) -> None:
        def boom() -> None:
            raise KeyError("action failed")

        barrier = context.Barrier(1, action=boom)
        with pytest.raises(KeyError):
            barrier.wait(PROMPT)
        assert barrier.broken

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"parties": 0}, ValueError),
            ({"parties": 2.0}, TypeError),
            ({"parties": 2, "action": 5}, TypeError),
            ({"parties": 2, "timeout": -1}, ValueError),
        ],
    )
    def test_bad_arguments(
        self, context: polysync.Context, kwargs: dict[str, Any], error: type[Exception]
    ) -> None:
        with pytest.raises(error):
            context.Barrier(**kwargs)


class NamingTests(SuiteBase):
    def test_same_name_same_object(self, context: polysync.Context, name: str) -> None:
        require(context, Capability.NAMED)
        first, second = context.Lock(name=name), context.Lock(name=name)
        assert first.name == name
        first.acquire()
        assert second.acquire(False) is False
        second.release()
        assert first.acquire(False) is True
        first.release()

    def test_named_semaphore_first_value_wins(self, context: polysync.Context, name: str) -> None:
        require(context, Capability.NAMED)
        require(context, Capability.READABLE_VALUE)
        context.Semaphore(2, name=name)
        assert context.Semaphore(7, name=name).get_value() == 2

    def test_other_kind_is_rejected(self, context: polysync.Context, name: str) -> None:
        require(context, Capability.NAMED)
        context.Lock(name=name)
        with pytest.raises(
            polysync.KindMismatchError, match=r"exists as a lock \(asked for a event\)"
        ):
            context.Event(name=name)

    def test_bound_and_parties_must_match(self, context: polysync.Context, name: str) -> None:
        require(context, Capability.NAMED)
        context.BoundedSemaphore(2, name=name)
        with pytest.raises(polysync.KindMismatchError):
            context.BoundedSemaphore(3, name=name)
        context.unlink(name)
        context.Barrier(2, name=name)
        with pytest.raises(polysync.KindMismatchError):
            context.Barrier(3, name=name)

    def test_unlink_makes_a_fresh_object(self, context: polysync.Context, name: str) -> None:
        require(context, Capability.NAMED)
        event = context.Event(name=name)
        event.set()
        event.unlink()
        assert context.Event(name=name).is_set() is False
        assert context.unlink(name) is True
        assert context.unlink(name) is False

    def test_every_kind_named(self, context: polysync.Context, name: str) -> None:
        require(context, Capability.NAMED)
        makers: list[Callable[[str], Any]] = [
            lambda n: context.Lock(name=n),
            lambda n: context.RLock(name=n),
            lambda n: context.Semaphore(1, name=n),
            lambda n: context.BoundedSemaphore(1, name=n),
            lambda n: context.Event(name=n),
            lambda n: context.Condition(name=n),
            lambda n: context.Barrier(2, name=n),
        ]
        for i, make in enumerate(makers):
            obj = make(f"{name}-{i}")
            assert obj.name == f"{name}-{i}"
            obj.close()
            obj.unlink()
            context.unlink(f"{name}-{i}.lock")

    @pytest.mark.parametrize(
        ("bad", "error"),
        [("", ValueError), ("a\0b", ValueError), ("x" * 256, ValueError), (42, TypeError)],
    )
    def test_bad_names(self, context: polysync.Context, bad: Any, error: type[Exception]) -> None:
        with pytest.raises(error):
            context.Lock(name=bad)

    def test_odd_names_are_kept_apart(self, context: polysync.Context, name: str) -> None:
        require(context, Capability.NAMED)
        odd = [f"{name}/a", f"{name} a", f"{name}-a", f"{name}é", f"{name}" + "y" * 230]
        locks = [context.Lock(name=n) for n in odd]
        locks[0].acquire()
        assert all(lock.acquire(False) for lock in locks[1:])
        for n in odd:
            context.unlink(n)

    def test_closed_handle_raises(self, context: polysync.Context) -> None:
        lock = context.Lock()
        lock.close()
        lock.close()  # idempotent
        with pytest.raises(polysync.ClosedError):
            lock.acquire()
        with pytest.raises(polysync.ClosedError):
            pickle.dumps(lock)
        assert "closed" in repr(lock)


class PicklingTests(SuiteBase):
    def test_round_trip_shares_state(self, context: polysync.Context) -> None:
        lock = context.Lock()
        twin = pickle.loads(pickle.dumps(lock))
        lock.acquire()
        assert twin.acquire(False) is False
        twin.release()
        event = context.Event()
        pickle.loads(pickle.dumps(event)).set()
        assert event.is_set()
        cond = context.Condition()
        twin_cond = pickle.loads(pickle.dumps(cond))
        with twin_cond:
            assert cond.lock.locked()
        barrier = context.Barrier(1, timeout=3.0)
        assert pickle.loads(pickle.dumps(barrier)).wait() == 0

    def test_context_round_trip(self, context: polysync.Context) -> None:
        twin = pickle.loads(pickle.dumps(context))
        assert twin.name == context.name


# Marked per test, not per class: class marks reach every test of BackendSuite via the MRO.
# The mark tells polysync's pytest plugin to allow these more time when the run sets none.
def _cross_process_test(fn: Callable[..., None]) -> Callable[..., None]:
    marked: Callable[..., None] = pytest.mark.polysync_processes(
        pytest.mark.usefixtures("cross_process")(fn)
    )
    return marked


class CrossProcessTests(SuiteBase):
    """Primitives passed to, and opened by, separate processes (spawn: fresh interpreters)."""

    @pytest.fixture
    def cross_process(self, context: polysync.Context) -> None:
        require(context, Capability.CROSS_PROCESS)

    @_cross_process_test
    def test_lock_excludes_another_process(self, context: polysync.Context) -> None:
        lock = context.Lock()
        lock.acquire()
        assert Child(_children.try_acquire, lock, SHORT).result() is False
        lock.release()
        assert Child(_children.try_acquire, lock, PROMPT).result() is True

    @_cross_process_test
    def test_lock_handed_from_child(self, context: polysync.Context) -> None:
        lock, held, go = context.Lock(), context.Event(), context.Event()
        child = Child(_children.hold_until, lock, held, go, PROMPT)
        assert held.wait(PROMPT)
        assert lock.acquire(timeout=SHORT) is False
        go.set()
        assert lock.acquire(timeout=PROMPT) is True
        assert child.result() is True

    @_cross_process_test
    def test_rlock_owned_per_process(self, context: polysync.Context) -> None:
        rlock = context.RLock()
        rlock.acquire()
        assert Child(_children.release_foreign, rlock).result() == "NotHeldError"
        assert Child(_children.try_acquire, rlock, SHORT).result() is False
        rlock.release()

    @_cross_process_test
    def test_semaphore_permits_shared(self, context: polysync.Context) -> None:
        sem = context.Semaphore(3)
        assert Child(_children.take_permits, sem, 5, SHORT).result() == 3
        assert sem.acquire(False) is False
        sem.release()
        assert sem.acquire(False) is True

    @_cross_process_test
    def test_event_wakes_another_process(self, context: polysync.Context) -> None:
        event = context.Event()
        child = Child(_children.wait_event, event, PROMPT)
        time.sleep(SHORT)
        event.set()
        assert child.result() is True

    @_cross_process_test
    def test_condition_notifies_another_process(self, context: polysync.Context) -> None:
        cond, ready = context.Condition(), context.Semaphore(0)
        child = Child(_children.condition_waiter, cond, ready, PROMPT)
        assert ready.acquire(timeout=PROMPT)
        with cond:  # the child is inside wait() once we get the lock
            cond.notify()
        assert child.result() is True

    @_cross_process_test
    def test_barrier_across_processes(self, context: polysync.Context) -> None:
        barrier = context.Barrier(3, timeout=PROMPT)
        children = [Child(_children.barrier_wait, barrier, PROMPT) for _ in range(2)]
        mine = barrier.wait()
        assert sorted([mine] + [c.result() for c in children]) == [0, 1, 2]

    @_cross_process_test
    def test_barrier_timeout_seen_by_another_process(self, context: polysync.Context) -> None:
        barrier = context.Barrier(3)
        child = Child(_children.barrier_wait_broken, barrier, PROMPT)
        eventually(lambda: barrier.n_waiting == 1, "the child waits at the barrier")
        with pytest.raises(polysync.BrokenBarrierError):
            barrier.wait(SHORT)
        assert child.result() == "broken"

    @_cross_process_test
    def test_reopen_by_name_in_a_fresh_process(self, context: polysync.Context, name: str) -> None:
        require(context, Capability.NAMED)
        lock = context.Lock(name=name)
        lock.acquire()
        assert Child(_children.named_lock_is_held, context, name).result() is True
        lock.release()
        assert Child(_children.named_lock_is_held, context, name).result() is False
        event = context.Event(name=name + "-ev")
        child = Child(_children.named_event_wait, context, name + "-ev", PROMPT)
        time.sleep(SHORT)
        event.set()
        assert child.result() is True
        event.unlink()

    @_cross_process_test
    def test_rlock_of_a_dead_owner_is_taken_over(self, context: polysync.Context) -> None:
        require(context, Capability.OWNER_DEATH)
        rlock = context.RLock()
        assert Child(_children.acquire_and_exit, rlock).result() is True
        assert rlock.locked()
        with pytest.warns(polysync.OwnerDiedWarning, match="died holding this lock"):
            assert rlock.acquire(timeout=PROMPT) is True
        assert rlock.owner_died
        assert rlock._is_owned()
        rlock.release()
        assert not rlock.owner_died
        assert not rlock.locked()

    @_cross_process_test
    def test_takeover_warning_as_error_leaves_the_lock_free(
        self, context: polysync.Context
    ) -> None:
        require(context, Capability.OWNER_DEATH)
        import warnings

        rlock = context.RLock()
        assert Child(_children.acquire_and_exit, rlock).result() is True
        with warnings.catch_warnings():
            warnings.simplefilter("error", polysync.OwnerDiedWarning)
            with pytest.raises(polysync.OwnerDiedWarning):
                rlock.acquire(timeout=PROMPT)
        assert not rlock._is_owned()  # the failed acquire gave the lock back
        assert rlock.acquire(timeout=PROMPT) is True
        assert not rlock.owner_died
        rlock.release()

    @_cross_process_test
    def test_live_owner_is_never_taken_over(self, context: polysync.Context) -> None:
        require(context, Capability.OWNER_DEATH)
        rlock, held, go = context.RLock(), context.Event(), context.Event()
        child = Child(_children.hold_until, rlock, held, go, PROMPT)
        assert held.wait(PROMPT)
        assert rlock.acquire(timeout=1.0) is False  # several liveness checks pass
        go.set()
        assert child.result() is True
        assert rlock.acquire(timeout=PROMPT) is True
        assert not rlock.owner_died
        rlock.release()

    @_cross_process_test
    def test_counter_exact_across_processes(self, context: polysync.Context) -> None:
        mp = multiprocessing.get_context("spawn")
        counter = mp.RawValue("i", 0)
        lock = context.Lock()
        procs = [
            mp.Process(target=_children.counter_work, args=(lock, counter, 500), daemon=True)
            for _ in range(3)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(PROMPT * 6)
            assert p.exitcode == 0
        assert counter.value == 1500


class BackendSuite(
    ClosedHandleTests,
    CleanupTests,
    StatisticsTests,
    FencingTests,
    LeaseTests,
    CrossHostTests,
    OwnerDeathTests,
    SharedCellsTests,
    ListingTests,
    OrphanCollectionTests,
    LockTests,
    RLockTests,
    SemaphoreTests,
    EventTests,
    ConditionTests,
    BarrierTests,
    NamingTests,
    PicklingTests,
    CrossProcessTests,
    AsyncTests,
):
    """All of the suite: subclass it and override the ``context`` fixture."""
