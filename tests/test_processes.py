"""Primitives shared with children under every start method, billiard and process pools."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import pickle
from typing import Any

import pytest

import polysync
from polysync.testing import _children

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
