"""Primitives shared with children under every start method, billiard and process pools."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pickle
import signal
import threading
import time
import warnings
from typing import Any

import pytest

import polysync
from polysync.testing import _children
from tests.conftest import polysync_shm_entries, wait_until

pytestmark = pytest.mark.timeout(120)

METHODS = [
    m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()
]


@pytest.fixture(params=["posix", "redis"])
def ctx(request: pytest.FixtureRequest) -> polysync.Context:
    """The single-host default and the cross-host backend: both must cross every kind of
    process boundary the same way."""
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        return polysync.get_context("redis", url=server.url, prefix="procs")
    return polysync.get_context("posix")


def _everything(ctx: polysync.Context) -> dict[str, Any]:
    return {
        "lock": ctx.Lock(),
        "rlock": ctx.RLock(),
        "sem": ctx.Semaphore(2),
        "bsem": ctx.BoundedSemaphore(1),
        "event": ctx.Event(),
        "cond": ctx.Condition(),
        "barrier": ctx.Barrier(2, timeout=30),
    }


def _use_everything(objs: dict[str, Any]) -> str:
    """Run in the child: touch every primitive so that the parent can check the effects."""
    objs["lock"].acquire()  # left held: the parent checks it from outside
    if objs["rlock"].acquire(timeout=0.05) is not False:
        return "child acquired the parent's rlock"
    objs["sem"].acquire()
    objs["bsem"].acquire()
    objs["event"].set()
    with objs["cond"]:
        if not objs["cond"].wait_for(lambda: True, 1):
            return "wait_for failed"
    return f"index {objs['barrier'].wait()}"


def _check_parent_side(objs: dict[str, Any], child: Any) -> None:
    assert objs["event"].wait(30)
    assert objs["barrier"].wait() in (0, 1)
    assert child().startswith("index")
    assert objs["lock"].locked()
    objs["lock"].release()
    assert objs["sem"].get_value() == 1
    assert objs["bsem"].acquire(False) is False
    objs["bsem"].release()
    objs["rlock"].release()


@pytest.mark.parametrize("method", METHODS)
def test_start_methods(ctx: polysync.Context, method: str) -> None:
    mp = multiprocessing.get_context(method)
    objs = _everything(ctx)
    objs["rlock"].acquire()
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=mp) as pool:
        future = pool.submit(_use_everything, objs)
        _check_parent_side(objs, lambda: future.result(timeout=60))


def test_pool_worker_started_before_the_object_existed(ctx: polysync.Context) -> None:
    mp = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=mp) as pool:
        pool.submit(int).result(timeout=60)  # the worker is up and running
        lock = ctx.Lock()
        lock.acquire()
        assert pool.submit(_children.try_acquire, lock, 0.05).result(timeout=60) is False
        lock.release()
        assert pool.submit(_children.try_acquire, lock, 10).result(timeout=60) is True


def test_billiard(ctx: polysync.Context) -> None:
    billiard = pytest.importorskip("billiard")
    objs = _everything(ctx)
    objs["rlock"].acquire()
    pool = billiard.Pool(1)
    try:
        result = pool.apply_async(_use_everything, (objs,))
        _check_parent_side(objs, lambda: result.get(timeout=60))
    finally:
        pool.terminate()
        pool.join()


def test_through_a_queue(ctx: polysync.Context) -> None:
    mp = multiprocessing.get_context("spawn")
    q = mp.Queue()
    event = ctx.Event()
    proc = mp.Process(target=_children.wait_event, args=(event, 30))
    proc.start()
    q.put(event)
    assert pickle.loads(pickle.dumps(q.get(timeout=30))).is_set() is False
    event.set()
    proc.join(60)
    assert proc.exitcode == 0


def _forked_owner_check(rlock: Any, results: Any) -> None:
    results.put((rlock._is_owned(), rlock.acquire(timeout=0.05)))


@pytest.mark.skipif("fork" not in METHODS, reason="no fork on this platform")
def test_forked_child_does_not_inherit_ownership(ctx: polysync.Context) -> None:
    mp = multiprocessing.get_context("fork")
    rlock = ctx.RLock()
    rlock.acquire()
    results = mp.Queue()
    proc = mp.Process(target=_forked_owner_check, args=(rlock, results))
    proc.start()
    assert results.get(timeout=30) == (False, False)
    proc.join(30)
    assert rlock._is_owned()
    rlock.release()


# -- a process killed inside wait() (issue 8) ------------------------------------------------


def _wait_twice(cond: Any, conn: Any) -> None:
    """In the child: wait on *cond*, get notified, wait again (to be killed there)."""
    with cond:
        conn.send("waiting")
        if not cond.wait(60):
            conn.send("not notified")
            return
        conn.send("waiting again")
        cond.wait(60)


def _spawned(target: Any, *args: Any) -> Any:
    proc = multiprocessing.get_context("spawn").Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def _kill(proc: Any) -> None:
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)


def test_a_notify_reaches_a_live_waiter_behind_one_killed_in_wait(ctx: polysync.Context) -> None:
    """A waiter SIGKILLed inside Condition.wait() must not swallow notify(1): the live
    waiter queued behind it is woken (posix: at once; redis: once the notification sent
    to the dead one lapses, within a slice and the claim window). Before issue 8's fix
    the notification went to the dead waiter (posix: to its semaphore, which the notifier
    still had open; redis: to its list) and the live waiter timed out."""
    cond = ctx.Condition()
    parent_end, child_end = multiprocessing.Pipe()
    victim = _spawned(_wait_twice, cond, child_end)
    live: list[bool] = []
    waiter = None
    try:
        assert parent_end.poll(60)
        assert parent_end.recv() == "waiting"
        with cond:  # taken once the victim waits: it is queued
            cond.notify()  # the notifier now knows the victim's waiter (posix: caches it)
        assert parent_end.poll(30)
        assert parent_end.recv() == "waiting again"
        with cond:
            _kill(victim)  # killed while queued in wait()
        inside = threading.Event()

        def wait_live() -> None:
            with cond:
                inside.set()
                live.append(cond.wait(20))

        waiter = threading.Thread(target=wait_live, daemon=True)
        waiter.start()
        assert inside.wait(10)
        with cond:  # taken once the live waiter waits: it is queued behind the dead one
            began = time.monotonic()
            cond.notify(1)
        waiter.join(25)
        took = time.monotonic() - began
        assert live == [True], "notify(1) went to the dead waiter; the live one timed out"
        assert took < (1.0 if ctx.name == "posix" else 6.0), f"woken only after {took:.2f} s"
        assert cond.statistics().waiting == 0
    finally:
        _kill(victim)
        if waiter is not None:
            with cond:
                cond.notify_all()
            waiter.join(25)
        cond.close()
        parent_end.close()
        child_end.close()
    if ctx.name == "posix":  # the dead waiter's semaphore is gone too
        assert wait_until(
            lambda: not any(f"polysync-w-{victim.pid}-" in e for e in polysync_shm_entries()),
            10,
        )


def _wait_at(barrier: Any) -> None:
    barrier.wait(60)


def test_a_barrier_party_killed_while_waiting_no_longer_counts(ctx: polysync.Context) -> None:
    """Parties 3: A waits, B waits and is SIGKILLed, C arrives: C must not pass (with A and
    the dead B); D arrives: A, C and D pass, with the indices 0, 1 and 2, and the arrival
    that dropped B was told (OwnerDiedWarning). Before issue 8's fix A and C passed with
    the dead B."""
    barrier = ctx.Barrier(3)
    out: list[object] = []

    def party() -> None:
        try:
            out.append(barrier.wait(20))
        except polysync.BrokenBarrierError:
            out.append("broken")

    victim = _spawned(_wait_at, barrier)
    threads: list[threading.Thread] = []
    try:
        assert wait_until(lambda: barrier.n_waiting == 1, 60)
        threads.append(threading.Thread(target=party, daemon=True))
        threads[-1].start()  # A
        assert wait_until(lambda: barrier.n_waiting == 2, 10)
        _kill(victim)  # B
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            threads.append(threading.Thread(target=party, daemon=True))
            threads[-1].start()  # C
            time.sleep(1.0)
            assert out == [], "C passed the barrier with A and the dead B"
            party()  # D
            for t in threads:
                t.join(25)
        assert sorted(out, key=str) == [0, 1, 2]
        assert any(issubclass(w.category, polysync.OwnerDiedWarning) for w in caught)
        assert not barrier.broken
        assert barrier.n_waiting == 0
    finally:
        _kill(victim)
        barrier.abort()
        for t in threads:
            t.join(25)
        barrier.close()
