"""polysync.aio against the sync API on the same backend, and against redis-py's asyncio Lock.

Usage: python benchmarks/aio_run.py [--pairs N] [--handoffs N] [--rounds R] [--backends posix,redis]

Measures, per backend: the uncontended pair, both as ``acquire()`` + ``release()`` and as
a ``with`` / ``async with`` block, and the hand-off (two
tasks, or two threads for sync, passing one lock back and forth), reporting each as
microseconds per operation and the async/sync ratio. On redis it also runs redis-py's
``redis.asyncio.lock.Lock`` (which polls: ``sleep=0.1`` by default, here 0.001) for the
hand-off. It starts its own redis-server (benchmarks/_redis_server.py). Small by default.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polysync
import polysync.aio


def per_op(seconds: float, ops: int) -> float:
    return seconds / ops * 1e6


def sync_pair(lock: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        lock.acquire()
        lock.release()
    return per_op(time.perf_counter() - start, n)


def sync_with(lock: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        with lock:
            pass
    return per_op(time.perf_counter() - start, n)


async def async_with(lock: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        async with lock:
            pass
    return per_op(time.perf_counter() - start, n)


async def async_pair(lock: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await lock.acquire()
        await lock.release()
    return per_op(time.perf_counter() - start, n)


def sync_handoff(lock: Any, n: int) -> float:
    def work() -> None:
        for _ in range(n):
            with lock:
                time.sleep(0)

    threads = [threading.Thread(target=work) for _ in range(2)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per_op(time.perf_counter() - start, 2 * n)


async def async_handoff(make: Callable[[], Any], n: int, per_task: bool = False) -> float:
    """Two tasks pass one lock; *per_task*: each task has its own handle (redis-py's
    asyncio Lock keeps one token per handle, so two tasks cannot share one)."""
    shared = make()

    async def work() -> None:
        lock = make() if per_task else shared
        for _ in range(n):
            async with lock:
                await asyncio.sleep(0)

    start = time.perf_counter()
    await asyncio.gather(work(), work())
    return per_op(time.perf_counter() - start, 2 * n)


def run(coro: Coroutine[Any, Any, float]) -> float:
    return asyncio.run(coro)


def row(label: str, sync_us: float, async_us: float) -> None:
    print(
        f"  {label:<22} sync {sync_us:9.3f} us   async {async_us:9.3f} us   "
        f"async/sync {async_us / sync_us:5.2f}x"
    )


def best_of(
    rounds: int, sync: Callable[[], float], coro: Callable[[], Coroutine[Any, Any, float]]
) -> tuple[float, float]:
    """The best of *rounds* interleaved runs of each: the least disturbed by the VM."""
    sync_runs, async_runs = [], []
    for _ in range(rounds):
        sync_runs.append(sync())
        async_runs.append(run(coro()))
    return min(sync_runs), min(async_runs)


def bench_backend(
    name: str, options: dict[str, object], pairs: int, handoffs: int, rounds: int
) -> None:
    ctx = polysync.get_context(name, **options)
    actx = polysync.aio.AsyncContext(ctx)
    print(f"[{name}]")
    lock, alock = ctx.Lock(), actx.Lock()
    row(
        "uncontended pair",
        *best_of(rounds, lambda: sync_pair(lock, pairs), lambda: async_pair(alock, pairs)),
    )
    row(
        "uncontended with",
        *best_of(rounds, lambda: sync_with(lock, pairs), lambda: async_with(alock, pairs)),
    )
    row(
        "hand-off",
        sync_handoff(ctx.Lock(), handoffs),
        run(async_handoff(actx.Lock, handoffs)),
    )


def bench_redis_py(url: str, handoffs: int, ours: float) -> None:
    import redis.asyncio as aredis

    async def main() -> float:
        client = aredis.Redis.from_url(url)
        try:
            return await async_handoff(
                lambda: client.lock("bench-redis-py", sleep=0.001, timeout=30),
                handoffs,
                per_task=True,
            )
        finally:
            await client.aclose()

    theirs = run(main())
    print(
        f"  {'hand-off vs redis-py':<22} redis.asyncio.Lock {theirs:9.1f} us   "
        f"polysync.aio {ours:9.1f} us   ratio {theirs / ours:5.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--handoffs", type=int, default=300)
    parser.add_argument("--backends", default="posix,redis")
    parser.add_argument("--rounds", type=int, default=3, help="pair runs; the best is shown")
    args = parser.parse_args()
    for name in args.backends.split(","):
        if name != "redis":
            bench_backend(name, {}, args.pairs, args.handoffs, args.rounds)
            continue
        from benchmarks._redis_server import RedisServer

        with RedisServer() as server:
            bench_backend(
                "redis",
                {"url": server.url},
                max(1, args.pairs // 10),
                args.handoffs,
                args.rounds,
            )
            ours = run(
                async_handoff(polysync.aio.get_context("redis", url=server.url).Lock, args.handoffs)
            )
            bench_redis_py(server.url, args.handoffs, ours)


if __name__ == "__main__":
    main()
